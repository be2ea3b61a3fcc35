//! The table of functions that can run in another process, and how a fn value finds its entry.
//!
//! `#[process_fn]` submits one [`Entry`] per function with `inventory`. The table is built into
//! maps on first use. A function is found from a value by the `TypeId` of its fn item, never by
//! its address: the compiler may merge identical functions into one address.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::base::{Error, Kind, Result};

/// One registered function, as `#[process_fn]` writes it.
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    /// The id parent and child agree on: `module_path::name`, or the one given with `name = ".."`.
    pub id: &'static str,
    /// The function's Rust path, for messages.
    pub path: &'static str,
    /// The `TypeId` of the function's fn item.
    pub type_id: fn() -> TypeId,
    /// Calls the function once per argument record in the first buffer, appending one outcome
    /// record per call to the second (see `worker::call_each`); true if a call panicked.
    pub invoke: fn(&[u8], &mut crate::wire::outgoing::Outgoing) -> Result<bool>,
}

inventory::collect!(Entry);

/// The entries, indexed both ways.
struct Registry {
    by_id: HashMap<&'static str, &'static Entry>,
    by_type: HashMap<TypeId, &'static Entry>,
    /// The first clash of two ids, reported on every use so it cannot be missed.
    duplicate: Option<(&'static str, &'static str, &'static str)>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry {
            by_id: HashMap::new(),
            by_type: HashMap::new(),
            duplicate: None,
        };
        for entry in inventory::iter::<Entry> {
            if let Some(earlier) = registry.by_id.insert(entry.id, entry) {
                registry
                    .duplicate
                    .get_or_insert((entry.id, earlier.path, entry.path));
            }
            registry.by_type.insert((entry.type_id)(), entry);
        }
        registry
    })
}

fn check_duplicates(registry: &Registry) -> Result<()> {
    match registry.duplicate {
        Some((id, first, second)) => Err(Error::new(Kind::DuplicateId {
            id: id.to_string(),
            first: first.to_string(),
            second: second.to_string(),
        })),
        None => Ok(()),
    }
}

/// The identity of this build, as parent and child compare it: a hash of mp's version and of
/// every registered function's id and Rust path. A child that is not the same program (a
/// different binary on another machine, or one rebuilt with other functions) differs.
pub(crate) fn build_id() -> &'static str {
    static BUILD: OnceLock<String> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut names: Vec<(&str, &str)> = inventory::iter::<Entry>
            .into_iter()
            .map(|entry| (entry.id, entry.path))
            .collect();
        names.sort_unstable();
        // FNV-1a: small, and stable across Rust versions (unlike `DefaultHasher`).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let version = env!("CARGO_PKG_VERSION");
        for part in std::iter::once(version).chain(names.iter().flat_map(|(id, path)| [*id, *path]))
        {
            for byte in part.bytes().chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    })
}

/// The entry of the function `f` (a fn item), or an error naming it.
///
/// A fn item takes no room: a value that does (a closure that captures, a fn pointer) cannot
/// be a `#[process_fn]`, and is refused when the program is built rather than when it runs.
pub(crate) fn lookup<F: 'static>(_f: &F) -> Result<&'static Entry> {
    const {
        assert!(
            size_of::<F>() == 0,
            "only a `#[process_fn]` fn can run in another process, not a closure that captures \
             values or a fn pointer: write a `#[process_fn]` fn and pass what the closure \
             captured as its arguments"
        )
    };
    let registry = registry();
    check_duplicates(registry)?;
    registry
        .by_type
        .get(&TypeId::of::<F>())
        .copied()
        .ok_or_else(|| {
            Error::new(Kind::NotRegistered {
                name: std::any::type_name::<F>().to_string(),
            })
        })
}

/// The entry registered under `id`, in this process (the child).
pub(crate) fn lookup_id(id: &str) -> Result<&'static Entry> {
    let registry = registry();
    check_duplicates(registry)?;
    registry.by_id.get(id).copied().ok_or_else(|| {
        let mut known: Vec<String> = registry.by_id.keys().map(|id| id.to_string()).collect();
        known.sort();
        Error::new(Kind::UnknownId {
            id: id.to_string(),
            binary: crate::base::current_binary(),
            known,
        })
    })
}

