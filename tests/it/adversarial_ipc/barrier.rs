//! A barrier with more holders than it has slots to watch must still notice a dead party:
//! otherwise its other parties would wait for it forever.

use std::time::Duration;

use mp_runtime::{Barrier, pipe, process_fn, spawn};

use super::{Reaped, bounded};

#[process_fn]
fn die_holding_barrier(_barrier: Barrier) {
    std::process::abort();
}

// With 130 parties, a party that dies is noticed by a plain `wait()`.
#[test]
fn a_barrier_of_130_parties_notices_a_dead_party() {
    let barrier = match Barrier::new(130) {
        Ok(barrier) => barrier,
        Err(refused) => {
            // The other accepted outcome: a clear refusal at construction.
            assert!(!refused.to_string().is_empty());
            return;
        }
    };
    // Each barrier received is a holder of its own: 127 here fill the slots the creator left.
    let (tx, rx) = pipe::<Barrier>().unwrap();
    let mut holders = Vec::new();
    for _ in 0..127 {
        tx.send(&barrier).unwrap();
        holders.push(rx.recv().unwrap());
    }
    // One more holder, in another process, that dies without arriving.
    let mut dying = Reaped(Some(spawn!(die_holding_barrier, barrier.clone()).unwrap()));
    let died = dying
        .0
        .as_mut()
        .unwrap()
        .join_timeout(Duration::from_secs(30))
        .unwrap_err();
    assert!(died.is_died(), "{died}");
    let outcome = bounded(
        "a wait after a party died",
        Duration::from_secs(10),
        move || barrier.wait(),
    );
    let err = outcome.expect_err("a barrier one of whose parties died let a wait pass");
    assert!(err.is_broken_barrier(), "{err}");
    drop(holders);
}
