//! Descriptors: sending and receiving them beside bytes (SCM_RIGHTS), waiting for one to be
//! readable or writable, closing the ones a new process must not hold.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// The most descriptors one message may carry (the kernel's SCM_MAX_FD).
pub(crate) const FDS_PER_MESSAGE: usize = 253;

/// Room for the control message of one `sendmsg`/`recvmsg` with the most descriptors.
const CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE));

fn send_flags(dont_wait: bool) -> SendFlags {
    // A peer that is gone gives EPIPE, never SIGPIPE.
    if dont_wait {
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT
    } else {
        SendFlags::NOSIGNAL
    }
}

/// One `send` of `bytes` on the socket `socket`; returns the bytes sent. With `dont_wait`, a
/// full socket is `WouldBlock` instead of a wait.
pub(crate) fn send(socket: BorrowedFd<'_>, bytes: &[u8], dont_wait: bool) -> io::Result<usize> {
    Ok(rustix::net::send(socket, bytes, send_flags(dont_wait))?)
}

/// A connected pair of Unix sequenced-packet sockets, close-on-exec: the end to read, and the
/// end to send on (which may be shared by many processes). Each `send` arrives whole, as one
/// `recv`, however many processes share the sending end: messages from several senders never
/// interleave. The kernel tells the reading end which process sent each packet (SO_PASSCRED),
/// and a send waits at most `send_timeout` for room. Not datagram sockets: a datagram socket
/// sends to any address a `sendto` names, even once connected, which would let a sandboxed
/// worker reach every datagram socket with a path (`/dev/log`); a packet socket sends only to
/// its peer, whatever address is named.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) fn packet_pair(send_timeout: Duration) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let (incoming, outgoing) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_passcred(&incoming, true)?;
    sockopt::set_socket_timeout(&outgoing, sockopt::Timeout::Send, Some(send_timeout))?;
    Ok((incoming, outgoing))
}

/// A packet read by [`recv_packet`].
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) struct Packet {
    /// The bytes of it in the buffer.
    pub len: usize,
    /// Whether it was longer than the buffer, and so cut.
    pub cut: bool,
    /// The process that sent it, as the kernel says (see [`packet_pair`]).
    pub sender: Option<u32>,
}

/// One packet from `socket` into `buf` without waiting, or `None` when none is queued. Fails
/// with `UnexpectedEof` once every sending end is closed or shut down and all was read.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) fn recv_packet(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Packet>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let received = match rustix::net::recvmsg(
        socket,
        &mut iov,
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    ) {
        Ok(received) => received,
        Err(rustix::io::Errno::AGAIN) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let sender = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmCredentials(credentials) => {
            Some(credentials.pid.as_raw_nonzero().get().unsigned_abs())
        }
        _ => None,
    });
    // An empty packet and the end read alike; only the end leaves the socket hung up.
    if received.bytes == 0 && is_hung_up(socket) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(Packet {
        len: received.bytes.min(iov[0].len()),
        cut: received.flags.contains(ReturnFlags::TRUNC),
        sender,
    }))
}

/// Whether the other end of `socket` is gone: closed, or shut down for writing.
#[cfg(any(feature = "log", feature = "tracing"))]
fn is_hung_up(socket: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::new(&socket, PollFlags::IN | PollFlags::RDHUP)];
    let polled = rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default()));
    polled.is_ok_and(|_| (fds[0].revents()).intersects(PollFlags::HUP | PollFlags::RDHUP))
}

/// One `sendmsg` of `slices` with at most [`FDS_PER_MESSAGE`] descriptors `fds` beside them
/// (SCM_RIGHTS); returns the bytes sent.
pub(crate) fn send_with_fds(
    socket: BorrowedFd<'_>,
    slices: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    dont_wait: bool,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {FDS_PER_MESSAGE} descriptors go in one message"),
        ));
    }
    Ok(rustix::net::sendmsg(
        socket,
        slices,
        &mut control,
        send_flags(dont_wait),
    )?)
}

