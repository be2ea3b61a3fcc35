//! Pools over the ranks of an MPI job (feature `mpi`): `cargo test --features mpi --test mpi`.
//!
//! Started by `cargo test` (no launcher), this binary runs itself again under `mpirun -n 3`
//! and passes if that run does. Under the launcher, rank 0 runs every case below in `main`;
//! ranks 1 and 2 became pool workers before `main` and serve until rank 0 exits. The pieces
//! that large messages are split into are made small (64 KiB), so a few MiB cross in many.

use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mp_runtime::{CallOptions, Pool, Sandbox, mpi_rank, process_fn};

/// How long the whole run under `mpirun` may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// How long one result may take.
const WAIT: Duration = Duration::from_secs(60);
/// The largest MPI message in this run, so that every large payload crosses in pieces.
const PIECE_BYTES: usize = 64 << 10;

#[process_fn]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[process_fn]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// The rank this task ran on.
#[process_fn]
fn where_am_i(_: u32) -> Option<u32> {
    mpi_rank()
}

#[process_fn]
fn refuse_seven(x: u32) -> u32 {
    assert!(x != 7, "seven is refused");
    x
}

#[process_fn]
fn abort_on_three(x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x
}

/// Reverses a large buffer: it crosses both ways.
#[process_fn]
fn reverse(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

#[process_fn]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[process_fn]
fn set_prefix(prefix: String) {
    PREFIX.set(prefix).unwrap();
}

#[process_fn]
fn prefixed(name: String) -> String {
    format!("{}{name}", PREFIX.get().map_or("unset ", String::as_str))
}

#[process_fn]
fn take_pipe(_end: mp_runtime::Connection<u32>) -> u32 {
    1
}

fn pool() -> Pool {
    Pool::builder().mpi().processes(2).build().unwrap()
}

fn results_in_order() {
    let pool = pool();
    let inputs: Vec<u64> = (0..2000).collect();
    let expected: Vec<u64> = inputs.iter().map(|x| x * x * x).collect();
    assert_eq!(pool.map(cube, inputs.clone()).unwrap(), expected);
    for chunksize in [1, 7, 5000] {
        assert_eq!(
            pool.with(&CallOptions::new().chunksize(chunksize))
                .map(cube, inputs.clone())
                .unwrap(),
            expected
        );
    }
    assert_eq!(
        pool.starmap(add, vec![(1, 2), (-5, 5), (40, 2)]).unwrap(),
        vec![3, 0, 42]
    );
    assert_eq!(pool.apply(add, (20, 22)).unwrap(), 42);
    let pending: Vec<_> = (0..20).map(|x| pool.apply_async(cube, (x,))).collect();
    for (x, result) in pending.into_iter().enumerate() {
        assert_eq!(result.get_timeout(WAIT).unwrap(), (x as u64).pow(3));
    }
    assert_eq!(pool.processes(), 4, "two ranks of two workers");
}

fn tasks_run_on_other_ranks() {
    let pool = pool();
    let ranks: BTreeSet<Option<u32>> = pool
        .with(&CallOptions::new().chunksize(1))
        .map(where_am_i, 0..200)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ranks, BTreeSet::from([Some(1), Some(2)]));
    // A local pool on rank 0 stays here.
    let local = Pool::builder().local().processes(1).build().unwrap();
    assert_eq!(local.apply(where_am_i, (0,)).unwrap(), Some(0));
}

fn panics_are_errors() {
    let pool = pool();
    let err = pool.map(refuse_seven, 0..20).unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("seven is refused"));
    assert!(
        err.panic_location().unwrap().file().ends_with("mpi.rs"),
        "{err}"
    );
    assert_eq!(
        pool.map(refuse_seven, 0..7).unwrap(),
        (0..7).collect::<Vec<_>>()
    );
}

fn a_crash_fails_only_its_task() {
    let pool = pool();
    let pending: Vec<_> = (0..8)
        .map(|x| pool.apply_async(abort_on_three, (x,)))
        .collect();
    for (x, result) in pending.into_iter().enumerate() {
        match result.get_timeout(WAIT) {
            Ok(value) => assert_eq!(value as usize, x),
            Err(err) => {
                assert_eq!(x, 3, "only the task that aborts fails: {err}");
                assert!(err.is_died(), "{err}");
                assert_eq!(err.signal(), Some(libc::SIGABRT), "{err}");
            }
        }
    }
    let err = pool.map(abort_on_three, 0..6).unwrap_err();
    assert!(err.is_died(), "{err}");
    // The ranks live on, with fresh workers.
    assert_eq!(pool.map(cube, 0..4).unwrap(), vec![0, 1, 8, 27]);
}

