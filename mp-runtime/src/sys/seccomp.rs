//! A seccomp filter (Linux 3.5 and later): the system calls that a sandboxed worker may not
//! make fail with `EPERM`, for it and every child it forks.
//!
//! The filter is a short classic-BPF program written here: it checks the architecture (a
//! 32-bit call through `int 0x80`, or an x32 call, has other numbers and is refused whole),
//! then compares the call's number with each refused one; a few calls are looked at further,
//! in their arguments (whose process they change, which `ioctl` they ask, which socket type).

use std::io;

/// The architecture whose system-call numbers `libc::SYS_*` are, as seccomp names it
/// (`AUDIT_ARCH_*` of `uapi/linux/audit.h`); `None` where no filter is written for it.
#[cfg(target_arch = "x86_64")]
const ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: Option<u32> = None;

/// Calls refused always: starting programs; reading or changing another process (ptrace and
/// what it guards); io_uring, which makes sockets and opens files without the calls this
/// filter sees; the kernel's key rings, which hold the user's secrets; and opening files by
/// handle, around the paths that Landlock rules.
const REFUSED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    // Changing a file's mode, owner, times or extended attributes by path: Landlock (up to
    // its ABI 7) does not rule these, so they would reach files outside the paths given. The
    // forms on a descriptor stay: they need one opened for real, which Landlock rules.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    libc::SYS_fchmodat,
    SYS_FCHMODAT2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    libc::SYS_fchownat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utime,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utimes,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_futimesat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    SYS_SETXATTRAT,
    SYS_REMOVEXATTRAT,
    // System V IPC: its segments, semaphores and queues are named by number, machine-wide,
    // outside the file system Landlock rules.
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_semctl,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    // Watching the file system: fanotify reports on files outside the paths given.
    libc::SYS_fanotify_init,
];

/// `fchmodat2` (Linux 6.6), `setxattrat` and `removexattrat` (Linux 6.13): the same numbers on
/// x86_64 and aarch64 (the common table); `libc` does not name them on every architecture.
const SYS_FCHMODAT2: libc::c_long = 452;
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// Calls allowed only with these argument words (all of them): the ones that change a
/// process's limits, priority or scheduling allowed on the caller itself (pid 0) only, so a
/// worker cannot slow down or starve its parent; `utimensat` only without a path (as
/// `futimens` calls it, on a descriptor). A pid is an `int` to the kernel, so its low word
/// alone is compared.
fn allowed_only_with() -> Vec<(libc::c_long, Vec<(u32, u32)>)> {
    const PRIO_PROCESS: u32 = 0;
    const IOPRIO_WHO_PROCESS: u32 = 1;
    vec![
        (libc::SYS_prlimit64, vec![(arg_low(0), 0)]),
        (libc::SYS_sched_setscheduler, vec![(arg_low(0), 0)]),
        (libc::SYS_sched_setparam, vec![(arg_low(0), 0)]),
        (libc::SYS_sched_setattr, vec![(arg_low(0), 0)]),
        (libc::SYS_sched_setaffinity, vec![(arg_low(0), 0)]),
        (
            libc::SYS_setpriority,
            vec![(arg_low(0), PRIO_PROCESS), (arg_low(1), 0)],
        ),
        (
            libc::SYS_ioprio_set,
            vec![(arg_low(0), IOPRIO_WHO_PROCESS), (arg_low(1), 0)],
        ),
        (libc::SYS_utimensat, vec![(arg_low(1), 0), (arg_high(1), 0)]),
    ]
}

/// `ioctl` requests refused: pushing input into a terminal (`TIOCSTI`; `TIOCLINUX` can paste
/// the console's selection), which the shell that started the parent reads as typed.
const REFUSED_IOCTLS: &[u32] = &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32];

/// Where `struct seccomp_data` keeps the call's number and its architecture.
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;

/// Where `struct seccomp_data` keeps the low 32 bits of argument `n` (of six, 64 bits each).
const fn arg_low(n: u32) -> u32 {
    if cfg!(target_endian = "little") {
        16 + 8 * n
    } else {
        16 + 8 * n + 4
    }
}

/// Where `struct seccomp_data` keeps the high 32 bits of argument `n`.
const fn arg_high(n: u32) -> u32 {
    if cfg!(target_endian = "little") {
        16 + 8 * n + 4
    } else {
        16 + 8 * n
    }
}

