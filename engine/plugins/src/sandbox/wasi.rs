//! The WASI a guest is linked against: exactly [`GRANTED_WASI`], answering
//! from the deny-all context, none of it able to hold the host thread past
//! the call's deadline.
//!
//! Why this needs care: the epoch deadline (see `runtime`) interrupts wasm
//! code only. A guest waiting inside a host call is out of its reach, and
//! `std::thread::sleep` is exactly that — `monotonic-clock.subscribe-duration`
//! then `pollable.block` (or `poll`). wasmtime-wasi's clock pollables are
//! real tokio timers whatever clock the context is given, so a guest that
//! slept for an hour held a writer thread for an hour, and one that slept in
//! `init` held start-up forever.
//!
//! Two rules close that, for `init`, calls and reloads alike (all three run
//! guest code the same way):
//!
//! 1. **Clock pollables are ready at once.** The guest's clocks are frozen
//!    at the epoch; in a world where time does not pass, every instant the
//!    guest can name has already come. A guest that sleeps wakes at once and
//!    carries on; one that sleeps in a loop, or spins until the clock moves,
//!    is running wasm code, which the epoch deadline stops.
//! 2. **`wasi:io/poll` waits at most until the call's deadline**, then
//!    traps with [`Trap::Interrupt`] — the trap the epoch deadline raises —
//!    so the call ends as a timeout and the instance is made anew. With
//!    rule 1 and the audit below nothing ever waits there; this is the
//!    backstop should a pollable that can wait ever be granted.
//!
//! Every granted interface, and why it cannot block:
//!
//! - `wasi:cli/environment`, `exit`, `terminal-*`: constants (no variables,
//!   no arguments, no terminals); `exit` traps.
//! - `wasi:cli/stdin`: a closed stream; reads answer "closed" at once and
//!   its pollable is ready.
//! - `wasi:cli/stdout`, `stderr`: the guest's log stream, which writes
//!   synchronously and is always ready (see `log`).
//! - `wasi:io/streams`: the `blocking-*` methods wait on a stream's
//!   pollable; the streams above are the only ones a guest can get, and all
//!   are ready at once.
//! - `wasi:io/error`: formats an error. `wasi:io/poll`: rule 2.
//! - `wasi:clocks/wall-clock`: the frozen clock. `monotonic-clock`: rule 1.
//! - `wasi:filesystem/preopens`: an empty list. `wasi:filesystem/types`:
//!   every method but `filesystem-error-code` takes a descriptor, and with
//!   no preopens a guest can hold none.
//! - `wasi:random/*`: generators in memory.
//!
//! Interfaces outside the list (sockets above all, whose calls do wait) are
//! not linked at all, so even a component that slipped past
//! [`check_imports`](super::check_imports) could not instantiate.
//!
//! The alternative was wasmtime's async support, with each call under a
//! tokio timeout. It was not taken: a timeout bounds a wait but still spends
//! the whole deadline of every sleeping guest on a server thread (a plugin
//! that sleeps 1 s per batch costs 1 s per batch); it needs fiber stacks per
//! call and a `block_on` under the synchronous pipeline; and it cancels a
//! call by dropping it at whatever host call it waits in. With time frozen,
//! there is nothing a guest can usefully wait for, so the host does not wait.

use std::future::Future;
use std::time::Instant;

use wasmtime::Trap;
use wasmtime::component::{HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random, sync};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::runtime::in_tokio;

#[cfg(doc)]
use super::GRANTED_WASI;
use super::GuestState;

/// Links every interface of [`GRANTED_WASI`] (and `weir:plugin/log`), and
/// nothing else.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    type G = GuestState;
    let l = linker;
    cli::environment::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::exit::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::stdin::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::stdout::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::stderr::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::terminal_input::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::terminal_output::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::terminal_stdin::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::terminal_stdout::add_to_linker::<G, WasiCli>(l, G::cli)?;
    cli::terminal_stderr::add_to_linker::<G, WasiCli>(l, G::cli)?;
    io::error::add_to_linker::<G, Table>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<G, Table>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<G, UntilDeadline>(l, |s| DeadlinePoll {
        table: &mut s.table,
        deadline: s.deadline,
    })?;
    clocks::wall_clock::add_to_linker::<G, WasiClocks>(l, G::clocks)?;
    clocks::monotonic_clock::add_to_linker::<G, Frozen>(l, |s| FrozenMonotonic(&mut s.table))?;
    filesystem::preopens::add_to_linker::<G, WasiFilesystem>(l, G::filesystem)?;
    sync::filesystem::types::add_to_linker::<G, WasiFilesystem>(l, G::filesystem)?;
    random::random::add_to_linker::<G, WasiRandom>(l, G::random)?;
    random::insecure::add_to_linker::<G, WasiRandom>(l, G::random)?;
    random::insecure_seed::add_to_linker::<G, WasiRandom>(l, G::random)?;
    crate::bindings::log::add_to_linker::<G, HasSelf<G>>(l, |s| s)?;
    Ok(())
}

struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// `wasi:clocks/monotonic-clock` stopped at 0, whose subscriptions are
/// ready at once (rule 1).
struct FrozenMonotonic<'a>(&'a mut ResourceTable);

struct Frozen;

impl HasData for Frozen {
    type Data<'a> = FrozenMonotonic<'a>;
}

/// A pollable that is ready whenever asked.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

impl FrozenMonotonic<'_> {
    fn ready(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.0.push(Ready)?;
        subscribe(self.0, ready)
    }
}

impl clocks::monotonic_clock::Host for FrozenMonotonic<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(&mut self, _when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }

    fn subscribe_duration(&mut self, _duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
}

/// `wasi:io/poll` whose waits end at the call's deadline (rule 2).
pub(crate) struct DeadlinePoll<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) deadline: Instant,
}

struct UntilDeadline;

impl HasData for UntilDeadline {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Runs `wait` until `deadline`; past it, the call traps as if the epoch
/// deadline had struck.
fn until<T>(
    deadline: Instant,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    in_tokio(async {
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Trap::Interrupt.into()),
        }
    })
}

impl sync::io::poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let deadline = self.deadline;
        until(deadline, io::poll::Host::poll(&mut *self.table, pollables))
    }
}

impl sync::io::poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Looks without waiting.
        sync::io::poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let deadline = self.deadline;
        until(
            deadline,
            io::poll::HostPollable::block(&mut *self.table, pollable),
        )
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        sync::io::poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sync::io::poll::{Host as _, HostPollable as _};

    use super::*;

    /// A pollable that never becomes ready, like a timer an hour away.
    struct Never;

    #[wasmtime_wasi::async_trait]
    impl Pollable for Never {
        async fn ready(&mut self) {
            std::future::pending::<()>().await
        }
    }

    fn never(table: &mut ResourceTable) -> Resource<DynPollable> {
        let never = table.push(Never).unwrap();
        subscribe(table, never).unwrap()
    }

    fn is_interrupt(e: &wasmtime::Error) -> bool {
        e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
    }

    #[test]
    fn a_wait_that_never_ends_traps_at_the_deadline() {
        let mut table = ResourceTable::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        let (a, b) = (never(&mut table), never(&mut table));
        let mut poll = DeadlinePoll {
            table: &mut table,
            deadline,
        };
        let e = poll.poll(vec![a]).unwrap_err();
        assert!(is_interrupt(&e), "{e:#}");
        assert!(Instant::now() >= deadline);
        let e = poll.block(b).unwrap_err();
        assert!(is_interrupt(&e), "{e:#}");
    }

    #[test]
    fn clock_subscriptions_are_ready_at_once_even_past_the_deadline() {
        let mut table = ResourceTable::new();
        let mut clock = FrozenMonotonic(&mut table);
        use clocks::monotonic_clock::Host as _;
        let hour = clock.subscribe_duration(3_600_000_000_000).unwrap();
        let never = clock.subscribe_instant(u64::MAX).unwrap();
        let both = clock.subscribe_duration(1).unwrap();
        let both_again = Resource::new_borrow(both.rep());
        // A deadline already passed: had anything waited, it would trap.
        let mut poll = DeadlinePoll {
            table: &mut table,
            deadline: Instant::now(),
        };
        assert!(poll.ready(Resource::new_borrow(hour.rep())).unwrap());
        poll.block(hour).unwrap();
        assert_eq!(poll.poll(vec![never, both_again]).unwrap(), [0, 1]);
        poll.drop(both).unwrap();
    }
}
