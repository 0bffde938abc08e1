//! An adapter that attacks its host. The request body names the attack:
//!
//! - `loop`: spins forever (the call deadline must stop it);
//! - `memory`: allocates until something gives (the memory cap must);
//! - `panic`: panics, which aborts — a trap;
//! - `huge-output`: returns far more events than any sane output limit;
//! - `read-file PATH`: tries to read PATH and `/etc/passwd`;
//! - `read-env NAME`: reads the environment and variable NAME;
//! - `clock`: reads the wall clock;
//! - `sleep`: sleeps an hour in one `std::thread::sleep` (a host call the
//!   epoch deadline cannot interrupt), then reports `woke`;
//! - `sleep-many N`: sleeps 10 ms, N times, then reports how often;
//! - `sleep-loop`: sleeps 1 ms, forever;
//! - `wait-clock`: spins until the monotonic clock has moved a second;
//! - `huge-error N`: fails with an error message of N bytes;
//! - `log-flood N`: logs N lines through `weir:plugin/log`, then behaves;
//! - `print-flood N`: prints N lines to stdout and N to stderr, then behaves;
//! - `malformed HOW`: returns a batch whose column is malformed (`keys`,
//!   `validity`, `offsets`, `offset-past-end`, `utf8`, `dictionary`,
//!   `count`), bypassing the SDK's builder that would never make one;
//! - anything else: one well-behaved event.
//!
//! `init` attacks too, when the config key `init` names one of `sleep`,
//! `sleep-loop`, `wait-clock`, `huge-error` (32 MiB) or `log-flood`.
//!
//! The prying attacks report what they saw as an event in table `evil`
//! (field `outcome`), so a test can check that they saw nothing.

use std::time::{Duration, Instant};

use weir_sdk::types::{Batch, Column, ColumnValues, F64Column, StringColumn, TagColumn};
use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Evil;

fn report(out: &mut EventsBuilder, attack: &str, outcome: String) {
    out.event("evil", 1)
        .tag("attack", attack)
        .field_str("outcome", &outcome);
}

fn count(argument: &str) -> Result<usize, String> {
    argument
        .parse()
        .map_err(|e| format!("count {argument:?}: {e}"))
}

/// An error message of `bytes` bytes, of two-byte characters so a cut in
/// the middle of one would show.
fn huge_error(bytes: usize) -> String {
    "é".repeat(bytes / 2)
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_for_the_clock() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        std::hint::black_box(());
    }
}

fn log_flood(lines: usize) {
    for i in 0..lines {
        weir_sdk::log::info(&format!("flood line {i} {}", "x".repeat(100)));
    }
}

impl Adapter for Evil {
    fn init(config: &Config) -> Result<Self, String> {
        match config.get("init") {
            Some("sleep") => std::thread::sleep(Duration::from_secs(3_600)),
            Some("sleep-loop") => sleep_forever(),
            Some("wait-clock") => wait_for_the_clock(),
            Some("huge-error") => return Err(huge_error(32 << 20)),
            Some("log-flood") => log_flood(20_000),
            _ => {}
        }
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
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3_600));
                report(out, attack, "woke".into());
            }
            "sleep-many" => {
                let times = count(argument)?;
                for _ in 0..times {
                    std::thread::sleep(Duration::from_millis(10));
                }
                report(out, attack, format!("slept {times} times"));
            }
            "sleep-loop" => sleep_forever(),
            "wait-clock" => {
                wait_for_the_clock();
                report(out, attack, "the clock moved".into());
            }
            "huge-error" => return Err(huge_error(count(argument)?)),
            "log-flood" => {
                log_flood(count(argument)?);
                report(out, attack, "flooded".into());
            }
            "print-flood" => {
                for i in 0..count(argument)? {
                    println!("stdout flood {i}");
                    eprintln!("stderr flood {i}");
                }
                report(out, attack, "flooded".into());
            }
            _ => report(out, "none", "behaved".into()),
        }
        Ok(())
    }
}

/// A one-row batch of table `evil` whose column `c` is malformed as `how`
/// says. The SDK's builder never makes such a thing; a guest in another
/// language, or one writing the WIT types by hand, can.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn malformed(how: &str) -> Result<Vec<Batch>, String> {
    let tag = |dictionary_offsets: Vec<u32>, dictionary_data: &[u8], keys: Vec<u32>, validity| {
        ColumnValues::Tag(TagColumn {
            dictionary_offsets,
            dictionary_data: dictionary_data.to_vec(),
            keys,
            validity,
        })
    };
    let string = |offsets: Vec<u32>, data: &[u8]| {
        ColumnValues::String(StringColumn {
            offsets,
            data: data.to_vec(),
            validity: Vec::new(),
        })
    };
    let values = match how {
        // More keys than rows, and a bitmap for one row: the host once read
        // the bitmap per key before counting the keys.
        "keys" => tag(vec![0, 1], b"ab", vec![0; 20], vec![0xff]),
        "validity" => {
            return Ok(vec![Batch {
                table: "evil".into(),
                time: vec![1; 9],
                columns: vec![Column {
                    name: "c".into(),
                    values: tag(vec![0, 1], b"a", vec![0; 9], vec![0xff]),
                }],
            }]);
        }
        "offsets" => string(vec![2, 1], b"ab"),
        "offset-past-end" => string(vec![0, 1_000_000], b"ab"),
        "utf8" => string(vec![0, 2], b"\xff\xfe"),
        "dictionary" => tag(vec![0, 1], b"a", vec![7], Vec::new()),
        "count" => ColumnValues::F64(F64Column {
            values: vec![1.0, 2.0, 3.0],
            validity: Vec::new(),
        }),
        other => return Err(format!("no malformation {other:?}")),
    };
    Ok(vec![Batch {
        table: "evil".into(),
        time: vec![1],
        columns: vec![Column {
            name: "c".into(),
            values,
        }],
    }])
}

/// The adapter export, written out rather than by `export_adapter!` so that
/// `malformed` can hand the host WIT values the SDK would refuse to build.
/// (Native builds compile it but export nothing, as the SDK's macro does.)
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Export;

impl weir_sdk::__private::adapter_world::exports::weir::plugin::adapter::Guest for Export {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        weir_sdk::__private::adapter_init::<Evil>(config)
    }

    fn adapt(content_type: String, body: Vec<u8>) -> Result<Vec<Batch>, String> {
        if let Some(how) = body.strip_prefix(b"malformed ") {
            return malformed(std::str::from_utf8(how).map_err(|e| e.to_string())?.trim());
        }
        weir_sdk::__private::adapter_call::<Evil>(content_type, body)
    }
}

#[cfg(target_arch = "wasm32")]
weir_sdk::__private::adapter_world::__export_adapter_world!(Export with_types_in weir_sdk::__private::adapter_world);