fn imap_and_imap_unordered() {
    let pool = pool();
    let ordered: Vec<u64> = pool.imap(cube, 0..500).map(Result::unwrap).collect();
    assert_eq!(ordered, (0..500).map(|x| x * x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(cube, 0..500)
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
}

fn large_payloads_cross_in_pieces() {
    let pool = pool();
    // Several pieces each way, with a last piece that is not full.
    let bytes: Vec<u8> = (0..(5 * 1024 * 1024 + 3))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut expected = bytes.clone();
    expected.reverse();
    assert!(bytes.len() > 10 * PIECE_BYTES);
    assert_eq!(pool.apply(reverse, (bytes.clone(),)).unwrap(), expected);
    // Small and large together, in one map.
    let inputs = vec![vec![1, 2, 3], bytes, Vec::new()];
    let reversed = pool.map(reverse, inputs).unwrap();
    assert_eq!(reversed[0], vec![3, 2, 1]);
    assert_eq!(reversed[1], expected);
    assert!(reversed[2].is_empty());
}

fn initializer_runs_on_every_rank() {
    let pool = Pool::builder()
        .mpi()
        .processes(1)
        .initializer(set_prefix, ("hello ".to_string(),))
        .build()
        .unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    let greeted = pool
        .with(&CallOptions::new().chunksize(1))
        .map(prefixed, names.clone())
        .unwrap();
    assert_eq!(
        greeted,
        names
            .iter()
            .map(|n| format!("hello {n}"))
            .collect::<Vec<_>>()
    );
}

#[process_fn]
fn my_pid(_: u32) -> u32 {
    std::process::id()
}

fn settings_reach_every_rank() {
    let pool = Pool::builder()
        .mpi()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let pids: BTreeSet<u32> = pool
        .with(&CallOptions::new().chunksize(1))
        .map(my_pid, 0..12)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 12, "each task had a fresh worker");
}

/// Where this task ran, and whether it could list the temporary directory (a sandbox
/// closes it).
#[process_fn]
fn sandboxed_where(_: u32) -> (Option<u32>, bool) {
    (mpi_rank(), std::fs::read_dir(std::env::temp_dir()).is_ok())
}

/// Each rank's workers enter the pool's sandbox; the ranks themselves do not (they still
/// talk to rank 0), and a refusal on a rank fails the pool's build.
fn a_sandbox_holds_on_every_rank() {
    let pool = Pool::builder()
        .mpi()
        .processes(1)
        .sandbox(Sandbox::new())
        .build()
        .unwrap();
    let seen: BTreeSet<(Option<u32>, bool)> = pool
        .with(&CallOptions::new().chunksize(1))
        .map(sandboxed_where, 0..20)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(seen, BTreeSet::from([(Some(1), false), (Some(2), false)]));
    let report = pool.sandbox_report().expect("the ranks' report");
    assert!(report.is_complete(), "{report}");
    let missing = Sandbox::new().read_only("/no/such/path");
    let err = Pool::builder().mpi().sandbox(missing).build().unwrap_err();
    assert!(err.is_sandbox(), "{err}");
    assert!(err.to_string().contains("/no/such/path"), "{err}");
    // A pool without one, on the same ranks, is not sandboxed.
    let plain = Pool::builder().mpi().processes(1).build().unwrap();
    assert!(plain.apply(sandboxed_where, (0,)).unwrap().1);
}

fn handles_are_refused_clearly() {
    let pool = pool();
    let (end, _other) = mp_runtime::pipe().unwrap();
    let err = pool.apply(take_pipe, (end,)).unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert!(err.to_string().contains("cannot cross"), "{err}");
    assert_eq!(pool.apply(cube, (2,)).unwrap(), 8);
}

fn pools_side_by_side_and_in_turn() {
    let first = pool();
    let second = pool();
    let a = first.map_async(cube, 0..300);
    let b = second.map_async(cube, 300..600);
    assert_eq!(a.get_timeout(WAIT).unwrap()[299], 299u64.pow(3));
    assert_eq!(b.get_timeout(WAIT).unwrap()[0], 300u64.pow(3));
    drop(first);
    drop(second);
    for round in 0..5u64 {
        assert_eq!(pool().apply(cube, (round,)).unwrap(), round.pow(3));
    }
    // pool_map! uses the other ranks too.
    assert_eq!(mp_runtime::pool_map!(cube, vec![1, 2]).unwrap(), vec![1, 8]);
}

fn close_join_and_terminate() {
    let pool = self::pool();
    let pending = pool.apply_async(sleep_ms, (50,));
    pool.close();
    pool.join().unwrap();
    assert_eq!(pending.get_timeout(WAIT).unwrap(), 50);
    assert!(pool.apply(cube, (1,)).unwrap_err().is_closed());

    let pool = self::pool();
    let stuck = pool.apply_async(sleep_ms, (600_000,));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    pool.terminate();
    pool.join().unwrap();
    assert!(stuck.get_timeout(WAIT).unwrap_err().is_closed());
    assert!(started.elapsed() < WAIT, "terminate stops a running task");
}

/// Rank 0's logger, set in `main`: keeps every record's text (target, then message). Made
/// slow, it takes 40 ms a record and prints each on standard output.
struct Captured(Mutex<Vec<String>>);

static SLOW_LOGGER: AtomicBool = AtomicBool::new(false);

impl Captured {
    fn lines_ending(&self, end: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .iter()
            .filter(|line| line.ends_with(end))
            .cloned()
            .collect()
    }
}

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let text = format!("{} {}", record.target(), record.args());
        if SLOW_LOGGER.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(40));
            println!("logged: {text}");
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
    }

    fn flush(&self) {}
}

