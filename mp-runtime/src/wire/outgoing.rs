//! [`Outgoing`]: the bytes of a frame being encoded for another process.
//!
//! They gather in memory while the frame is small. Once it reaches [`FILE_FRAME`] bytes they
//! move to a memfd, and later bytes go straight to it with `pwrite`, so a large value is copied
//! once, into the file the receiver maps, rather than into a growing buffer first (whose fresh
//! pages the kernel must also fault in and zero) and into the file after. The channel sends a
//! finished file as a descriptor beside an empty frame.
//!
//! Where no memfd can be made (a seccomp profile that refuses `memfd_create`, or no descriptor
//! free), the frame stays in memory and goes through the socket like a small one: slower, but
//! the call works.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use crate::sys::memfd;

/// Frames from this size on travel in a memfd: below it, the socket's two copies cost less
/// than creating, writing, mapping and unmapping a file.
pub(crate) const FILE_FRAME: usize = 1 << 20;

/// Once in a file, small writes gather in memory up to this many bytes before they are written.
const WRITE_CHUNK: usize = 64 * 1024;

/// A frame being encoded: in memory while small, in a memfd once large.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Outgoing {
    /// The bytes not in the file: all of them while there is none.
    buf: Vec<u8>,
    /// The memfd, once the bytes outgrew memory, and how many of them it holds.
    file: Option<(File, usize)>,
    /// No memfd could be made for this frame: all its bytes stay in `buf`.
    in_memory: bool,
}

/// A finished frame, ready to be sent (and sent again).
#[derive(Debug)]
pub(crate) enum Encoded {
    Bytes(Vec<u8>),
    /// A sealed memfd that holds the frame's bytes.
    File(OwnedFd, usize),
}

impl Outgoing {
    /// How many bytes have been written.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.in_file() + self.buf.len()
    }

    /// How many of the bytes are in the file.
    #[inline]
    fn in_file(&self) -> usize {
        self.file.as_ref().map_or(0, |(_, len)| *len)
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let limit = match (&self.file, self.in_memory) {
            (Some(_), _) => WRITE_CHUNK,
            (None, false) => FILE_FRAME,
            (None, true) => usize::MAX,
        };
        if self.buf.len() + bytes.len() < limit {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.write_to_file(bytes)
    }

    /// Appends `bytes` to the file, which is made now if there is none. If none can be made,
    /// the frame stays in memory: the socket carries a frame of any size.
    #[cold]
    fn write_to_file(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            match memfd() {
                Ok(file) => self.file = Some((file, 0)),
                Err(_) => {
                    self.in_memory = true;
                    self.buf.extend_from_slice(bytes);
                    return Ok(());
                }
            }
        }
        if bytes.len() < WRITE_CHUNK {
            self.buf.extend_from_slice(bytes);
            return self.flush();
        }
        self.flush()?;
        self.append(bytes)
    }

    /// Moves the bytes gathered in memory to the file.
    fn flush(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        self.append(&buf)?;
        // Back to a small buffer for the writes to come (a large one is not needed any more).
        self.buf = buf;
        self.buf.clear();
        self.buf.shrink_to(WRITE_CHUNK);
        Ok(())
    }

    /// Writes `bytes` at the end of the file; there must be one.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (file, len) = self.file.as_mut().expect("a file to append to");
        // `pwrite`, not a map: the kernel fills the file's new pages from `bytes` without
        // zeroing them first.
        file.write_all_at(bytes, *len as u64)?;
        *len += bytes.len();
        Ok(())
    }

    /// Overwrites the bytes at `at`, which were written before.
    #[inline]
    pub(crate) fn patch(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        let in_file = self.in_file();
        if at >= in_file {
            self.buf[at - in_file..at - in_file + bytes.len()].copy_from_slice(bytes);
            return Ok(());
        }
        self.patch_file(at, bytes)
    }

    /// Overwrites bytes of which some are in the file.
    #[cold]
    fn patch_file(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        let in_file = self.in_file();
        let (to_file, to_buf) = bytes.split_at((in_file - at).min(bytes.len()));
        if let Some((file, _)) = &self.file {
            file.write_all_at(to_file, at as u64)?;
        }
        self.buf[..to_buf.len()].copy_from_slice(to_buf);
        Ok(())
    }

    /// Drops the bytes from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) -> io::Result<()> {
        let in_file = self.in_file();
        if len >= in_file {
            self.buf.truncate(len - in_file);
            return Ok(());
        }
        self.buf.clear();
        let (file, in_file) = self.file.as_mut().expect("bytes in a file");
        file.set_len(len as u64)?;
        *in_file = len;
        Ok(())
    }

    /// The finished frame: its bytes, or the sealed file that holds them.
    pub(crate) fn finish(mut self) -> io::Result<Encoded> {
        if self.file.is_none() {
            return Ok(Encoded::Bytes(self.buf));
        }
        self.flush()?;
        let (file, len) = self.file.take().expect("checked above");
        Ok(Encoded::File(sealed(file)?.into(), len))
    }
}