/// One `recvmsg` appending to `buf`, into its spare capacity (at most `most` bytes of it), with
/// no zeroing first; returns the bytes received. Descriptors that came along are appended to
/// `fds`, close-on-exec.
pub(crate) fn recv_appending(
    socket: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    most: usize,
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let most = most.min(spare.len());
    let received = recv_with_fds(socket, &mut spare[..most], fds)?;
    // SAFETY: `recv_with_fds` wrote the first `received` bytes of the spare capacity, so they
    // are initialized, and `received <= most <= spare.len()`.
    unsafe { buf.set_len(buf.len() + received) };
    Ok(received)
}

/// One `recvmsg` into `buf`, which may be uninitialized (the kernel writes it, and only what it
/// wrote is counted); descriptors that came along are appended to `fds`, close-on-exec.
///
/// Here with `libc` rather than rustix, whose `recvmsg` takes initialized buffers: a receive
/// buffer of a large frame would then be zeroed before every read.
fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    // `u64` elements align it for `cmsghdr`; left uninitialized, since the kernel writes it.
    let mut control = MaybeUninit::<[u64; CONTROL_SPACE.div_ceil(8)]>::uninit();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty message (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points at `buf`) and at `control`, all writable for
    // the lengths given and alive across the call; the kernel writes nothing else.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `control` with well-formed headers up to `msg_controllen`, and
    // the CMSG macros walk them without leaving it. Each SCM_RIGHTS descriptor is a new one
    // installed in this process for us, owned by nothing else yet.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / size_of::<libc::c_int>() {
                    fds.push_back(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors sent with a message were lost: this process reached its limit of open \
             files (raise it with `ulimit -n`)",
        ));
    }
    Ok(received as usize)
}

/// What to wait for on a descriptor.
#[derive(Clone, Copy)]
pub(crate) enum Interest {
    Read,
    Write,
    ReadWrite,
}

/// What a descriptor is ready for.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// An error or a hang-up: the next read or write says which.
    pub broken: bool,
}

/// Waits until one of `fds` is ready for what it is asked, or `timeout` passes (`None`: no
/// limit; zero: look once). Interrupted by a signal, it returns `Interrupted`.
pub(crate) fn poll<const N: usize>(
    fds: [(BorrowedFd<'_>, Interest); N],
    timeout: Option<Duration>,
) -> io::Result<[Ready; N]> {
    let mut polled = fds.map(|(fd, interest)| {
        let flags = match interest {
            Interest::Read => PollFlags::IN,
            Interest::Write => PollFlags::OUT,
            Interest::ReadWrite => PollFlags::IN | PollFlags::OUT,
        };
        PollFd::from_borrowed_fd(fd, flags)
    });
    // A timeout too long for a timespec is no limit.
    let timeout = timeout.and_then(|timeout| Timespec::try_from(timeout).ok());
    rustix::event::poll(&mut polled, timeout.as_ref())?;
    Ok(polled.map(|fd| {
        let revents = fd.revents();
        Ready {
            readable: revents.contains(PollFlags::IN),
            writable: revents.contains(PollFlags::OUT),
            broken: revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL),
        }
    }))
}

/// Descriptors waited on together until one is readable (epoll), each known by a key.
/// Closing a descriptor takes it out.
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) struct ReadableSet {
    epoll: OwnedFd,
}

#[cfg(any(feature = "log", feature = "tracing"))]
impl ReadableSet {
    pub(crate) fn new() -> io::Result<ReadableSet> {
        let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?;
        Ok(ReadableSet { epoll })
    }

    /// Adds `fd`, known from now on by `key`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        use rustix::event::epoll::{EventData, EventFlags};
        Ok(rustix::event::epoll::add(
            &self.epoll,
            fd,
            EventData::new_u64(key),
            EventFlags::IN,
        )?)
    }

    /// Leaves `fd` out from now on.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(rustix::event::epoll::delete(&self.epoll, fd)?)
    }

    /// Waits until at least one descriptor is readable (or broken), and puts their keys in
    /// `keys`. Interrupted by a signal, it returns `Interrupted`.
    pub(crate) fn wait(&self, keys: &mut Vec<u64>) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        rustix::event::epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            None,
        )?;
        keys.clear();
        keys.extend(events.iter().map(|event| event.data.u64()));
        Ok(())
    }
}