static CAPTURED: Captured = Captured(Mutex::new(Vec::new()));

/// Logs with `log` and `tracing`, at a level rank 0's logger takes and at one it does not;
/// returns the rank it ran on.
#[process_fn]
fn log_on_a_rank(x: u32) -> Option<u32> {
    log::info!("log record {x}");
    log::debug!("debug record {x}");
    tracing::warn!(x, "tracing event");
    mpi_rank()
}

fn worker_logs_reach_rank_zero() {
    let pool = pool();
    let ranks = pool
        .with(&CallOptions::new().chunksize(1))
        .map(log_on_a_rank, 0..20)
        .unwrap();
    // Read at once: a task's records are passed on before its result is delivered, when the
    // logger keeps up (as this one does).
    for (x, rank) in ranks.into_iter().enumerate() {
        let rank = rank.expect("ran on a worker rank");
        let mark = format!("[rank {rank} SpawnPoolWorker-");
        for needle in [format!("log record {x}"), format!("tracing event x={x}")] {
            let lines = CAPTURED.lines_ending(&needle);
            assert_eq!(lines.len(), 1, "{needle:?} once");
            assert!(
                lines[0].contains(&mark) && lines[0].starts_with("mpi "),
                "not marked with rank {rank}'s worker, or the target is lost: {}",
                lines[0]
            );
        }
    }
    assert!(
        (0..20).all(|x| CAPTURED
            .lines_ending(&format!("debug record {x}"))
            .is_empty()),
        "rank 0's level (info) is not honoured"
    );
}

/// Logs `n` records.
#[process_fn]
fn log_many(n: u32) -> u32 {
    for i in 0..n {
        log::info!("end record {i}");
    }
    n
}

/// How many records [`logs_at_the_end`] logs.
const END_RECORDS: u32 = 10;

/// The job ends while rank 0's logger still has a rank's records to log (it takes 40 ms
/// each): they are logged before it ends, which [`launch`] checks in the output.
fn logs_at_the_end() {
    let pool = Pool::builder().mpi().processes(1).build().unwrap();
    SLOW_LOGGER.store(true, Ordering::Relaxed);
    // Delivered once the logger is found slow (100 ms), with most records still queued.
    assert_eq!(pool.apply(log_many, (END_RECORDS,)).unwrap(), END_RECORDS);
}

fn cases() -> Vec<(&'static str, fn())> {
    vec![
        ("results_in_order", results_in_order),
        ("tasks_run_on_other_ranks", tasks_run_on_other_ranks),
        ("panics_are_errors", panics_are_errors),
        ("a_crash_fails_only_its_task", a_crash_fails_only_its_task),
        ("imap_and_imap_unordered", imap_and_imap_unordered),
        (
            "large_payloads_cross_in_pieces",
            large_payloads_cross_in_pieces,
        ),
        (
            "initializer_runs_on_every_rank",
            initializer_runs_on_every_rank,
        ),
        ("settings_reach_every_rank", settings_reach_every_rank),
        ("handles_are_refused_clearly", handles_are_refused_clearly),
        (
            "a_sandbox_holds_on_every_rank",
            a_sandbox_holds_on_every_rank,
        ),
        (
            "pools_side_by_side_and_in_turn",
            pools_side_by_side_and_in_turn,
        ),
        ("close_join_and_terminate", close_join_and_terminate),
        ("worker_logs_reach_rank_zero", worker_logs_reach_rank_zero),
    ]
}

