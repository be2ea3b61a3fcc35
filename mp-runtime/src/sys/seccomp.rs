//! A seccomp filter (Linux 3.5 and later): the system calls that a sandboxed worker may not
//! make fail with `EPERM`, for it and every child it forks.
//!
//! The filter is a short classic-BPF program written here: it checks the architecture (a
//! 32-bit call through `int 0x80`, or an x32 call, has other numbers and is refused whole),
//! then compares the call's number with each refused one; `socketpair` is looked at further,
//! for its type.

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
];

/// Where `struct seccomp_data` keeps the call's number, its architecture and the low half of
/// its second argument.
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;
#[cfg(target_endian = "little")]
const ARG1_LOW_AT: u32 = 16 + 8;
#[cfg(target_endian = "big")]
const ARG1_LOW_AT: u32 = 16 + 8 + 4;

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

/// Installs the filter on every thread of this process: the calls of [`REFUSED`] fail, and,
/// unless `network`, so do `socket` and `connect` (a Unix socket named by a path is not
/// Landlock's before its ABI 8), and `socketpair` of any type but a stream (a datagram socket
/// can send to any named socket). Needs no-new-privileges, unless the caller has
/// CAP_SYS_ADMIN.
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
            Step::IfEqual {
                value: libc::SYS_socketpair as u32,
                yes: To::Next,
                no: To::Allow,
            },
            Step::Load(ARG1_LOW_AT),
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
        let word = |at: u32| -> u32 {
            match at {
                NR_AT => nr as u32,
                ARCH_AT => arch,
                ARG1_LOW_AT => arg1 as u32,
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
