//! The rings' memory: a sealed memory file mapped in both processes, or, under `--cfg loom`,
//! ordinary memory of loom's atomics that loom's threads share as processes share the mapping
//! (as `sys/futex.rs` switches its words).
//!
//! Every access is atomic (words) or a copy through atomics (bytes), so it is sound whatever
//! the other process does to the same memory at the same time.

#[cfg(not(loom))]
pub(super) use real::Memory;

#[cfg(loom)]
pub(super) use model::Memory;

#[cfg(not(loom))]
mod real {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use crate::sys::memfd;
    use crate::sys::mmap::Mapping;

    /// The file, mapped.
    pub(crate) struct Memory {
        map: Mapping,
    }

    impl Memory {
        /// A new zeroed file of `len` bytes, its size sealed, mapped; with its descriptor.
        pub(crate) fn create(len: u64) -> io::Result<(Memory, OwnedFd)> {
            let fd = memfd::create(c"mp-rings")?;
            memfd::set_len(fd.as_fd(), len)?;
            memfd::seal_size(fd.as_fd())?;
            let map = Mapping::shared(fd.as_fd(), len as usize)?;
            Ok((Memory { map }, fd))
        }

        /// Maps the file `fd`, which must be `len` bytes long, sealing its size first (a seal
        /// its sender set already is set again): a file that could shrink under the mapping
        /// could fault this process's reads.
        pub(crate) fn open(fd: OwnedFd, len: u64) -> io::Result<Memory> {
            if memfd::len(fd.as_fd())? != len || memfd::seal_size(fd.as_fd()).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the rings' file is not of the size it must have",
                ));
            }
            Ok(Memory {
                map: Mapping::shared(fd.as_fd(), len as usize)?,
            })
        }

        /// The word at byte `offset`.
        pub(crate) fn word(&self, offset: usize) -> &crate::base::sync::atomic::AtomicU64 {
            &self.map.words(offset, 1)[0]
        }

        pub(crate) fn read(&self, offset: u64, out: &mut [u8]) {
            self.map.read(offset as usize, out);
        }

        pub(crate) fn write(&self, offset: u64, bytes: &[u8]) {
            self.map.write(offset as usize, bytes);
        }
    }
}

#[cfg(loom)]
mod model {
    use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering};

    use super::super::DATA;

    /// The control words and the records' bytes (from `DATA` on), of loom's atomics.
    pub(crate) struct Memory {
        words: Vec<AtomicU64>,
        bytes: Vec<AtomicU8>,
    }

    impl Memory {
        /// Zeroed memory of `len` bytes.
        #[cfg(test)]
        pub(crate) fn zeroed(len: u64) -> Memory {
            Memory {
                words: (0..DATA / 64).map(|_| AtomicU64::new(0)).collect(),
                bytes: (DATA..len).map(|_| AtomicU8::new(0)).collect(),
            }
        }

        /// The word at byte `offset` (each on a line of 64 bytes of its own).
        pub(crate) fn word(&self, offset: usize) -> &AtomicU64 {
            &self.words[offset / 64]
        }

        pub(crate) fn read(&self, offset: u64, out: &mut [u8]) {
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = self.bytes[(offset - DATA) as usize + i].load(Ordering::Relaxed);
            }
        }

        pub(crate) fn write(&self, offset: u64, bytes: &[u8]) {
            for (i, &byte) in bytes.iter().enumerate() {
                self.bytes[(offset - DATA) as usize + i].store(byte, Ordering::Relaxed);
            }
        }
    }
}
