//! Anonymous memory files (memfd): created, sized, and sealed so that their size is fixed.
//! Also the named memory files of `/dev/shm` (`shm_open`), which anyone with access can
//! resize.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

/// A new, empty anonymous memory file, close-on-exec, that can be sealed.
pub(crate) fn create(name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        name,
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// Resizes a memory file; new bytes are zero.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// A file's length now (another process may change it at once, unless it is sealed).
pub(crate) fn len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Fixes a memory file's size for good: nobody, in any process, can shrink it (which would
/// make the pages mapped past the new end a bus error to touch) or grow it.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::SHRINK | SealFlags::GROW,
    )?)
}

/// Freezes a memory file: its size and bytes can no longer change, and no seal can be
/// removed or added. What a frame's sender does before handing the file to a receiver.
pub(crate) fn seal_all(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?)
}

/// Whether [`seal_all`] was applied to the file.
pub(crate) fn is_sealed_all(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    Ok(rustix::fs::fcntl_get_seals(fd)?.contains(all))
}

/// Opens the named memory file `name` (`/NAME`, in `/dev/shm`) for reading and writing,
/// close-on-exec; with `create`, makes it (owner-only) and fails if it exists.
pub(crate) fn open_named(name: &CStr, create: bool) -> io::Result<OwnedFd> {
    let flags = if create {
        libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC
    } else {
        libc::O_RDWR | libc::O_CLOEXEC
    };
    // SAFETY: `name` is a NUL-terminated string that outlives the call; shm_open reads it
    // and returns a new descriptor or -1.
    let raw = unsafe { libc::shm_open(name.as_ptr(), flags, 0o600) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor shm_open just opened; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Removes the name of a named memory file; the memory lives on while it is open or mapped.
pub(crate) fn unlink_named(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call; shm_unlink only
    // reads it.
    if unsafe { libc::shm_unlink(name.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
