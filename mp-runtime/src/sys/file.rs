//! Facts about an open file, from its descriptor.

use std::io;
use std::os::fd::BorrowedFd;

/// What tells one open file from another: its device and inode, and its status flags (access
/// mode, non-blocking), so that two descriptors with equal identities can stand for each other.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, u32)> {
    let stat = rustix::fs::fstat(fd)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok((stat.st_dev, stat.st_ino, flags.bits()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_two_ends_of_a_pipe_differ_and_a_duplicate_is_the_same() {
        let (read, write) = std::io::pipe().unwrap();
        let dup = read.try_clone().unwrap();
        let read = identity(read.as_fd()).unwrap();
        assert_ne!(read, identity(write.as_fd()).unwrap());
        assert_eq!(read, identity(dup.as_fd()).unwrap());
    }
}
