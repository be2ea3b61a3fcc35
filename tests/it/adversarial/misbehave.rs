//! The misbehaving task of the crash matrix: an argument and a result type whose serde impls
//! fail on demand (error or panic, encode or decode), and a function that crashes on demand
//! (panic, abort, `exit(3)`, SIGSEGV). Shared by `tests/it/adversarial/` and
//! `tests/adversarial_forkserver.rs`.

use mp_runtime::{Error, process_fn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One misbehaviour of the task under test (`Fine` behaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fine,
    Panic,
    Abort,
    Exit3,
    Segv,
    /// The argument's `Serialize` fails in the parent.
    ArgEncodeError,
    /// The argument's `Deserialize` fails in the child.
    ArgDecodeError,
    /// The argument's `Deserialize` panics in the child.
    ArgDecodePanic,
    /// The result's `Serialize` fails in the child.
    ResultEncodeError,
    /// The result's `Deserialize` fails in the parent.
    ResultDecodeError,
    /// The result's `Deserialize` panics in the parent.
    ResultDecodePanic,
}

/// Every misbehaviour.
pub const BAD: [Mode; 10] = [
    Mode::Panic,
    Mode::Abort,
    Mode::Exit3,
    Mode::Segv,
    Mode::ArgEncodeError,
    Mode::ArgDecodeError,
    Mode::ArgDecodePanic,
    Mode::ResultEncodeError,
    Mode::ResultDecodeError,
    Mode::ResultDecodePanic,
];

impl Mode {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Mode {
        [Mode::Fine]
            .into_iter()
            .chain(BAD)
            .find(|mode| mode.code() == code)
            .expect("a known mode")
    }

    /// Whether `error` is the one this misbehaviour must give (by the documented predicates).
    pub fn check(self, error: &Error) -> Result<(), String> {
        let right = match self {
            Mode::Fine => false,
            Mode::Panic | Mode::ArgDecodePanic | Mode::ResultDecodePanic => error.is_panic(),
            Mode::Abort => error.is_died() && error.signal() == Some(libc::SIGABRT),
            Mode::Segv => error.is_died() && error.signal() == Some(libc::SIGSEGV),
            Mode::Exit3 => error.is_died() && error.exit_code() == Some(3),
            Mode::ArgEncodeError
            | Mode::ArgDecodeError
            | Mode::ResultEncodeError
            | Mode::ResultDecodeError => error.is_codec(),
        };
        if right {
            Ok(())
        } else {
            Err(format!("{self:?}: wrong error: {error} ({error:?})"))
        }
    }
}

/// The task's argument.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub mode: Mode,
    pub x: u64,
}

impl Arg {
    pub fn fine(x: u64) -> Arg {
        Arg {
            mode: Mode::Fine,
            x,
        }
    }
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.mode == Mode::ArgEncodeError {
            return Err(serde::ser::Error::custom(
                "adversarial: this argument refuses to be encoded",
            ));
        }
        (self.mode.code(), self.x).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (code, x) = <(u8, u64)>::deserialize(d)?;
        let mode = Mode::from_code(code);
        match mode {
            Mode::ArgDecodeError => Err(serde::de::Error::custom(
                "adversarial: this argument refuses to be decoded",
            )),
            Mode::ArgDecodePanic => panic!("adversarial: decoding this argument panics"),
            _ => Ok(Arg { mode, x }),
        }
    }
}

/// The task's result: twice the argument's `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ret {
    pub mode: Mode,
    pub x: u64,
}

impl Serialize for Ret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.mode == Mode::ResultEncodeError {
            return Err(serde::ser::Error::custom(
                "adversarial: this result refuses to be encoded",
            ));
        }
        (self.mode.code(), self.x).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (code, x) = <(u8, u64)>::deserialize(d)?;
        let mode = Mode::from_code(code);
        match mode {
            Mode::ResultDecodeError => Err(serde::de::Error::custom(
                "adversarial: this result refuses to be decoded",
            )),
            // Like an `unwrap` in a custom `Deserialize`, run on a pool's thread in the parent.
            Mode::ResultDecodePanic => panic!("adversarial: decoding this result panics"),
            _ => Ok(Ret { mode, x }),
        }
    }
}

/// Misbehaves as its argument says; otherwise returns twice its `x`.
#[process_fn]
pub fn misbehave(arg: Arg) -> Ret {
    match arg.mode {
        Mode::Panic => panic!("adversarial: the task panics"),
        Mode::Abort => std::process::abort(),
        Mode::Exit3 => std::process::exit(3),
        Mode::Segv => {
            // SAFETY: plain system calls; the default action ends the process. A handler
            // installed for stack overflows would return from a raised (not faulting) signal.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            std::process::exit(99)
        }
        mode => Ret { mode, x: 2 * arg.x },
    }
}

/// The fine result for input `x`.
pub fn fine(x: u64) -> Ret {
    Ret {
        mode: Mode::Fine,
        x: 2 * x,
    }
}
