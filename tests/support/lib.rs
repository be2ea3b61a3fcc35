//! Helpers shared by the integration tests and examples of the mp workspace.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A writer that keeps what is written, for a logger or subscriber under test; clones share
/// one buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The lines written so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut text = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; true if it held.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pids of this process's children that have exited but not been reaped.
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(stat(pid), Some((state, parent)) if state == 'Z' && parent == me))
        .collect()
}

/// This process's running children that mp does not list in `active_children` (its fork
/// server's zygote and the child that forked ahead of time), oldest first.
pub fn unlisted_children() -> Vec<u32> {
    let me = std::process::id();
    let listed: Vec<u32> = mp_runtime::active_children()
        .iter()
        .map(|child| child.pid())
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<(u64, u32)> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me) && is_running(*pid) && !listed.contains(pid))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Field 22, the start time; the fields after the command name start at field 3.
            let started = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
            Some((started.parse().ok()?, pid))
        })
        .collect();
    children.sort();
    children.into_iter().map(|(_, pid)| pid).collect()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The pid of the process's parent, as the kernel records it.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat(pid).map(|(_, parent)| parent)
}

/// A process's state letter and parent pid, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Tasks that several test binaries run: each ends its process or waits in its own way.
pub mod tasks {
    use std::time::Duration;

    use mp_runtime::process_fn;

    /// Aborts its process (SIGABRT).
    #[process_fn]
    pub fn abort() {
        std::process::abort();
    }

    /// Exits its process with `code`.
    #[process_fn]
    pub fn exit_with(code: i32) {
        std::process::exit(code);
    }

    /// Sleeps `ms` milliseconds, then returns them.
    #[process_fn]
    pub fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}
