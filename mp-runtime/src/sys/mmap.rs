//! Shared mappings of a file, unmapped when dropped, and the only ways into their bytes:
//! typed state that is made for sharing ([`InMapping`], and `Monitor<[T]>` in `mutex`), copies
//! through atomics, which are sound however other threads and processes use the same bytes,
//! and, for a caller that promises no one writes meanwhile, the bytes as a slice. Also advice
//! on how to back memory of this process's own.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

use super::memfd;

/// The alignment every mapping has at least (the smallest page size of Linux).
pub(crate) const PAGE: usize = 4096;

/// A type that may live in a shared mapping and be used through `&Self` by any number of
/// threads and processes at once.
///
/// # Safety
///
/// All-zero bytes must be a valid `Self` (a fresh memory file is zeros), every access through
/// `&Self` must be free of data races (atomics, or `UnsafeCell` behind a process-shared lock),
/// and `Self` must hold no pointers, which mean nothing in another process.
pub(crate) unsafe trait InMapping {}

/// `len` bytes of a file mapped shared and writable; unmapped when dropped.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` owns an address range; every access to the bytes in it goes through
// atomics or `InMapping` types, which are made for use from any thread, or through slices
// whose callers promise that no one else writes meanwhile.
unsafe impl Send for Mapping {}
// SAFETY: as for Send.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared and writable.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        // SAFETY: a new mapping at an address the kernel picks, so it replaces nothing this
        // process uses; the file is open for reading and writing.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len.max(1),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast()).expect("mmap never maps address 0 unless asked");
        Ok(Mapping { ptr, len })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte (page aligned), for the typed views of this folder; valid for `len`
    /// bytes while `self` lives.
    pub(super) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// All the bytes, as a slice.
    ///
    /// # Safety
    ///
    /// No thread or process may write the bytes while the slice lives.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped for as long as `self` is borrowed, and any byte is a
        // valid `u8`; the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// All the bytes, as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other thread or process may read or write the bytes while the slice lives (another
    /// `Mapping` of the same file maps the same bytes).
    pub(crate) unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `self` is borrowed mutably, and the caller rules out every
        // other access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The `T` at `offset`. Panics if it does not fit or is misaligned.
    pub(crate) fn get<T: InMapping>(&self, offset: usize) -> &T {
        assert!(
            offset
                .checked_add(size_of::<T>())
                .is_some_and(|end| end <= self.len)
                && offset % align_of::<T>() == 0
                && align_of::<T>() <= PAGE,
            "a state outside its mapping"
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page aligned); the
        // memory is a valid `T` whatever its bytes (`InMapping`: zeros are valid, and the
        // only writes are through `&T`); it stays mapped for as long as `self` is borrowed.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    /// The bytes from `offset` on, as atomics. Panics if they are not mapped.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[AtomicU8] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "bytes outside their mapping"
        );
        // SAFETY: in bounds (checked); `AtomicU8` has the size and alignment of `u8`, every
        // byte is a valid one, and atomics are sound to share with any other user of the
        // memory; the range stays mapped while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast(), len) }
    }

    /// The 8-byte words from byte `offset` on, as atomics. Panics if they are not mapped or
    /// `offset` is not a multiple of 8.
    pub(crate) fn words(&self, offset: usize, count: usize) -> &[AtomicU64] {
        if count == 0 {
            return &[];
        }
        assert!(
            offset % 8 == 0
                && count
                    .checked_mul(8)
                    .and_then(|len| offset.checked_add(len))
                    .is_some_and(|end| end <= self.len),
            "words outside their mapping"
        );
        // SAFETY: in bounds and 8-byte aligned (checked; the mapping is page aligned), and
        // as in `bytes`: any bits are a valid `AtomicU64`, and atomics may be shared.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast(), count) }
    }

    /// Copies bytes from `offset` on into `out`, a word at a time where it can. Sound while
    /// others write them; a concurrent write may be seen in part (whole bytes, no more).
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) {
        let (head, words, tail) = self.split(offset, out.len());
        let (out_head, rest) = out.split_at_mut(head.len());
        let (out_words, out_tail) = rest.split_at_mut(words.len() * 8);
        for (b, a) in out_head.iter_mut().zip(head) {
            *b = a.load(Ordering::Relaxed);
        }
        for (chunk, w) in out_words.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        for (b, a) in out_tail.iter_mut().zip(tail) {
            *b = a.load(Ordering::Relaxed);
        }
    }

    /// Copies `bytes` in from `offset` on, a word at a time where it can. Sound while others
    /// read or write them.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        let (head, words, tail) = self.split(offset, bytes.len());
        let (in_head, rest) = bytes.split_at(head.len());
        let (in_words, in_tail) = rest.split_at(words.len() * 8);
        for (a, &b) in head.iter().zip(in_head) {
            a.store(b, Ordering::Relaxed);
        }
        for (w, chunk) in words.iter().zip(in_words.chunks_exact(8)) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8"));
            w.store(word, Ordering::Relaxed);
        }
        for (a, &b) in tail.iter().zip(in_tail) {
            a.store(b, Ordering::Relaxed);
        }
    }

    /// The range `offset..offset + len` as unaligned leading bytes, aligned words, and
    /// trailing bytes.
    fn split(&self, offset: usize, len: usize) -> (&[AtomicU8], &[AtomicU64], &[AtomicU8]) {
        let all = self.bytes(offset, len);
        let head = offset.next_multiple_of(8).saturating_sub(offset).min(len);
        let count = (len - head) / 8;
        let tail = len - head - count * 8;
        (
            &all[..head],
            self.words(offset + head, count),
            &all[len - tail..],
        )
    }

    /// Gives the address range up for good, without unmapping it: for a mapping that
    /// something outside Rust's view may still use (a robust mutex on glibc's list of this
    /// thread's held locks, after a guard was forgotten).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `shared` mapped; every borrow of it (references
        // from `get`, `bytes`, `words`, `as_slice`, `Monitor::in_mapping`) is tied to `&self`,
        // so none outlives this. munmap fails only for a range that is not a mapping, which
        // this one is.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

