//! The crash matrix's engine: runs every misbehaviour of [`misbehave`] through one entry point
//! under one start method, each case bounded, and collects what went wrong.

use std::sync::Arc;
use std::time::Duration;

use mp_runtime::{CallOptions, Error, Pool, StartMethod, get_start_method, spawn};

use super::bounded::bounded;
use super::misbehave::{Arg, BAD, Mode, Ret, fine, misbehave};

/// A case that takes longer than this hangs.
const CASE: Duration = Duration::from_secs(10);

/// The entry points of the crash matrix: every way a task can be run.
#[derive(Clone, Copy, Debug)]
pub enum Entry {
    Spawn,
    Apply,
    ApplyAsync,
    Map,
    MapAsync,
    Imap,
    ImapUnordered,
    Starmap,
}

/// What an entry point gave for the inputs: one result per task, or one for them all.
#[derive(Debug)]
enum Got {
    Each(Vec<Result<Ret, Error>>),
    Whole(Result<Vec<Ret>, Error>),
}

fn run(entry: Entry, pool: Option<&Pool>, inputs: Vec<Arg>) -> Got {
    let pool = || pool.expect("a pool entry point has a pool");
    match entry {
        Entry::Spawn => Got::Each(
            inputs
                .into_iter()
                .map(|arg| spawn!(misbehave, arg).and_then(|p| p.join()))
                .collect(),
        ),
        Entry::Apply => Got::Each(
            inputs
                .into_iter()
                .map(|arg| pool().apply(misbehave, (arg,)))
                .collect(),
        ),
        Entry::ApplyAsync => {
            let pending: Vec<_> = inputs
                .into_iter()
                .map(|arg| pool().apply_async(misbehave, (arg,)))
                .collect();
            Got::Each(pending.into_iter().map(|r| r.get()).collect())
        }
        Entry::Map => Got::Whole(pool().map(misbehave, inputs)),
        Entry::MapAsync => Got::Whole(pool().map_async(misbehave, inputs).get()),
        // Chunks of one, so that a crash of the bad task's worker is that task's alone.
        Entry::Imap => Got::Each(
            pool()
                .with(&CallOptions::new().chunksize(1))
                .imap(misbehave, inputs)
                .collect(),
        ),
        Entry::ImapUnordered => Got::Each(
            pool()
                .with(&CallOptions::new().chunksize(1))
                .imap_unordered(misbehave, inputs)
                .collect(),
        ),
        Entry::Starmap => Got::Whole(pool().starmap(
            misbehave,
            inputs.into_iter().map(|arg| (arg,)).collect::<Vec<_>>(),
        )),
    }
}

/// Whether `got` is right for inputs `[fine 1, bad 2, fine 3]`: the bad task's error with
/// the right predicate, the others' results.
fn judge(entry: Entry, mode: Mode, got: Got) -> Result<(), String> {
    match got {
        Got::Whole(Ok(values)) => Err(format!("no error: {values:?}")),
        Got::Whole(Err(error)) => mode.check(&error),
        Got::Each(results) => {
            if results.len() != 3 {
                return Err(format!(
                    "{} results for 3 tasks: {results:?}",
                    results.len()
                ));
            }
            let mut errors = Vec::new();
            let mut values = Vec::new();
            for (position, result) in results.into_iter().enumerate() {
                match result {
                    Ok(value) => values.push(value),
                    Err(error) => errors.push((position, error)),
                }
            }
            let [(position, error)] = &errors[..] else {
                return Err(format!("not one error: {errors:?}, values {values:?}"));
            };
            mode.check(error)?;
            if matches!(entry, Entry::ImapUnordered) {
                values.sort_by_key(|v| v.x);
            } else if *position != 1 {
                return Err(format!("the error is task {position}'s, not task 1's"));
            }
            if values != [fine(1), fine(3)] {
                return Err(format!("the other tasks were affected: {values:?}"));
            }
            Ok(())
        }
    }
}

fn new_pool(method: StartMethod) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .expect("a pool"),
    )
}

/// Whether the entry point still works after a case: one more map (or spawn).
fn still_works(entry: Entry, pool: Option<&Pool>) -> Result<(), String> {
    let got = match (entry, pool) {
        (Entry::Spawn, _) | (_, None) => spawn!(misbehave, Arg::fine(5))
            .and_then(|p| p.join())
            .map(|v| vec![v]),
        (_, Some(pool)) => pool.map(misbehave, (10..14).map(Arg::fine)),
    };
    let want: Vec<Ret> = match entry {
        Entry::Spawn => vec![fine(5)],
        _ => (10..14).map(fine).collect(),
    };
    match got {
        Ok(values) if values == want => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Runs every misbehaviour through `entry` under `method` (for `spawn!`, the process-wide
/// start method must be `method`); panics listing every case that went wrong.
pub fn matrix(method: StartMethod, entry: Entry) {
    let pooled = !matches!(entry, Entry::Spawn);
    if !pooled {
        assert_eq!(get_start_method(), method, "set the start method first");
    }
    let mut pool = pooled.then(|| new_pool(method));
    let mut failures = Vec::new();
    for mode in BAD {
        let what = format!("{entry:?} under {method:?} with {mode:?}");
        let inputs = vec![Arg::fine(1), Arg { mode, x: 2 }, Arg::fine(3)];
        let p = pool.clone();
        match bounded(&what, CASE, move || run(entry, p.as_deref(), inputs)) {
            Ok(got) => {
                if let Err(why) = judge(entry, mode, got) {
                    failures.push(format!("{what}: {why}"));
                }
            }
            Err(why) => failures.push(why),
        }
        let after = format!("the {entry:?} after {what}");
        let p = pool.clone();
        match bounded(&after, CASE, move || still_works(entry, p.as_deref())) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{after}: {why}")),
            Err(why) => failures.push(why),
        }
        if failures.iter().any(|f| f.contains(&after)) && pooled {
            // Go on with a fresh pool, so that one broken case does not fail the others.
            pool = Some(new_pool(method));
        }
    }
    if let Some(pool) = pool {
        match bounded("close and join", CASE, move || {
            pool.close();
            pool.join()
        }) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(format!("join: {error}")),
            Err(why) => failures.push(why),
        }
    }
    assert!(
        failures.is_empty(),
        "crash matrix, {entry:?} under {method:?}: {} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
