//! The `#[process_fn]` attribute of [mp](https://docs.rs/mp-runtime): marks an ordinary function
//! as callable in another process.
//!
//! Use it through `mp_runtime`, which re-exports it and documents it in full, with examples
//! that run: [`mp_runtime::process_fn`][process_fn].
//!
//! [process_fn]: https://docs.rs/mp-runtime/latest/mp_runtime/attr.process_fn.html

mod attr;
mod expand;
mod function;

use proc_macro::TokenStream;

/// Registers a function so that it can run in another process. See `mp_runtime::process_fn`.
#[proc_macro_attribute]
pub fn process_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::process_fn(args.into(), item.into()).into()
}