/// Rank 0 panics while every rank has tasks running: the whole job must end, promptly.
fn panic_with_work_running() {
    let pool = Pool::builder().mpi().processes(1).build().unwrap();
    let _running = pool.map_async(sleep_ms, vec![300; 40]);
    std::thread::sleep(Duration::from_millis(300));
    panic!("rank 0 gives up");
}

/// Squares `x`; on rank 2, kills the rank's own process (this worker's parent) instead, as a
/// node failure would.
#[process_fn]
fn square_or_kill_rank_two(x: u64) -> u64 {
    if mpi_rank() == Some(2) {
        // SAFETY: plain system calls; the parent is the rank process, which the test ends.
        unsafe { libc::kill(libc::getppid(), libc::SIGKILL) };
        std::thread::sleep(Duration::from_secs(30));
    }
    x * x
}

/// Under Open MPI with fault tolerance (`mpiexec --with-ft ulfm`): rank 2 dies in the middle
/// of a map. Every task still completes (retried on rank 1), the loss is reported, a new pool
/// works on the ranks left, and the job ends promptly. Writes "ok" to `path` at the end, since
/// the launcher's own exit status reports the dead rank.
fn survive_a_lost_rank(path: &str) {
    let started = Instant::now();
    let pool = Pool::builder()
        .mpi()
        .processes(1)
        .retries(2)
        .build()
        .unwrap();
    assert_eq!(pool.processes(), 2);
    let squares = pool
        .with(&CallOptions::new().chunksize(1))
        .map(square_or_kill_rank_two, 0..40)
        .unwrap();
    assert!(squares.iter().copied().eq((0..40).map(|x| x * x)));
    assert_eq!(mp_runtime::lost_mpi_ranks(), [2]);
    // The same pool goes on with rank 1, and counts only its workers.
    assert_eq!(pool.processes(), 1);
    assert_eq!(pool.map(cube, [2, 3]).unwrap(), [8, 27]);
    drop(pool);
    let fresh = Pool::builder().mpi().processes(1).build().unwrap();
    assert_eq!(fresh.processes(), 1, "a new pool leaves the lost rank out");
    assert!(
        fresh
            .map(where_am_i, 0..8)
            .unwrap()
            .iter()
            .all(|&rank| rank == Some(1))
    );
    drop(fresh);
    println!("rank loss survived in {:?}", started.elapsed());
    std::fs::write(path, "ok").unwrap();
}

/// The variable that makes a run under the launcher one of [`survive_a_lost_rank`]: the path
/// where rank 0 writes "ok".
const RANK_LOSS_VAR: &str = "MP_TEST_RANK_LOSS";

fn main() -> ExitCode {
    if mpi_rank().is_none() {
        return match std::env::var(RANK_LOSS_VAR) {
            Ok(path) => launch_rank_loss(&path),
            Err(_) => launch(),
        };
    }
    if let Ok(path) = std::env::var(RANK_LOSS_VAR) {
        survive_a_lost_rank(&path);
        return ExitCode::SUCCESS;
    }
    // As a program's `main` sets up its logging: before any pool starts.
    log::set_logger(&CAPTURED).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let filter = std::env::args().nth(1).filter(|arg| !arg.starts_with('-'));
    if filter.as_deref() == Some(PANIC_CASE) {
        panic_with_work_running();
    }
    if filter.as_deref() == Some(END_CASE) {
        logs_at_the_end();
        return ExitCode::SUCCESS;
    }
    let mut failed = 0;
    for (name, case) in cases() {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        match panic::catch_unwind(AssertUnwindSafe(case)) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        println!("{failed} failed");
        ExitCode::FAILURE
    } else {
        println!("all passed under mpirun");
        ExitCode::SUCCESS
    }
}

/// The argument that makes rank 0 run [`panic_with_work_running`] alone.
const PANIC_CASE: &str = "rank_zero_panics";

/// The argument that makes rank 0 run [`logs_at_the_end`] alone.
const END_CASE: &str = "logs_at_the_end";

