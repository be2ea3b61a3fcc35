//! The one early entry: before the user's `main` runs, a process started by mp becomes what it
//! was started to be — a worker, the fork server's zygote, or (feature `mpi`) a worker rank of
//! an MPI job — and never returns to `main`.
//!
//! Why it runs after the `#[process_fn]` registrations: constructors run in link order, and every
//! crate that registers functions depends on this one, so the linker places it (and its
//! registrations) before this crate.
//!
//! At the top of the public rooms: uses `sys`, `base`, `wire`, the runtime tier and `pool` (a
//! worker rank serves one); used by nothing (the C runtime calls it).

use crate::runtime::spawn::forkserver;
use crate::runtime::spawn::reexec::{self, Refused, Role};
use crate::runtime::worker;
use crate::sys;
use crate::wire::frame::Channel;

// SAFETY: `.init_array` holds pointers to functions the C runtime calls, with no arguments that
// we read, before `main`; `early_entry` has exactly that `extern "C" fn()` shape.
#[used]
#[unsafe(link_section = ".init_array")]
static EARLY_ENTRY: extern "C" fn() = early_entry;

extern "C" fn early_entry() {
    // Before anything opens or receives a descriptor: one that landed on a closed 0, 1 or 2
    // would be written by `println!`. std does this before `main`; a worker never gets there.
    sys::fd::open_missing_stdio();
    // While this process has one thread, so that no fork can come between.
    sys::process::track_pid();
    let Some(assignment) = reexec::take_role() else {
        // Not a child of ours: maybe a rank of an MPI job, which rank 0 leaves to run `main`.
        #[cfg(feature = "mpi")]
        serve_if_worker_rank();
        return;
    };
    let code = match assignment {
        // A bug in the serve loop must end this process with a code, not unwind into C.
        Ok(assignment) => match run_as_main() {
            Err(problem) => refuse(Refused {
                why: format!("cannot set up this worker as `main` would be: {problem}"),
                channel: Some(assignment.stream),
            }),
            Ok(()) => match assignment.role {
                Role::Worker => {
                    crate::base::set_identity(
                        &assignment.name,
                        &assignment.parent_name,
                        assignment.parent,
                        assignment.depth,
                    );
                    std::panic::catch_unwind(|| {
                        worker::serve_calls(Channel::new(assignment.stream))
                    })
                    .unwrap_or(70)
                }
                Role::ForkServer => std::panic::catch_unwind(|| {
                    forkserver::serve_forks(
                        assignment.stream,
                        assignment.parent,
                        &assignment.parent_name,
                        assignment.depth,
                    )
                })
                .unwrap_or(70),
            },
        },
        Err(refused) => refuse(refused),
    };
    std::process::exit(code);
}

/// Says why this process cannot take up its role, on standard error and, when the parent is
/// proven, to the parent (so that the caller's error says it too); returns the exit code.
fn refuse(refused: Refused) -> i32 {
    eprintln!("mp: {}", refused.why);
    if let Some(stream) = refused.channel {
        // A parent that is gone hears nothing, and needs nothing.
        let _ = Channel::new(stream).send_farewell(&refused.why);
    }
    2
}

/// Sets up what std's runtime sets up before `main`, which a worker never reaches: SIGPIPE
/// ignored (a write to a closed pipe is an error, not death), and a stack overflow reported as
/// one. The fork server's children inherit both from the zygote.
fn run_as_main() -> std::io::Result<()> {
    sys::signal::ignore_sigpipe()?;
    if let Err(error) = sys::signal::report_stack_overflow() {
        // Serving still works; only an overflow would then be a plain SIGSEGV.
        eprintln!("mp worker: a stack overflow will not be reported as one: {error}");
    }
    Ok(())
}

/// Joins the MPI job when a launcher started this process; on ranks other than 0, serves pools
/// until the job ends and exits, never returning.
#[cfg(feature = "mpi")]
fn serve_if_worker_rank() {
    use crate::runtime::cluster::{self, Joined};
    if let Joined::WorkerRank = cluster::join_job() {
        let code = std::panic::catch_unwind(crate::pool::rank::serve_rank).unwrap_or(70);
        cluster::leave_job(code);
    }
}
