//! Process descriptors (pidfd): knowing when a child exits and signalling it without the risk
//! of a reused pid.
//!
//! A pidfd names one process for as long as the descriptor is open: it becomes readable when
//! the process exits (also when the kernel reaps it at once, in a parent that ignores
//! SIGCHLD), and a signal sent through it can never reach a later process that got the same
//! pid. Linux 5.3 and later have them; on older kernels [`open`] fails and callers fall
//! back to pids.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{PidfdFlags, WaitOptions};

use super::process::Pid;
use super::signal::Signal;

/// A descriptor of process `pid`, which must be a child of this one not reaped yet: it stays
/// valid, and readable once the process has exited, however
/// long that is.
pub(crate) fn open(pid: Pid) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        pid.to_rustix(),
        PidfdFlags::empty(),
    )?)
}

/// Sends `signal` to the process `pidfd` names. Once that process has been reaped this fails
/// with [`Cause::NoSuchProcess`](super::error::Cause) rather than signal whoever has its pid
/// now.
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(
        pidfd,
        to_rustix(signal)?,
    )?)
}

/// Sends `signal` to process `pid`: for kernels without pidfds, and processes whose pidfd
/// could not be opened.
pub(crate) fn kill_pid(pid: Pid, signal: Signal) -> io::Result<()> {
    Ok(rustix::process::kill_process(
        pid.to_rustix(),
        to_rustix(signal)?,
    )?)
}

fn to_rustix(signal: Signal) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(signal.as_raw())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Reaps process `pid`, a child of this one that no `std::process::Child` waits for (a fork
/// server's child, or one whose `Child` is gone), waiting for its end if `block`: its raw wait
/// status, or `None` if it still runs.
pub(crate) fn reap(pid: Pid, block: bool) -> io::Result<Option<i32>> {
    let options = match block {
        true => WaitOptions::empty(),
        false => WaitOptions::NOHANG,
    };
    loop {
        match rustix::process::waitpid(Some(pid.to_rustix()), options) {
            Err(rustix::io::Errno::INTR) => continue,
            waited => return Ok(waited?.map(|(_, status)| status.as_raw())),
        }
    }
}

/// Waits until one of `fds` is readable (or at end-of-file, or in error), or until `deadline`
/// (`None`: no deadline; `Some(now)`: only looks). Returns which are ready; all false on
/// timeout. An interrupted wait is resumed.
pub(crate) fn wait_readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    deadline: Option<Instant>,
) -> io::Result<[bool; N]> {
    loop {
        let mut polled = fds.map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN));
        let timeout = deadline
            .map(|at| at.saturating_duration_since(Instant::now()))
            .map(|left| {
                Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                })
            });
        match rustix::event::poll(&mut polled, timeout.as_ref()) {
            Ok(_) => return Ok(polled.map(|fd| !fd.revents().is_empty())),
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Whether the process `pidfd` names has exited, without waiting.
pub(crate) fn has_exited(pidfd: &impl AsFd) -> bool {
    wait_readable([pidfd.as_fd()], Some(Instant::now())).is_ok_and(|[ready]| ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_pidfd_is_readable_once_its_process_exits_and_refuses_signals_after_reaping() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pidfd = open(Pid::of(&child)).unwrap();
        assert!(!has_exited(&pidfd));
        send_signal(pidfd.as_fd(), Signal::KILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            wait_readable([pidfd.as_fd()], Some(deadline)).unwrap(),
            [true]
        );
        child.wait().unwrap();
        assert!(send_signal(pidfd.as_fd(), Signal::KILL).is_err());
    }
}
