//! The MPI calls of the `mpi` feature, behind safe functions: `cluster/` above speaks in ranks,
//! tags and byte buffers. Every communication is on `MPI_COMM_WORLD`, in bytes (`MPI_UINT8_T`).

use std::ffi::{CStr, c_int};
use std::fmt;

use mpi::ffi;

/// A failed MPI call: which one, and what the library said.
#[derive(Debug)]
pub(crate) struct MpiError {
    call: &'static str,
    why: String,
}

impl fmt::Display for MpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.call, self.why)
    }
}

/// Turns an MPI return code into an error that names the call.
fn check(code: c_int, call: &'static str) -> Result<(), MpiError> {
    if code == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut text = [0 as std::ffi::c_char; 1024];
    let mut len: c_int = 0;
    // SAFETY: `text` holds 1024 chars, at least MPI_MAX_ERROR_STRING in MPICH and Open MPI, so
    // MPI's NUL-terminated string fits; `len` is a valid out-pointer.
    let described = unsafe { ffi::MPI_Error_string(code, text.as_mut_ptr(), &mut len) };
    let why = if described == ffi::MPI_SUCCESS as c_int {
        // SAFETY: MPI_Error_string succeeded, so `text` holds a NUL-terminated string.
        unsafe { CStr::from_ptr(text.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("error code {code}")
    };
    Err(MpiError { call, why })
}

/// `MPI_Init_thread` asking for `MPI_THREAD_MULTIPLE`, with errors returned as codes rather
/// than ending the job. Returns this rank, the job's size, and whether the library gave
/// `MPI_THREAD_MULTIPLE`. Called once, on the main thread, before any other MPI call.
pub(crate) fn init() -> Result<(i32, i32, bool), MpiError> {
    let mut provided: c_int = 0;
    // SAFETY: null argc/argv are allowed; `provided` is a valid out-pointer. The caller calls
    // this once, before any other MPI function.
    let code = unsafe {
        ffi::MPI_Init_thread(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            ffi::RSMPI_THREAD_MULTIPLE,
            &mut provided,
        )
    };
    check(code, "MPI_Init_thread")?;
    // SAFETY: reading a constant that the MPI library defines.
    let multiple = provided >= unsafe { ffi::RSMPI_THREAD_MULTIPLE };
    let (mut rank, mut size): (c_int, c_int) = (0, 0);
    // SAFETY: MPI is initialized; the out-pointers are valid for each call.
    unsafe {
        check(
            ffi::MPI_Comm_set_errhandler(ffi::RSMPI_COMM_WORLD, ffi::RSMPI_ERRORS_RETURN),
            "MPI_Comm_set_errhandler",
        )?;
        check(
            ffi::MPI_Comm_rank(ffi::RSMPI_COMM_WORLD, &mut rank),
            "MPI_Comm_rank",
        )?;
        check(
            ffi::MPI_Comm_size(ffi::RSMPI_COMM_WORLD, &mut size),
            "MPI_Comm_size",
        )?;
    }
    Ok((rank, size, multiple))
}

/// Sends `bytes` to `dest` with `tag`; returns once the buffer may be reused. `synchronous`
/// returns only once the receiver has matched the message (`MPI_Ssend`).
pub(crate) fn send(dest: i32, tag: i32, bytes: &[u8], synchronous: bool) -> Result<(), MpiError> {
    let count = c_int::try_from(bytes.len()).map_err(|_| MpiError {
        call: "MPI_Send",
        why: format!("{} bytes is more than one message can carry", bytes.len()),
    })?;
    // SAFETY: `bytes` is valid for `count` bytes for the whole call, and MPI only reads it.
    let code = unsafe {
        let send = if synchronous {
            ffi::MPI_Ssend
        } else {
            ffi::MPI_Send
        };
        send(
            bytes.as_ptr().cast(),
            count,
            ffi::RSMPI_UINT8_T,
            dest,
            tag,
            ffi::RSMPI_COMM_WORLD,
        )
    };
    check(code, if synchronous { "MPI_Ssend" } else { "MPI_Send" })
}

/// A message that has arrived and is matched to this thread (no other receive can take it):
/// receive it with [`Matched::receive_onto`].
pub(crate) struct Matched {
    message: ffi::MPI_Message,
    pub(crate) source: i32,
    pub(crate) tag: i32,
    pub(crate) len: usize,
}

/// The next message from `source` (any rank if `None`) with `tag` (any tag if `None`), if one
/// has arrived (`MPI_Improbe`: it does not wait).
pub(crate) fn try_match(
    source: Option<i32>,
    tag: Option<i32>,
) -> Result<Option<Matched>, MpiError> {
    // SAFETY: reading constants that the MPI library defines.
    let (any_source, any_tag) = unsafe { (ffi::RSMPI_ANY_SOURCE, ffi::RSMPI_ANY_TAG) };
    let mut flag: c_int = 0;
    // SAFETY: MPI_Message and MPI_Status are plain C integers, handles or structs of them, for
    // which all-zero is a valid value; MPI_Improbe overwrites both when it sets `flag`, and they
    // are read only then.
    let (mut message, mut status): (ffi::MPI_Message, ffi::MPI_Status) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: the out-pointers are valid for the call.
    let code = unsafe {
        ffi::MPI_Improbe(
            source.unwrap_or(any_source),
            tag.unwrap_or(any_tag),
            ffi::RSMPI_COMM_WORLD,
            &mut flag,
            &mut message,
            &mut status,
        )
    };
    check(code, "MPI_Improbe")?;
    if flag == 0 {
        return Ok(None);
    }
    let mut count: c_int = 0;
    // SAFETY: `status` describes the message MPI_Improbe matched; `count` is a valid
    // out-pointer.
    let code = unsafe { ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count) };
    check(code, "MPI_Get_count")?;
    let len = usize::try_from(count).map_err(|_| MpiError {
        call: "MPI_Get_count",
        why: "a message of unknown size".into(),
    })?;
    Ok(Some(Matched {
        message,
        source: status.MPI_SOURCE,
        tag: status.MPI_TAG,
        len,
    }))
}

impl Matched {
    /// Receives the message onto the end of `buf`, growing it if needed.
    pub(crate) fn receive_onto(mut self, buf: &mut Vec<u8>) -> Result<(), MpiError> {
        buf.reserve(self.len);
        // SAFETY: reading a constant that the MPI library defines.
        let ignore = unsafe { ffi::RSMPI_STATUS_IGNORE };
        // SAFETY: the spare capacity holds at least `len` writable bytes (reserved above), and
        // `message` is a matched message of exactly `len` bytes, received once (this consumes
        // `self`).
        let code = unsafe {
            ffi::MPI_Mrecv(
                buf.spare_capacity_mut().as_mut_ptr().cast(),
                self.len as c_int,
                ffi::RSMPI_UINT8_T,
                &mut self.message,
                ignore,
            )
        };
        check(code, "MPI_Mrecv")?;
        // SAFETY: MPI_Mrecv succeeded, so it wrote exactly `len` bytes into the spare capacity.
        unsafe { buf.set_len(buf.len() + self.len) };
        Ok(())
    }
}

/// Ends the whole job with `code` (`MPI_Abort`); if MPI was not initialized, ends this
/// process.
pub(crate) fn abort(code: i32) -> ! {
    // SAFETY: MPI_Abort may be called from any thread at any time after MPI_Init; it does not
    // return when MPI is initialized.
    unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code) };
    std::process::exit(code)
}

/// Meets every other rank, then finalizes MPI. The caller guarantees that no other thread of
/// this process is inside MPI or will call it again, and every rank calls this once.
pub(crate) fn barrier_and_finalize() {
    // SAFETY: as the caller guarantees: no concurrent MPI call in this process, and no MPI call
    // after MPI_Finalize.
    unsafe {
        ffi::MPI_Barrier(ffi::RSMPI_COMM_WORLD);
        ffi::MPI_Finalize();
    }
}