/// A function that can be called in another process with arguments `Args` (a tuple).
///
/// Implemented for every function of up to 12 arguments whose arguments and result can be
/// encoded; whether the function is registered with `#[process_fn]` is checked when it is used,
/// before any process starts. Users name this trait only in bounds of their own generic helpers.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, ProcessFn, Result};
///
/// #[process_fn]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// /// Runs any two-argument function in a child process.
/// fn remote<F: ProcessFn<(i32, i32)>>(f: F, a: i32, b: i32) -> Result<F::Output> {
///     mp_runtime::Process::start(f, (a, b))?.join()
/// }
///
/// assert_eq!(remote(add, 2, 3).unwrap(), 5);
/// ```
pub trait ProcessFn<Args>: Copy + Send + Sync + 'static {
    /// What the function returns. `Send`, since a pool decodes results on its own threads.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, ProcessFn};
    ///
    /// #[process_fn]
    /// fn describe(x: u8) -> String {
    ///     format!("<{x}>")
    /// }
    ///
    /// /// The results of `f` on 0, 1 and 2, typed by what `f` returns.
    /// fn first_three<F: ProcessFn<(u8,)>>(pool: &Pool, f: F) -> Vec<F::Output> {
    ///     pool.starmap(f, (0..3).map(|x| (x,))).unwrap()
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// assert_eq!(first_three(&pool, describe), ["<0>", "<1>", "<2>"]);
    /// ```
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

macro_rules! impl_process_fn {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg),*> ProcessFn<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + Sync + 'static,
            Ret: Serialize + DeserializeOwned + Send + 'static,
            $($arg: Serialize + DeserializeOwned + 'static,)*
        {
            type Output = Ret;
        }
    };
}

impl_process_fn!();
impl_process_fn!(A1);
impl_process_fn!(A1, A2);
impl_process_fn!(A1, A2, A3);
impl_process_fn!(A1, A2, A3, A4);
impl_process_fn!(A1, A2, A3, A4, A5);
impl_process_fn!(A1, A2, A3, A4, A5, A6);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7, A8);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
impl_process_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

#[cfg(test)]
mod tests {
    use super::*;

    #[crate::process_fn(crate = crate)]
    fn one() -> u32 {
        1
    }

    /// The same body as `one`: the compiler may give both one address, but never one type.
    #[crate::process_fn(crate = crate)]
    fn also_one() -> u32 {
        1
    }

    fn unregistered() -> u32 {
        2
    }

    #[test]
    fn identical_functions_keep_their_own_entries() {
        assert_eq!(
            lookup(&one).unwrap().id,
            "mp_runtime::runtime::registry::tests::one"
        );
        assert_eq!(
            lookup(&also_one).unwrap().id,
            "mp_runtime::runtime::registry::tests::also_one"
        );
    }

    #[test]
    fn an_unregistered_function_is_named_in_the_error() {
        let err = lookup(&unregistered).unwrap_err();
        assert!(err.is_not_registered());
        let text = err.to_string();
        assert!(text.contains("registry::tests::unregistered"), "{text}");
        assert!(text.contains("#[process_fn]"), "{text}");
    }

    #[test]
    fn an_unknown_id_lists_what_is_registered() {
        let text = lookup_id("no::such::fn").unwrap_err().to_string();
        assert!(text.contains("no::such::fn"), "{text}");
        assert!(
            text.contains("mp_runtime::runtime::registry::tests::one"),
            "{text}"
        );
        assert!(text.contains("same build"), "{text}");
    }

    #[test]
    fn entries_invoke_with_encoded_arguments() {
        let entry = lookup_id("mp_runtime::runtime::registry::tests::one").unwrap();
        let mut args = crate::wire::outgoing::Outgoing::default();
        let at = crate::wire::codec::begin_record(&mut args).unwrap();
        crate::wire::codec::encode_into(&(), &mut args).unwrap();
        crate::wire::codec::end_record(&mut args, at).unwrap();
        let mut out = crate::wire::outgoing::Outgoing::default();
        assert!(!(entry.invoke)(&args.into_bytes(), &mut out).unwrap());
        let out = out.into_bytes();
        let outcome = crate::wire::codec::records(&out).next().unwrap().unwrap();
        // A value's outcome: its tag byte, then the value.
        assert_eq!(crate::wire::codec::decode::<u32>(&outcome[1..]).unwrap(), 1);
    }
}
