//! The pool's queue of tasks, and how its idle drivers wait on it and are woken: the protocol
//! of `README.md` here. Apart from the worker processes, so that loom checks this very code
//! (the `loom_tests` below, `--cfg loom`); its mutex, condition variable and counter come from
//! `base::sync` for that.

use std::collections::VecDeque;
use std::time::Duration;

use crate::base::sync::atomic::{AtomicU64, Ordering};
use crate::base::sync::{Condvar, Mutex, lock, spin};
use crate::base::{Error, Kind, Result};

/// How long an idle driver looks for a next task before it sleeps. Tasks often come close
/// together (an `apply` loop; an MPI rank's next task), and a thread that slept costs tens of
/// microseconds to wake; one that looked costs this much of a core at most, once per idle spell.
const IDLE_SPIN: Duration = Duration::from_micros(100);

/// Tasks of type `T` waiting for the pool's drivers, and the drivers waiting for them.
pub(super) struct TaskQueue<T> {
    state: Mutex<State<T>>,
    /// Signalled when a task is queued or the pool closes.
    work: Condvar,
    /// Bumped (under the state's lock) whenever something a waiting driver waits for happens:
    /// a spinning driver watches it instead of taking the lock.
    changes: AtomicU64,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    terminated: bool,
    /// Drivers whose workers have nothing to do: queued work goes to them before any busy
    /// worker is sent a second task.
    waiting: usize,
    /// Of those, the ones still looking for work rather than asleep: they need no wake-up.
    spinning: usize,
    /// How many drivers should leave (the pool shrinks): the next that go idle do.
    leaving: usize,
}

/// What a driver should do next.
pub(super) enum Next<T> {
    Task(T),
    /// Nothing queued now (only when not waiting).
    Idle,
    /// The pool is closed and drained, or terminated, or it shrinks and this driver leaves.
    Exit,
}

