//! A user constructor that starts a thread in the fork server's zygote (before it serves) must
//! make `ForkServer` fail clearly, not fork while multi-threaded (a child forked then may
//! inherit a lock another thread held, and hang). Its own test
//! binary: the constructor below runs in every process of it.

use std::sync::mpsc;
use std::time::Duration;

use mp_runtime::{Pool, StartMethod, process_fn};

// SAFETY: `.init_array` holds functions the C runtime calls before `main` with no arguments we
// read; `start_a_thread_in_the_zygote` has that `extern "C" fn()` shape.
#[used]
#[unsafe(link_section = ".init_array")]
static START_A_THREAD_IN_THE_ZYGOTE: extern "C" fn() = start_a_thread_in_the_zygote;

extern "C" fn start_a_thread_in_the_zygote() {
    let role = std::env::var_os("MP_RUNTIME_ROLE").unwrap_or_default();
    if role.to_string_lossy().starts_with("forkserver:") {
        std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    }
}

#[process_fn]
fn answer() -> u32 {
    42
}

// A multi-threaded zygote refuses to fork, with an error that says why.
#[test]
fn a_multi_threaded_zygote_fails_clearly() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = Pool::builder()
            .start_method(StartMethod::ForkServer)
            .processes(1)
            .build()
            .and_then(|pool| {
                let outcome = pool.apply(answer, ());
                pool.terminate();
                outcome
            });
        let _ = tx.send(outcome.map_err(|e| e.to_string()));
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hung: a pool over a multi-threaded zygote");
    match outcome {
        Ok(answer) => {
            panic!("the zygote forked while it had two threads (answer {answer})")
        }
        Err(text) => assert!(text.contains("thread"), "{text}"),
    }
}