/// x86_64's x32 calls: the same numbers with this bit set.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// Whether this kernel can filter this process's system calls with an error number as the
/// answer (`SECCOMP_GET_ACTION_AVAIL`, Linux 4.14); the error says why not.
pub(crate) fn probe() -> io::Result<()> {
    if ARCH.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "mp's system-call filter is written for x86_64 and aarch64, not {}",
                std::env::consts::ARCH
            ),
        ));
    }
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: GET_ACTION_AVAIL reads one u32 through the pointer, which is to a live local.
    let got = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the filter on every thread of this process: the calls of [`REFUSED`] fail, those
/// of [`allowed_only_with`] with other arguments, and `ioctl` with [`REFUSED_IOCTLS`]; unless
/// `network`, so do `socket` and `connect` (a Unix socket named by a path is not Landlock's
/// before its ABI 8), `bind` and `listen` (a stream pair's end bound to an abstract name takes
/// that name from the programs that expect it), and `socketpair` of any type but a stream (a
/// datagram socket can send to any named socket). Needs no-new-privileges, unless the caller
/// has CAP_SYS_ADMIN.
pub(crate) fn restrict(network: bool) -> io::Result<()> {
    let Some(arch) = ARCH else {
        return probe();
    };
    let mut program = assemble(&filter(arch, network));
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `program`, alive across the call, of the length given; the
    // kernel copies it.
    let got = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    match got {
        0 => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        thread => Err(io::Error::other(format!(
            "thread {thread} of this process could not take the system-call filter"
        ))),
    }
}

/// Where a comparison goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    Next,
    /// Over this many steps after the next one.
    Over(usize),
    Allow,
    Refuse,
}

/// One instruction, with its jumps by name; [`assemble`] makes them offsets.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Loads the 32-bit word at this offset of `seccomp_data`.
    Load(u32),
    /// Keeps these bits of the loaded word.
    And(u32),
    /// Goes to `yes` when the word equals `value`, else to `no`.
    IfEqual { value: u32, yes: To, no: To },
    /// Goes to `yes` when the word is at least `value`, else to `no`.
    #[cfg_attr(
        not(target_arch = "x86_64"),
        allow(dead_code, reason = "x32 is x86_64's")
    )]
    IfAtLeast { value: u32, yes: To, no: To },
}

/// The filter's steps for architecture `arch`.
fn filter(arch: u32, network: bool) -> Vec<Step> {
    let refuse = |nr: libc::c_long| Step::IfEqual {
        value: nr as u32,
        yes: To::Refuse,
        no: To::Next,
    };
    let mut steps = vec![
        Step::Load(ARCH_AT),
        Step::IfEqual {
            value: arch,
            yes: To::Next,
            no: To::Refuse,
        },
        Step::Load(NR_AT),
    ];
    #[cfg(target_arch = "x86_64")]
    steps.push(Step::IfAtLeast {
        value: X32_BIT,
        yes: To::Refuse,
        no: To::Next,
    });
    steps.extend(REFUSED.iter().map(|&nr| refuse(nr)));
    if !network {
        steps.extend([
            refuse(libc::SYS_socket),
            refuse(libc::SYS_connect),
            refuse(libc::SYS_bind),
            refuse(libc::SYS_listen),
        ]);
    }
    // Each call looked at further is a block that starts on the call's number (loaded again,
    // as the block before may have loaded an argument) and ends allowing or refusing it.
    for (nr, words) in allowed_only_with() {
        steps.push(Step::Load(NR_AT));
        steps.push(Step::IfEqual {
            value: nr as u32,
            yes: To::Next,
            no: To::Over(2 * words.len()),
        });
        for (at, &(offset, value)) in words.iter().enumerate() {
            steps.push(Step::Load(offset));
            steps.push(Step::IfEqual {
                value,
                yes: if at + 1 == words.len() {
                    To::Allow
                } else {
                    To::Next
                },
                no: To::Refuse,
            });
        }
    }
    steps.push(Step::Load(NR_AT));
    steps.push(Step::IfEqual {
        value: libc::SYS_ioctl as u32,
        yes: To::Next,
        no: To::Over(1 + REFUSED_IOCTLS.len()),
    });
    // The kernel takes the request as an `unsigned int`: its low word alone.
    steps.push(Step::Load(arg_low(1)));
    steps.extend(REFUSED_IOCTLS.iter().map(|&request| Step::IfEqual {
        value: request,
        yes: To::Refuse,
        no: To::Next,
    }));
    if !network {
        steps.extend([
            Step::Load(NR_AT),
            Step::IfEqual {
                value: libc::SYS_socketpair as u32,
                yes: To::Next,
                no: To::Allow,
            },
            Step::Load(arg_low(1)),
            // The type, without SOCK_NONBLOCK and SOCK_CLOEXEC.
            Step::And(0xf),
            Step::IfEqual {
                value: libc::SOCK_STREAM as u32,
                yes: To::Allow,
                no: To::Refuse,
            },
        ]);
    }
    steps
}

