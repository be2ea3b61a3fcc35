//! The code `#[process_fn]` writes: the function unchanged, and its registry entry.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::ItemFn;

use crate::attr::{self, Config};
use crate::function::{self, ProcessFunction};

pub(crate) fn process_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                "#[process_fn] goes on a free function: `fn name(args) -> Result { .. }`",
            );
            return with_error(item, error);
        }
    };
    let config = attr::parse(args);
    let function = function::check(item);
    match (config, function) {
        (Ok(config), Ok(function)) => expand(&config, &function),
        (Err(mut error), Err((item, more))) => {
            error.combine(more);
            with_error(quote!(#item), error)
        }
        (Err(error), Ok(function)) => {
            let item = &function.item;
            with_error(quote!(#item), error)
        }
        (Ok(_), Err((item, error))) => with_error(quote!(#item), error),
    }
}

/// The user's item stays, so one mistake does not cascade into "cannot find function" errors.
fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

fn expand(config: &Config, function: &ProcessFunction) -> TokenStream {
    let krate = &config.krate;
    let item = &function.item;
    let name = &item.sig.ident;
    let name_text = name.to_string();
    let id = match &config.name {
        Some(id) => quote!(#id),
        None => quote!(::core::concat!(::core::module_path!(), "::", #name_text)),
    };
    let arg_types = &function.arg_types;
    let arg_names: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("__mp_arg{}", i, span = Span::mixed_site()))
        .collect();
    // One assertion per type, spanned on it, so a missing serde impl points at the type.
    let assertions = arg_types.iter().map(|ty| {
        quote_spanned!(ty.span()=> #krate::__private::assert_transferable::<#ty>();)
    });
    let output_assertion = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => {
            quote_spanned!(ty.span()=> #krate::__private::assert_transferable::<#ty>();)
        }
        syn::ReturnType::Default => quote!(),
    };

    quote! {
        #item

        const _: () = {
            fn __mp_invoke(
                input: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::Error> {
                #(#assertions)*
                #output_assertion
                let (#(#arg_names,)*): (#(#arg_types,)*) = #krate::__private::decode_args(input)?;
                #krate::__private::encode_result(&#name(#(#arg_names),*))
            }

            fn __mp_type_id() -> ::core::any::TypeId {
                #krate::__private::type_id_of(&#name)
            }

            #krate::__private::inventory::submit! {
                #krate::__private::Entry {
                    id: #id,
                    path: ::core::concat!(::core::module_path!(), "::", #name_text),
                    type_id: __mp_type_id,
                    invoke: __mp_invoke,
                }
            }
        };
    }
}