/// Opens /dev/null on each of descriptors 0, 1 and 2 that is closed, as std does before
/// `main`: otherwise the next descriptor this process opens or receives lands there, where
/// `println!` writes. Without /dev/null, a stand-in ([`put_null_on`]).
pub(crate) fn open_missing_stdio() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether `fd` is open (EBADF if not); it touches no memory
        // and changes nothing.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // Nothing better to do if even the stand-in cannot be opened (no descriptor free):
        // std's runtime aborts; a worker goes on.
        let _ = put_null_on(fd);
    }
}

/// Makes standard input /dev/null (or its stand-in): a worker's socket, inherited there, has
/// been moved off it.
pub(crate) fn stdin_to_null() -> io::Result<()> {
    put_null_on(0)
}

/// Puts /dev/null on the standard descriptor `fd`, open and inherited by the programs this
/// process runs. Where there is no /dev/null (an empty /dev in a container), a stand-in keeps
/// `fd` open, so that nothing else lands there: for standard input, a pipe whose writing end is
/// closed (a read sees end-of-file, as from /dev/null); for output, `/` opened as a path only,
/// where a write fails with EBADF, which std's `print!` counts as written, as it does for a
/// closed descriptor.
fn put_null_on(fd: RawFd) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    // Not close-on-exec: a standard descriptor is inherited.
    let null = match rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::NOCTTY, Mode::empty()) {
        Ok(null) => null,
        Err(_) if fd == 0 => rustix::pipe::pipe()?.0,
        Err(_) => rustix::fs::open("/", OFlags::PATH, Mode::empty())?,
    };
    if null.as_raw_fd() == fd {
        // `fd` was closed, and the descriptors below it open: it stays open for the life of
        // the process, as the standard descriptors do.
        std::mem::forget(null);
        return Ok(());
    }
    // SAFETY: both descriptors are valid across the call; dup2 replaces `fd`, a standard
    // descriptor to which no object of this process holds an owning handle (std's standard
    // streams only borrow them).
    if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor above standard error but `keep`, so a child holds only what mp
/// gives it, not what its parent happened to leave inheritable (a build tool's jobserver pipe,
/// a file opened without close-on-exec).
///
/// Only for the early entry of a re-executed child: there no object of the process owns a
/// descriptor but `keep` and the standard ones, so nothing is closed under its owner.
pub(crate) fn close_inherited_descriptors(keep: BorrowedFd<'_>) {
    let keep = keep.as_raw_fd();
    let close_range = |first: RawFd, last: RawFd| {
        if first > last {
            return true;
        }
        // SAFETY: as documented above, no object owns a descriptor in the range: `keep` is
        // outside it.
        unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0) == 0 }
    };
    if close_range(3, keep - 1) && close_range(keep + 1, RawFd::MAX) {
        return;
    }
    // Kernels before 5.9 have no close_range: close what /proc lists instead.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: as above; the directory's own descriptor is closed already, so this may
        // fail with EBADF, which is harmless.
        unsafe { libc::close(fd) };
    }
}

/// The process id and user id of the process that made the other end of the Unix socket
/// `socket` (SO_PEERCRED: for a socket pair, the process that called `socketpair`). The pid is
/// 0 when that process is outside this process's pid namespace.
///
/// Here with `libc`: rustix reads the answer into a type whose pid may not be 0.
pub(crate) fn socket_peer(socket: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut peer = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `peer` is a writable ucred and `len` its size, both alive across the call; the
    // kernel writes at most `len` bytes of plain integers.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut peer).cast(),
            &mut len,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((peer.pid as u32, peer.uid))
}
