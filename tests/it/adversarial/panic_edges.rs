//! Panics that the capture of a panic (`wire/panics.rs`) must survive: a payload whose `Drop`
//! panics, a panic caught inside the task before another one, a task that replaces the panic
//! hook. In the worker (a task) and on the pool's threads (a result's `Deserialize`): each
//! fails its own call with the right message, and the pool and its worker go on.

use std::panic::{catch_unwind, resume_unwind};
use std::sync::Arc;

use mp_runtime::{Pool, process_fn, spawn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::bounded::must;

/// A panic payload whose `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("adversarial: dropping the payload panics");
        }
    }
}

/// Panics with a [`Bomb`] as its payload.
#[process_fn]
fn panic_with_bomb() -> u32 {
    std::panic::panic_any(Bomb)
}

/// This worker's pid.
#[process_fn]
fn worker_pid() -> u32 {
    std::process::id()
}

/// A result whose `Deserialize`, in the parent, panics with a [`Bomb`].
struct BombOnDecode;

impl Serialize for BombOnDecode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ().serialize(s)
    }
}

impl<'de> Deserialize<'de> for BombOnDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        std::panic::panic_any(Bomb)
    }
}

#[process_fn]
fn bomb_on_decode() -> BombOnDecode {
    BombOnDecode
}

// A task that panics with a payload whose `Drop` panics: the call fails as a panic, and the
// worker that ran it goes on serving.
#[test]
fn a_task_whose_panic_payload_panics_on_drop_fails_as_a_panic() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let p = pool.clone();
    let before = must("a first task", move || p.apply(worker_pid, ())).unwrap();
    let p = pool.clone();
    let got = must("a task whose payload panics on drop", move || {
        p.apply(panic_with_bomb, ())
    });
    let error = got.expect_err("the task panicked");
    assert!(error.is_panic(), "not a panic: {error}");
    let after = must("a task after it", move || pool.apply(worker_pid, ())).unwrap();
    assert_eq!(before, after, "the worker was lost");
}

// A result whose `Deserialize` panics, on the pool's thread, with a payload whose `Drop` panics:
// that task fails as a panic, and the pool's thread and worker go on.
#[test]
fn a_result_decoder_whose_panic_payload_panics_on_drop_fails_only_its_task() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let p = pool.clone();
    let before = must("a first task", move || p.apply(worker_pid, ())).unwrap();
    let p = pool.clone();
    let got = must("a result decoder whose payload panics on drop", move || {
        p.apply(bomb_on_decode, ()).map(drop)
    });
    let error = got.expect_err("the decoder panicked");
    assert!(error.is_panic(), "not a panic: {error}");
    let after = must("a task after it", move || pool.apply(worker_pid, ())).unwrap();
    assert_eq!(before, after, "the worker was lost");
}

/// Panics and catches it, inside the task: nothing for the parent to see.
#[process_fn]
fn catch_own_panic() -> bool {
    catch_unwind(|| panic!("adversarial: caught inside the task")).is_err()
}

/// Ends by passing on a panic payload without a panic hook call, as a task that joins a thread
/// it started and passes its panic on does.
#[process_fn]
fn resume_a_payload() {
    resume_unwind(Box::new("adversarial: passed on".to_string()))
}

/// [`catch_own_panic`] then [`resume_a_payload`], in one task.
#[process_fn]
fn catch_then_resume() {
    let _ = catch_unwind(|| panic!("adversarial: caught inside the task"));
    resume_unwind(Box::new("adversarial: passed on".to_string()))
}

// A panic passed on with `resume_unwind` (which calls no panic hook) after a panic the task
// caught itself: the call's error says the panic that ended it, not the one caught before.
#[test]
fn a_resumed_panic_is_reported_not_an_earlier_caught_one() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let p = pool.clone();
    assert!(
        must("a task that catches its own panic", move || p
            .apply(catch_own_panic, ()))
        .unwrap()
    );
    let p = pool.clone();
    let error = must("a later task that resumes a payload", move || {
        p.apply(resume_a_payload, ())
    })
    .expect_err("the task panicked");
    assert_eq!(
        error.panic_message(),
        Some("adversarial: passed on"),
        "a later task: {error}"
    );
    let error = must("a task that catches, then resumes", move || {
        pool.apply(catch_then_resume, ())
    })
    .expect_err("the task panicked");
    assert_eq!(
        error.panic_message(),
        Some("adversarial: passed on"),
        "the same task: {error}"
    );
}

/// Replaces the panic hook with one that prints nothing, then panics.
#[process_fn]
fn panic_under_own_hook() {
    std::panic::set_hook(Box::new(|_| {}));
    panic!("adversarial: under the task's own hook")
}

// A task that replaced the panic hook still fails with its panic's message.
#[test]
fn a_task_with_its_own_panic_hook_reports_its_message() {
    let error = must("a task with its own hook", || {
        spawn!(panic_under_own_hook).unwrap().join()
    })
    .expect_err("the task panicked");
    assert!(error.is_panic(), "not a panic: {error}");
    assert_eq!(
        error.panic_message(),
        Some("adversarial: under the task's own hook"),
        "{error}"
    );
}