impl<T> TaskQueue<T> {
    pub(super) fn new() -> Self {
        TaskQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                terminated: false,
                waiting: 0,
                spinning: 0,
                leaving: 0,
            }),
            work: Condvar::new(),
            changes: AtomicU64::new(0),
        }
    }

    /// Queues tasks; fails if the pool no longer takes work.
    pub(super) fn submit(&self, tasks: impl IntoIterator<Item = T>) -> Result<()> {
        let mut state = lock(&self.state);
        if state.closed || state.terminated {
            return Err(Error::new(Kind::Closed));
        }
        let before = state.queue.len();
        state.queue.extend(tasks);
        let added = state.queue.len() - before;
        // Spinning drivers see the change by themselves, but each takes one task: a sleeping
        // driver is woken when more tasks wait than drivers spin.
        let unserved = state.queue.len() > state.spinning;
        self.changes.fetch_add(1, Ordering::Release);
        drop(state);
        // One task needs one driver: waking every idle one would only put the rest back to
        // sleep, a context switch each, which a stream of one-task submissions pays per task.
        if unserved {
            if added == 1 {
                self.work.notify_one();
            } else {
                self.work.notify_all();
            }
        }
        Ok(())
    }

    /// No more submissions; drivers exit once the queue is done.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.changes.fetch_add(1, Ordering::Release);
        self.work.notify_all();
    }

    /// No more work at all: every driver exits. Returns the tasks still queued, which no one
    /// will run.
    pub(super) fn terminate(&self) -> VecDeque<T> {
        let queued = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.terminated = true;
            self.changes.fetch_add(1, Ordering::Release);
            std::mem::take(&mut state.queue)
        };
        self.work.notify_all();
        queued
    }

    /// `drivers` drivers leave, each when it is next idle: those waiting for work now first.
    pub(super) fn shrink(&self, drivers: usize) {
        lock(&self.state).leaving += drivers;
        self.changes.fetch_add(1, Ordering::Release);
        self.work.notify_all();
    }

    /// Takes one of the leaves that [`shrink`](TaskQueue::shrink) asked for, if any is left: for a
    /// driver about to start a worker, which should leave instead.
    pub(super) fn take_leave(&self) -> bool {
        let mut state = lock(&self.state);
        let leave = state.leaving > 0;
        if leave {
            state.leaving -= 1;
        }
        leave
    }

    /// Takes back up to `drivers` of the leaves that [`shrink`](TaskQueue::shrink) asked for
    /// and no driver has taken yet; returns how many.
    pub(super) fn unshrink(&self, drivers: usize) -> usize {
        let mut state = lock(&self.state);
        let kept = drivers.min(state.leaving);
        state.leaving -= kept;
        kept
    }

    pub(super) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    pub(super) fn is_terminated(&self) -> bool {
        lock(&self.state).terminated
    }

    /// The next task, if the first queued one `fits`. With `wait`, for an idle driver: waits
    /// for one (looking for a while, then asleep). Without, for a busy driver's pipeline: none
    /// while a driver waits, since queued work goes to idle workers first.
    pub(super) fn take(&self, wait: bool, fits: impl Fn(&T) -> bool) -> Next<T> {
        let mut state = lock(&self.state);
        let mut looked = false;
        loop {
            if state.terminated {
                return Next::Exit;
            }
            if !wait && (state.waiting > 0 || state.leaving > 0) {
                // Queued work goes to idle workers first; and while the pool shrinks, a busy
                // worker takes no more, so that it can leave after the tasks it has.
                return Next::Idle;
            }
            if wait && state.leaving > 0 {
                // An idle driver leaves before it takes work: the pool shrinks by its idle
                // workers first.
                state.leaving -= 1;
                return Next::Exit;
            }
            if let Some(task) = state.queue.front() {
                if !fits(task) {
                    return Next::Idle;
                }
                return state.queue.pop_front().map_or(Next::Idle, Next::Task);
            }
            if state.closed {
                return Next::Exit;
            }
            if !wait {
                return Next::Idle;
            }
            state.waiting += 1;
            if !looked {
                // Look for a while before sleeping (see IDLE_SPIN); then check again.
                looked = true;
                state.spinning += 1;
                let seen = self.changes.load(Ordering::Acquire);
                drop(state);
                spin(IDLE_SPIN, || self.changes.load(Ordering::Acquire) != seen);
                state = lock(&self.state);
                state.spinning -= 1;
            } else {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            state.waiting -= 1;
        }
    }

    /// Puts tasks back at the front of the queue, keeping their order. Hands them back when
    /// the pool is terminated: no one will run them.
    pub(super) fn requeue<I: DoubleEndedIterator<Item = T>>(
        &self,
        tasks: I,
    ) -> std::result::Result<(), I> {
        let mut state = lock(&self.state);
        if state.terminated {
            return Err(tasks);
        }
        for task in tasks.rev() {
            state.queue.push_front(task);
        }
        self.changes.fetch_add(1, Ordering::Release);
        drop(state);
        self.work.notify_all();
        Ok(())
    }
}

