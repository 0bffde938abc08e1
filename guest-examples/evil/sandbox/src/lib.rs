//! An adapter that attacks its host. The request body names the attack:
//!
//! - `loop`: spins forever (the call deadline must stop it);
//! - `memory`: allocates until something gives (the memory cap must);
//! - `panic`: panics, which aborts — a trap;
//! - `huge-output`: returns far more events than any sane output limit;
//! - `read-file PATH`: tries to read PATH and `/etc/passwd`;
//! - `read-env NAME`: reads the environment and variable NAME;
//! - `clock`: reads the wall clock;
//! - anything else: one well-behaved event.
//!
//! The prying attacks report what they saw as an event in table `evil`
//! (field `outcome`), so a test can check that they saw nothing.

use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Evil;

fn report(out: &mut EventsBuilder, attack: &str, outcome: String) {
    out.event("evil", 1)
        .tag("attack", attack)
        .field_str("outcome", &outcome);
}

impl Adapter for Evil {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Evil)
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        let body = input.text()?.trim();
        let (attack, argument) = body.split_once(' ').unwrap_or((body, ""));
        match attack {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("evil plugin panics on purpose"),
            "huge-output" => {
                for i in 0..500_000u64 {
                    out.event("evil", 1).field_u64("n", i);
                }
            }
            "read-file" => {
                let mut seen = Vec::new();
                for path in [argument, "/etc/passwd", "."] {
                    match std::fs::read(path) {
                        Ok(bytes) => seen.push(format!("{path}: READ {} bytes", bytes.len())),
                        Err(e) => seen.push(format!("{path}: {e}")),
                    }
                }
                let listing = std::fs::read_dir("/").map(|d| d.count());
                seen.push(format!("list /: {listing:?}"));
                report(out, attack, seen.join("; "));
            }
            "read-env" => {
                let all: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let wanted = std::env::var(argument);
                report(
                    out,
                    attack,
                    format!(
                        "vars: {all:?}; {argument}: {wanted:?}; args: {:?}",
                        std::env::args().collect::<Vec<_>>()
                    ),
                );
            }
            "clock" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs());
                report(out, attack, format!("seconds since epoch: {now:?}"));
            }
            _ => report(out, "none", "behaved".into()),
        }
        Ok(())
    }
}

weir_sdk::export_adapter!(Evil);