/// Asks the kernel to back the whole pages of `memory`, this process's own (not yet written),
/// with transparent huge pages: filling it then takes one fault per 2 MiB instead of one per
/// page. A refusal changes nothing but speed.
pub(crate) fn advise_huge_pages<T>(memory: &mut [MaybeUninit<T>]) {
    // The whole pages inside the range: madvise wants a page-aligned start.
    let start = memory.as_mut_ptr().cast::<u8>();
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize + size_of_val(memory)) & !(PAGE - 1);
    if end <= first {
        return;
    }
    // SAFETY: the advice only changes how the kernel backs these pages of memory borrowed
    // mutably here, not their contents nor whether they are mapped.
    let _ = unsafe {
        rustix::mm::madvise(
            start.wrapping_add(first - start as usize).cast(),
            end - first,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

/// A read-only map of a file that its sender sealed against every change (see
/// [`memfd::seal_all`]): a frame that came as a memfd. Unmapped when dropped.
pub(crate) struct Sealed {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and this value is its only owner, so it may move to another
// thread; the bytes it points to never change (the file is sealed against writes).
unsafe impl Send for Sealed {}

impl Sealed {
    /// Maps the first `len` bytes of `file`, which must be sealed against every change and hold
    /// at least `len` bytes: otherwise its sender could shrink it under the map, and reading it
    /// would die of SIGBUS.
    pub(crate) fn of_file(file: BorrowedFd<'_>, len: usize) -> io::Result<Sealed> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        if !memfd::is_sealed_all(file).unwrap_or(false) {
            return Err(invalid("a frame came in a file that is not sealed"));
        }
        if len == 0 || memfd::len(file)? < len as u64 {
            return Err(invalid("a frame came in a file shorter than it announced"));
        }
        // SAFETY: a new read-only mapping at an address the kernel picks, so it replaces
        // nothing this process uses, of `len` bytes that the file holds and, sealed, keeps;
        // POPULATE faults them in at once, in one call.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED | MapFlags::POPULATE,
                file,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast()).expect("mmap never maps address 0 unless asked");
        Ok(Sealed { ptr, len })
    }
}

impl std::ops::Deref for Sealed {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until this value is dropped, and the file is
        // sealed, so they stay there and unchanged; no one writes through this mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `of_file` mapped, which no slice outlives (they
        // borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::memfd;
    use std::os::fd::AsFd;

    #[test]
    fn copies_at_any_offset_and_length_round_trip() {
        let fd = memfd::create(c"mp-test").unwrap();
        memfd::set_len(fd.as_fd(), 64).unwrap();
        let map = Mapping::shared(fd.as_fd(), 64).unwrap();
        let other = Mapping::shared(fd.as_fd(), 64).unwrap();
        for offset in 0..12 {
            for len in 0..40 {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + offset + 1) as u8).collect();
                map.write(offset, &bytes);
                let mut back = vec![0; len];
                other.read(offset, &mut back);
                assert_eq!(back, bytes, "offset {offset}, len {len}");
            }
        }
    }
}