/// Every interleaving of a few drivers and submitters on the real queue (`--cfg loom`; the
/// README's Testing section). A lost wake-up leaves a driver asleep with no one to wake it,
/// which loom reports as a deadlock.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Explores every interleaving with at most `preemptions` forced switches per run (loom's
    /// bound: most concurrency bugs need very few, and the count of runs grows fast with it).
    fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(preemptions);
        builder.check(model);
    }

    /// An idle driver (`take(true, ..)`) on its own thread; joining it gives what it took.
    fn idle_driver(queue: &Arc<TaskQueue<u32>>) -> thread::JoinHandle<Option<u32>> {
        let queue = queue.clone();
        thread::spawn(move || match queue.take(true, |_| true) {
            Next::Task(task) => Some(task),
            Next::Idle => panic!("an idle driver came back without waiting"),
            Next::Exit => None,
        })
    }

    #[test]
    fn a_task_submitted_while_a_driver_goes_to_sleep_is_taken() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let driver = idle_driver(&queue);
            queue.submit([7]).unwrap();
            assert_eq!(driver.join().unwrap(), Some(7));
        });
    }

    /// The case of the README: two submitters of one task each (a `notify_one` each) and two
    /// idle drivers, each of which must end up with a task.
    #[test]
    fn two_drivers_and_two_submitters_every_task_is_taken_once() {
        check(2, || {
            let queue = Arc::new(TaskQueue::new());
            let drivers = [idle_driver(&queue), idle_driver(&queue)];
            let submitter = {
                let queue = queue.clone();
                thread::spawn(move || queue.submit([1]).unwrap())
            };
            queue.submit([2]).unwrap();
            submitter.join().unwrap();
            let mut taken = drivers.map(|driver| driver.join().unwrap());
            taken.sort();
            assert_eq!(taken, [Some(1), Some(2)]);
        });
    }

    /// Several tasks at once wake every sleeper (`notify_all`): both drivers get one.
    #[test]
    fn a_batch_wakes_as_many_drivers_as_it_has_tasks() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let drivers = [idle_driver(&queue), idle_driver(&queue)];
            queue.submit([1, 2]).unwrap();
            let mut taken = drivers.map(|driver| driver.join().unwrap());
            taken.sort();
            assert_eq!(taken, [Some(1), Some(2)]);
        });
    }

    #[test]
    fn close_wakes_every_sleeper_and_they_exit() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let drivers = [idle_driver(&queue), idle_driver(&queue)];
            queue.close();
            for driver in drivers {
                assert_eq!(driver.join().unwrap(), None);
            }
            assert!(queue.submit([1]).is_err());
        });
    }

    /// A task queued before `terminate` is taken by a driver or handed back, never both, never
    /// neither; the sleeping driver wakes and exits.
    #[test]
    fn terminate_wakes_every_sleeper_and_hands_back_what_is_queued() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let driver = idle_driver(&queue);
            queue.submit([1]).unwrap();
            let mut left: Vec<u32> = queue.terminate().into();
            left.extend(driver.join().unwrap());
            assert_eq!(left, [1]);
            assert!(queue.requeue([2].into_iter()).is_err());
        });
    }

    /// A shrink wakes a sleeping driver, which leaves; the driver that stays takes the task.
    #[test]
    fn a_shrink_wakes_a_sleeper_that_leaves_and_the_other_takes_the_task() {
        check(2, || {
            let queue = Arc::new(TaskQueue::new());
            let drivers = [idle_driver(&queue), idle_driver(&queue)];
            queue.shrink(1);
            queue.submit([3]).unwrap();
            let mut taken = drivers.map(|driver| driver.join().unwrap());
            taken.sort();
            assert_eq!(taken, [None, Some(3)]);
        });
    }

    /// A leave taken back before a driver took it is not taken: the sleeper takes the task.
    #[test]
    fn an_unshrink_keeps_the_driver() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let driver = idle_driver(&queue);
            queue.shrink(1);
            let kept = queue.unshrink(1);
            queue.submit([4]).unwrap();
            let taken = driver.join().unwrap();
            // Either the driver left before the unshrink, or it stayed and took the task.
            assert_eq!(
                (kept, taken.is_some()),
                if taken.is_some() {
                    (1, true)
                } else {
                    (0, false)
                }
            );
            if taken.is_none() {
                queue.close();
            }
        });
    }

    /// A task that comes back (its worker died) is taken once: by the sleeping driver, which it
    /// wakes, or by a busy one (`take(false, ..)`) that asked while no driver waited.
    #[test]
    fn a_requeued_task_is_taken_once_by_a_sleeping_or_a_busy_driver() {
        check(3, || {
            let queue = Arc::new(TaskQueue::new());
            let idle = idle_driver(&queue);
            let busy = {
                let queue = queue.clone();
                thread::spawn(move || match queue.take(false, |_| true) {
                    Next::Task(task) => Some(task),
                    Next::Idle | Next::Exit => None,
                })
            };
            queue.requeue([5].into_iter()).unwrap();
            let busy = busy.join().unwrap();
            queue.close();
            let idle = idle.join().unwrap();
            // One of them took it, exactly once.
            assert_eq!(busy.into_iter().chain(idle).collect::<Vec<_>>(), [5]);
        });
    }
}
