//! What a failed system call's error means, in the cases the code above tells apart: the error
//! numbers themselves stay here.

use std::io;

/// A cause of failure that callers handle or explain, whatever its number on this platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The process is gone: reaped, by this process or by the kernel (ESRCH).
    NoSuchProcess,
    /// The process is no child of this one, or was reaped elsewhere (ECHILD).
    NotAChild,
    /// This process, or the system, has no file descriptor free (EMFILE, ENFILE).
    OutOfDescriptors,
    /// An error-checking lock that this thread holds already (EDEADLK).
    AlreadyHeld,
    /// A new program's arguments and environment are too large (E2BIG).
    ArgumentsTooLarge,
    /// A file, or a program's dynamic loader, is missing (ENOENT).
    NotFound,
    /// A file may not be opened or executed (EACCES).
    AccessDenied,
    /// A resource limit, most often the count of this user's processes, is reached for now
    /// (EAGAIN).
    ResourceLimit,
    /// The machine is out of memory (ENOMEM).
    OutOfMemory,
    /// The kernel has no such system call, or a filter answers for it as if (ENOSYS).
    NoSuchCall,
    /// The kernel has the feature, but it is turned off (EOPNOTSUPP).
    TurnedOff,
    /// The kernel does not know what was asked of the call (EINVAL).
    UnknownRequest,
    /// A path is, or passes through, a symbolic link where none may be followed (ELOOP).
    Loop,
}

impl Cause {
    /// The cause of `error`, when it is one of these.
    pub(crate) fn of(error: &io::Error) -> Option<Cause> {
        Some(match error.raw_os_error()? {
            libc::ESRCH => Cause::NoSuchProcess,
            libc::ECHILD => Cause::NotAChild,
            libc::EMFILE | libc::ENFILE => Cause::OutOfDescriptors,
            libc::EDEADLK => Cause::AlreadyHeld,
            libc::E2BIG => Cause::ArgumentsTooLarge,
            libc::ENOENT => Cause::NotFound,
            libc::EACCES => Cause::AccessDenied,
            libc::EAGAIN => Cause::ResourceLimit,
            libc::ENOMEM => Cause::OutOfMemory,
            libc::ENOSYS => Cause::NoSuchCall,
            libc::EOPNOTSUPP => Cause::TurnedOff,
            libc::EINVAL => Cause::UnknownRequest,
            libc::ELOOP => Cause::Loop,
            _ => return None,
        })
    }

    /// An error of this cause, as the OS gives it.
    pub(crate) fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Cause::NoSuchProcess => libc::ESRCH,
            Cause::NotAChild => libc::ECHILD,
            Cause::OutOfDescriptors => libc::EMFILE,
            Cause::AlreadyHeld => libc::EDEADLK,
            Cause::ArgumentsTooLarge => libc::E2BIG,
            Cause::NotFound => libc::ENOENT,
            Cause::AccessDenied => libc::EACCES,
            Cause::ResourceLimit => libc::EAGAIN,
            Cause::OutOfMemory => libc::ENOMEM,
            Cause::NoSuchCall => libc::ENOSYS,
            Cause::TurnedOff => libc::EOPNOTSUPP,
            Cause::UnknownRequest => libc::EINVAL,
            Cause::Loop => libc::ELOOP,
        })
    }

    /// Whether `error` has this cause.
    pub(crate) fn is(self, error: &io::Error) -> bool {
        Cause::of(error) == Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_found_in_its_own_error() {
        for cause in [
            Cause::NoSuchProcess,
            Cause::NotAChild,
            Cause::OutOfDescriptors,
            Cause::AlreadyHeld,
            Cause::ArgumentsTooLarge,
            Cause::NotFound,
            Cause::AccessDenied,
            Cause::ResourceLimit,
            Cause::OutOfMemory,
            Cause::NoSuchCall,
            Cause::TurnedOff,
            Cause::UnknownRequest,
            Cause::Loop,
        ] {
            assert!(cause.is(&cause.error()), "{cause:?}");
        }
        assert_eq!(Cause::of(&io::Error::other("no number")), None);
    }
}
