//! The `#[process_fn]` attribute of [mp](https://docs.rs/mp-runtime): marks an ordinary function
//! as callable in another process.
//!
//! Use it through `mp_runtime`, which re-exports it and documents it in full:
//!
//! ```
//! use mp_runtime::{process_fn, spawn};
//!
//! #[process_fn]
//! fn add(a: i32, b: i32) -> i32 {
//!     a + b
//! }
//!
//! assert_eq!(spawn!(add, 2, 3).unwrap().join().unwrap(), 5);
//! ```

mod attr;
mod expand;
mod function;

use proc_macro::TokenStream;

/// Registers a function so that it can run in another process. See `mp_runtime::process_fn`.
#[proc_macro_attribute]
pub fn process_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::process_fn(args.into(), item.into()).into()
}