/// The BPF program of `steps`, followed by the two answers their jumps go to.
fn assemble(steps: &[Step]) -> Vec<libc::sock_filter> {
    let allow_at = steps.len();
    let refuse_at = allow_at + 1;
    let offset = |from: usize, to: To| -> u8 {
        let target = match to {
            To::Next => from + 1,
            To::Over(steps) => from + 1 + steps,
            To::Allow => allow_at,
            To::Refuse => refuse_at,
        };
        u8::try_from(target - from - 1).expect("a filter short enough for 8-bit jumps")
    };
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut program: Vec<libc::sock_filter> = steps
        .iter()
        .enumerate()
        .map(|(at, step)| match *step {
            Step::Load(offset) => insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset),
            Step::And(mask) => insn(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, mask),
            Step::IfEqual { value, yes, no } => insn(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                offset(at, yes),
                offset(at, no),
                value,
            ),
            Step::IfAtLeast { value, yes, no } => insn(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                offset(at, yes),
                offset(at, no),
                value,
            ),
        })
        .collect();
    program.push(insn(libc::BPF_RET | libc::BPF_K, 0, 0, ALLOW));
    program.push(insn(libc::BPF_RET | libc::BPF_K, 0, 0, REFUSE));
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` on a call as a kernel would: its answer.
    fn run(program: &[libc::sock_filter], arch: u32, nr: i64, arg1: u64) -> u32 {
        run_with(program, arch, nr, [0, arg1, 0, 0, 0, 0])
    }

    /// [`run`] with all six arguments.
    fn run_with(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let word = |at: u32| -> u32 {
            match at {
                NR_AT => nr as u32,
                ARCH_AT => arch,
                at if (16..64).contains(&at) => {
                    let n = (at - 16) / 8;
                    let arg = args[n as usize];
                    if at == arg_low(n) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                other => panic!("the filter reads offset {other}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = program[pc];
            let code = u32::from(insn.code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = word(insn.k);
            } else if code == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K {
                acc &= insn.k;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return insn.k;
            } else {
                let taken = if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                    acc == insn.k
                } else if code == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K {
                    acc >= insn.k
                } else {
                    panic!("unknown instruction {code:#x}")
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
        }
    }

    // The program is checked by running it here on the calls it is about: a wrong offset or
    // jump would let one through, or refuse what a worker needs.
    #[test]
    fn the_filter_refuses_what_it_lists_and_allows_the_rest() {
        let arch = 0xC000_003E;
        for network in [false, true] {
            let program = assemble(&filter(arch, network));
            for &nr in REFUSED {
                assert_eq!(run(&program, arch, nr, 0), REFUSE, "{nr}");
            }
            for nr in [
                libc::SYS_read,
                libc::SYS_write,
                libc::SYS_mmap,
                libc::SYS_futex,
            ] {
                assert_eq!(run(&program, arch, nr, 0), ALLOW, "{nr}");
            }
            // Any call of another architecture.
            assert_eq!(run(&program, 0x4000_0003, libc::SYS_read, 0), REFUSE);
            let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
            let datagram = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64;
            assert_eq!(run(&program, arch, libc::SYS_socketpair, stream), ALLOW);
            let closed = if network { ALLOW } else { REFUSE };
            assert_eq!(run(&program, arch, libc::SYS_socketpair, datagram), closed);
            assert_eq!(run(&program, arch, libc::SYS_socket, stream), closed);
            assert_eq!(run(&program, arch, libc::SYS_connect, 0), closed);
            assert_eq!(run(&program, arch, libc::SYS_bind, 0), closed);
            assert_eq!(run(&program, arch, libc::SYS_listen, 0), closed);
        }
    }

    #[test]
    fn calls_on_another_process_are_refused_and_on_itself_allowed() {
        let arch = 0xC000_003E;
        let parent = 4242u64;
        for network in [false, true] {
            let program = assemble(&filter(arch, network));
            for nr in [
                libc::SYS_prlimit64,
                libc::SYS_sched_setscheduler,
                libc::SYS_sched_setparam,
                libc::SYS_sched_setattr,
                libc::SYS_sched_setaffinity,
            ] {
                assert_eq!(run_with(&program, arch, nr, [0; 6]), ALLOW, "{nr}");
                let other = [parent, 0, 0, 0, 0, 0];
                assert_eq!(run_with(&program, arch, nr, other), REFUSE, "{nr}");
                // The kernel reads an int: high bits over pid 0 still name the caller.
                let high = [1 << 32, 0, 0, 0, 0, 0];
                assert_eq!(run_with(&program, arch, nr, high), ALLOW, "{nr}");
            }
            // setpriority(PRIO_PROCESS = 0, who, ..) and ioprio_set(IOPRIO_WHO_PROCESS = 1, ..).
            for (nr, process) in [(libc::SYS_setpriority, 0), (libc::SYS_ioprio_set, 1)] {
                let own = [process, 0, 5, 0, 0, 0];
                assert_eq!(run_with(&program, arch, nr, own), ALLOW, "{nr}");
                let other = [process, parent, 5, 0, 0, 0];
                assert_eq!(run_with(&program, arch, nr, other), REFUSE, "{nr}");
                // A process group or a user, even "its own" (0).
                let group = [process + 1, 0, 5, 0, 0, 0];
                assert_eq!(run_with(&program, arch, nr, group), REFUSE, "{nr}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn metadata_changes_by_path_are_refused_and_by_descriptor_allowed() {
        let arch = 0xC000_003E;
        let program = assemble(&filter(arch, false));
        for nr in [
            libc::SYS_chmod,
            libc::SYS_fchmodat,
            SYS_FCHMODAT2,
            libc::SYS_chown,
            libc::SYS_lchown,
            libc::SYS_fchownat,
            libc::SYS_utime,
            libc::SYS_utimes,
            libc::SYS_futimesat,
            libc::SYS_setxattr,
            libc::SYS_lsetxattr,
            libc::SYS_removexattr,
            libc::SYS_lremovexattr,
            SYS_SETXATTRAT,
            SYS_REMOVEXATTRAT,
            libc::SYS_fanotify_init,
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_semget,
            libc::SYS_msgget,
        ] {
            assert_eq!(run(&program, arch, nr, 0), REFUSE, "{nr}");
        }
        for nr in [
            libc::SYS_fchmod,
            libc::SYS_fchown,
            libc::SYS_fsetxattr,
            libc::SYS_fremovexattr,
        ] {
            assert_eq!(run(&program, arch, nr, 0), ALLOW, "{nr}");
        }
        // utimensat(fd, NULL, ..) is futimens; with a path (a pointer, high bits too) it is not.
        let utimensat = libc::SYS_utimensat;
        assert_eq!(run(&program, arch, utimensat, 0), ALLOW);
        assert_eq!(run(&program, arch, utimensat, 0x7fff_0000_1000), REFUSE);
        assert_eq!(run(&program, arch, utimensat, 1 << 32), REFUSE);
    }

    #[test]
    fn typing_into_a_terminal_is_refused() {
        let arch = 0xC000_003E;
        for network in [false, true] {
            let program = assemble(&filter(arch, network));
            let ioctl = libc::SYS_ioctl;
            for request in [libc::TIOCSTI as u32, libc::TIOCLINUX as u32] {
                assert_eq!(run(&program, arch, ioctl, u64::from(request)), REFUSE);
                // The kernel reads an unsigned int: high bits do not hide the request.
                let hidden = u64::from(request) | 0xffff_ffff_0000_0000;
                assert_eq!(run(&program, arch, ioctl, hidden), REFUSE);
            }
            for request in [
                libc::TIOCGWINSZ as u32,
                libc::FIONREAD as u32,
                libc::TCGETS as u32,
            ] {
                assert_eq!(run(&program, arch, ioctl, u64::from(request)), ALLOW);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_are_refused() {
        let arch = 0xC000_003E;
        let program = assemble(&filter(arch, true));
        assert_eq!(run(&program, arch, libc::SYS_read | 0x4000_0000, 0), REFUSE);
    }
}
