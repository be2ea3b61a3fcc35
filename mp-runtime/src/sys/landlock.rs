//! Landlock (Linux 5.13 and later): an unprivileged process's own allow-list of paths, TCP
//! ports and, from ABI 6, of what outside its domain it may signal or reach by abstract Unix
//! socket. Once restricted, the process and every child it forks keep the restriction.
//!
//! The three system calls and their structures, from the kernel's `uapi/linux/landlock.h`
//! (the `libc` crate has the call numbers only).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

// Rights on files (the first group) and directories, by the ABI that added them.
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
/// ABI 2: moving or linking a file into another directory.
const REFER: u64 = 1 << 13;
/// ABI 3: truncating a file.
const TRUNCATE: u64 = 1 << 14;
/// ABI 5: ioctl on a device file.
const IOCTL_DEV: u64 = 1 << 15;

/// The rights that a rule on a file (not a directory) may grant.
const ON_FILES: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

// ABI 4: TCP.
const BIND_TCP: u64 = 1 << 0;
const CONNECT_TCP: u64 = 1 << 1;

// ABI 6: scopes.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: i32 = 1;

/// `struct landlock_ruleset_attr`: a kernel that knows fewer fields takes this size as long as
/// the fields it does not know are 0.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`, packed as the kernel declares it.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What a rule lets the process do beneath a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read files, list directories.
    Read,
    /// Read, write, create, remove, rename and truncate files and directories (no devices,
    /// sockets or pipes are made, nothing is executed).
    ReadWrite,
}

/// The Landlock ABI this kernel offers (1 on Linux 5.13, 3 on 6.2, 4 on 6.7, 6 on 6.12, 7 on
/// 6.15), or why it offers none: `ENOSYS` (not built in) or `EOPNOTSUPP` (built in, not
/// enabled at boot).
pub(crate) fn abi() -> io::Result<u32> {
    // SAFETY: with the VERSION flag the call reads no attribute (null, size 0) and returns a
    // number, not a descriptor.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(abi as u32)
}

/// A set of rules being built; [`restrict_self`](Ruleset::restrict_self) puts this thread
/// under it.
pub(crate) struct Ruleset {
    fd: OwnedFd,
    abi: u32,
}

impl Ruleset {
    /// A ruleset under which everything of ABI `abi` is denied but what rules allow: every
    /// file-system right; TCP bind and connect unless `network` (from ABI 4); signals and
    /// abstract Unix sockets outside the domain (from ABI 6).
    pub(crate) fn new(abi: u32, network: bool) -> io::Result<Ruleset> {
        let attr = RulesetAttr {
            handled_access_fs: fs_rights(abi),
            handled_access_net: if abi >= 4 && !network {
                BIND_TCP | CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // SAFETY: `attr` is a live `landlock_ruleset_attr` of the size given; the call returns
        // a new descriptor, owned below, or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Ruleset { fd, abi })
    }

    /// Allows `access` beneath `path` (a directory), or on it (a file: only the file rights of
    /// `access`). `path` is opened without following any symbolic link on the way (`openat2`
    /// with `RESOLVE_NO_SYMLINKS`, Linux 5.6, before Landlock's 5.13): a link planted where a
    /// canonical path was given fails with ELOOP rather than widen the rule to what it names.
    pub(crate) fn allow(&self, path: &Path, access: Access) -> io::Result<()> {
        let wanted = match access {
            Access::Read => READ_FILE | READ_DIR,
            Access::ReadWrite => {
                READ_FILE
                    | READ_DIR
                    | WRITE_FILE
                    | REMOVE_DIR
                    | REMOVE_FILE
                    | MAKE_DIR
                    | MAKE_REG
                    | MAKE_SYM
                    | REFER
                    | TRUNCATE
            }
        };
        let opened = rustix::fs::openat2(
            rustix::fs::CWD,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            rustix::fs::ResolveFlags::NO_SYMLINKS,
        )?;
        let mode = rustix::fs::fstat(&opened)?.st_mode;
        let is_dir = rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory;
        let mut allowed = wanted & fs_rights(self.abi);
        if !is_dir {
            allowed &= ON_FILES;
        }
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: opened.as_raw_fd(),
        };
        // SAFETY: the ruleset and `opened` are live descriptors, and `attr` a live
        // `landlock_path_beneath_attr` for the PATH_BENEATH rule type.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if added != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Puts the calling thread, and what it forks or starts from now on, under the rules.
    /// Needs no-new-privileges (see `process::forbid_new_privileges`), unless the caller has
    /// CAP_SYS_ADMIN; other threads already running are not restricted.
    pub(crate) fn restrict_self(self) -> io::Result<()> {
        // SAFETY: the ruleset is a live descriptor; flags 0.
        let done =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, self.fd.as_raw_fd(), 0u32) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Every file-system right that ABI `abi` knows: all of them are denied but what rules allow.
fn fs_rights(abi: u32) -> u64 {
    let mut rights = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_abi_handles_what_it_knows() {
        assert_eq!(fs_rights(1) & (REFER | TRUNCATE | IOCTL_DEV), 0);
        assert_eq!(fs_rights(2) & (TRUNCATE | IOCTL_DEV), 0);
        assert_eq!(fs_rights(4) & IOCTL_DEV, 0);
        assert_eq!(fs_rights(7), (1 << 16) - 1);
    }

    // The struct the kernel reads must have its layout, or every rule names the wrong path.
    #[test]
    fn the_path_rule_is_packed_as_the_kernel_declares_it() {
        assert_eq!(size_of::<PathBeneathAttr>(), 12);
        assert_eq!(size_of::<RulesetAttr>(), 24);
    }
}