/// Runs the cases under `mpirun -n 3`, then checks that a panic on rank 0 ends every rank.
fn launch() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let Some(status) = run_under_mpirun(&filters, None) else {
        return ExitCode::FAILURE;
    };
    if !status.success() {
        eprintln!("the run under mpirun failed: {status}");
        return ExitCode::FAILURE;
    }
    let Some(status) = run_under_mpirun(&[PANIC_CASE.to_string()], None) else {
        return ExitCode::FAILURE;
    };
    // mpirun passes on rank 0's exit code: 101, Rust's for a panic.
    if status.code() != Some(101) {
        eprintln!("a panic on rank 0 should end the job with code 101; got {status}");
        return ExitCode::FAILURE;
    }
    let exe = std::env::current_exe().unwrap();
    let me = std::process::id();
    let leftovers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me && mp_support::is_running(pid))
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe))
            .collect::<Vec<u32>>()
    };
    if !mp_support::wait_for(Duration::from_secs(10), || leftovers().is_empty()) {
        eprintln!("processes left after rank 0 panicked: {:?}", leftovers());
        return ExitCode::FAILURE;
    }
    println!("test rank_zero_panics_ends_every_rank ... ok");
    logs_reach_rank_zero_at_the_end()
}

/// Runs [`logs_at_the_end`] under the launcher: every record the rank sent is logged.
fn logs_reach_rank_zero_at_the_end() -> ExitCode {
    let output = std::env::temp_dir().join(format!("mp-mpi-logs-{}.txt", std::process::id()));
    let status = run_under_mpirun(&[END_CASE.to_string()], Some(&output));
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let _ = std::fs::remove_file(&output);
    if !status.is_some_and(|status| status.success()) {
        eprintln!("the run of {END_CASE} failed: {status:?}\n{text}");
        return ExitCode::FAILURE;
    }
    let missing: Vec<u32> = (0..END_RECORDS)
        .filter(|i| {
            !text.lines().any(|line| {
                line.starts_with("logged: ") && line.ends_with(&format!("end record {i}"))
            })
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("records {missing:?} were lost at the job's end; rank 0 logged:\n{text}");
        return ExitCode::FAILURE;
    }
    println!("test logs_reach_rank_zero_at_the_end ... ok");
    ExitCode::SUCCESS
}

/// Runs [`survive_a_lost_rank`] under the launcher (which must tolerate a dead rank:
/// `MP_TEST_LAUNCHER="mpiexec --with-ft ulfm"`) and checks that rank 0 finished it, and soon.
fn launch_rank_loss(path: &str) -> ExitCode {
    let _ = std::fs::remove_file(path);
    let started = Instant::now();
    // The launcher's status reports the rank that died; rank 0's "ok" is what counts.
    let Some(_) = run_under_mpirun(&[], None) else {
        return ExitCode::FAILURE;
    };
    let ended = started.elapsed();
    if std::fs::read_to_string(path).ok().as_deref() != Some("ok") {
        eprintln!("rank 0 did not survive the loss of rank 2 (no \"ok\" in {path})");
        return ExitCode::FAILURE;
    }
    // Generous for a loaded machine; a job that waits for its dead rank takes far longer.
    if ended > Duration::from_secs(60) {
        eprintln!("the job took {ended:?} to end after losing a rank");
        return ExitCode::FAILURE;
    }
    println!("test a_lost_rank_is_survived ... ok ({ended:?})");
    ExitCode::SUCCESS
}

/// Runs this binary under `mpirun -n 3` with `args`, its standard output to `stdout` if
/// given, killing it if it runs past [`RUN_LIMIT`]; `None` if it could not run or was killed.
///
/// The launcher is `mpirun`, or the command line in `MP_TEST_LAUNCHER` (such as
/// `srun --mpi=pmi2`, or a venv's `mpiexec`). Open MPI refuses to start ranks as root or more
/// ranks than cores unless told: the variables that tell it are set here (MPICH ignores them).
fn run_under_mpirun(
    args: &[String],
    stdout: Option<&std::path::Path>,
) -> Option<std::process::ExitStatus> {
    let exe = std::env::current_exe().unwrap();
    let launcher = std::env::var("MP_TEST_LAUNCHER").unwrap_or_else(|_| "mpirun".to_string());
    let mut launcher = launcher.split_whitespace();
    let mut command = Command::new(launcher.next().unwrap_or("mpirun"));
    command
        .args(launcher)
        .args(["-n", "3"])
        .arg(exe)
        .args(args)
        .env("MP_MPI_PIECE_BYTES", PIECE_BYTES.to_string())
        .env("RUST_BACKTRACE", "0")
        // Open MPI 4 and 5: as root, and 3 ranks on fewer cores.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe");
    if let Some(path) = stdout {
        command.stdout(std::fs::File::create(path).unwrap());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "cannot run mpirun ({error}): these tests need an MPI launcher; install MPICH \
                 (apt-get install mpich libmpich-dev)"
            );
            return None;
        }
    };
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            // SIGTERM first: mpirun then ends the ranks on its way out.
            // SAFETY: plain system call on our own, not yet reaped, child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("the run under mpirun took over {RUN_LIMIT:?}; killed");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
