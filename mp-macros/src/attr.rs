//! The arguments of `#[process_fn(...)]`, parsed into a config.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitStr, Path};

/// What `#[process_fn(name = "...", crate = path)]` asked for.
pub(crate) struct Config {
    /// The id to register under, instead of `module_path!()::name`.
    pub name: Option<LitStr>,
    /// Where the runtime is, for crates that re-export it.
    pub krate: Path,
}

pub(crate) fn parse(args: TokenStream) -> syn::Result<Config> {
    let mut name: Option<LitStr> = None;
    let mut krate: Option<Path> = None;
    let parser = syn::meta::parser(|meta: ParseNestedMeta| {
        if meta.path.is_ident("name") {
            if name.is_some() {
                return Err(meta.error("`name` is given twice: keep one"));
            }
            let value: LitStr = meta.value()?.parse()?;
            if value.value().is_empty() {
                return Err(syn::Error::new_spanned(
                    &value,
                    "the name is empty: give an id such as `name = \"my_crate::square\"`, or \
                     remove `name` to use the function's path",
                ));
            }
            name = Some(value);
            Ok(())
        } else if meta.path.is_ident("crate") {
            if krate.is_some() {
                return Err(meta.error("`crate` is given twice: keep one"));
            }
            krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            let unknown = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown argument `{unknown}`: expected `name = \"id\"` or \
                 `crate = path::to::mp_runtime`"
            )))
        }
    });
    parser.parse2(args)?;
    Ok(Config {
        name,
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::mp_runtime)),
    })
}