/// `file` sealed, or a sealed copy of it where the kernel refuses to seal it. It refuses
/// (`EBUSY`) while a page of the file is still referenced from elsewhere after waiting about
/// 150 ms itself: this process never maps the file, but a benchmark run on a loaded machine
/// once got the refusal all the same. A fresh copy's pages are referenced by nothing.
fn sealed(file: File) -> io::Result<File> {
    match memfd::seal_all(file.as_fd()) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
            let mut copy = memfd()?;
            // From the start: `pwrite` left the file's offset at 0.
            io::copy(&mut &file, &mut copy)?;
            memfd::seal_all(copy.as_fd())?;
            Ok(copy)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
impl Outgoing {
    /// The bytes of a frame that stayed in memory.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self.finish().unwrap() {
            Encoded::Bytes(bytes) => bytes,
            Encoded::File(..) => panic!("a small test frame went to a file"),
        }
    }
}

impl Encoded {
    /// The frame of `parts`, one after another: in a sealed memfd if that is large.
    pub(crate) fn of_parts(parts: &[&[u8]]) -> io::Result<Encoded> {
        let mut out = Outgoing::default();
        for part in parts {
            out.write(part)?;
        }
        out.finish()
    }
}

/// A new memfd that can be sealed.
fn memfd() -> io::Result<File> {
    memfd::create(c"mp-frame").map(File::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// The bytes of a finished frame, and whether they were in a file.
    fn contents(out: Outgoing) -> (Vec<u8>, bool) {
        match out.finish().unwrap() {
            Encoded::Bytes(bytes) => (bytes, false),
            Encoded::File(fd, len) => {
                let mut bytes = vec![0; len];
                File::from(fd).read_exact_at(&mut bytes, 0).unwrap();
                (bytes, true)
            }
        }
    }

    // A benchmark run got EBUSY when sealing a frame's file; a writable shared mapping of the
    // file makes the kernel refuse the same way. The frame then goes as a sealed copy.
    #[test]
    fn a_file_the_kernel_will_not_seal_goes_as_a_sealed_copy() {
        let data: Vec<u8> = (0..FILE_FRAME + 10).map(|i| i as u8).collect();
        let mut out = Outgoing::default();
        out.write(&data).unwrap();
        let (file, _) = out.file.as_ref().expect("a large frame is in a file");
        let mapping = crate::sys::mmap::Mapping::shared(file.as_fd(), 4096).unwrap();
        let refused = memfd::seal_all(file.as_fd()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy, "{refused}");
        match out.finish().unwrap() {
            Encoded::File(fd, len) => {
                assert!(memfd::is_sealed_all(fd.as_fd()).unwrap());
                let mut bytes = vec![0; len];
                File::from(fd).read_exact_at(&mut bytes, 0).unwrap();
                assert_eq!(bytes, data);
            }
            Encoded::Bytes(_) => panic!("a large frame left its file"),
        }
        drop(mapping);
    }

    #[test]
    fn a_small_frame_stays_in_memory() {
        let mut out = Outgoing::default();
        out.write(b"abcd").unwrap();
        out.patch(1, b"X").unwrap();
        out.truncate(3).unwrap();
        assert_eq!(contents(out), (b"aXc".to_vec(), false));
    }

    #[test]
    fn a_large_frame_moves_to_a_file_and_can_still_be_patched_and_cut() {
        let mut out = Outgoing::default();
        let mut expected = Vec::new();
        // Small writes, then one large one, then small ones again.
        for i in 0..FILE_FRAME / 2 {
            out.write(&[i as u8]).unwrap();
            expected.push(i as u8);
        }
        let large: Vec<u8> = (0..FILE_FRAME as u32).map(|i| (i >> 8) as u8).collect();
        out.write(&large).unwrap();
        expected.extend_from_slice(&large);
        for i in 0..WRITE_CHUNK * 2 + 5 {
            out.write(&[i as u8, 7]).unwrap();
            expected.extend_from_slice(&[i as u8, 7]);
        }
        assert_eq!(out.len(), expected.len());
        // A patch in the file, one in memory, and one across the two.
        let (tail, across) = (out.len() - 3, out.in_file() - 2);
        for at in [10, tail, across] {
            out.patch(at, b"PQR").unwrap();
            expected[at..at + 3].copy_from_slice(b"PQR");
        }
        // Cutting into the file drops what memory held after it.
        let cut = out.in_file() - 100;
        out.truncate(cut).unwrap();
        expected.truncate(cut);
        out.write(b"end").unwrap();
        expected.extend_from_slice(b"end");
        let (bytes, in_file) = contents(out);
        assert!(in_file);
        assert!(bytes == expected, "the file's bytes differ");
    }

    #[test]
    fn a_finished_file_is_sealed() {
        let (fd, len) = match Encoded::of_parts(&[&vec![1u8; FILE_FRAME]]).unwrap() {
            Encoded::File(fd, len) => (fd, len),
            Encoded::Bytes(_) => panic!("a frame of FILE_FRAME bytes stays in memory"),
        };
        assert_eq!(len, FILE_FRAME);
        assert!(memfd::is_sealed_all(fd.as_fd()).unwrap());
        assert!(File::from(fd).write_all_at(b"x", 0).is_err());
    }
}
