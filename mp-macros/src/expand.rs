//! The code `#[process_fn]` writes: the function unchanged, and its registry entry.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;

use crate::attr::{self, Config};
use crate::function::{self, ProcessFunction};

pub(crate) fn process_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                "`#[process_fn]` goes on a function with a body: \
                 `fn name(arg: Type, ..) -> Output { .. }`",
            );
            return with_error(item, error);
        }
    };
    match (attr::parse(args), function::check(&item)) {
        (Ok(config), Ok(function)) => expand(&config, &function),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            with_error(quote!(#item), error)
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => with_error(quote!(#item), error),
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
    let assertions = arg_types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> #krate::__private::assert_transferable::<#ty>();));
    let (output_assertion, output_span) = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => (
            quote_spanned!(ty.span()=> #krate::__private::assert_transferable::<#ty>();),
            ty.span(),
        ),
        syn::ReturnType::Default => (quote!(), Span::call_site()),
    };
    // Decoding and encoding need the traits the assertions ask for. Spanned on the same type,
    // rustc reports a missing impl once, instead of again on the attribute. With several
    // arguments the decode is of their tuple: its error points at the parameter list. Only
    // tokens of our own are respanned (the aliases, `&`, the parentheses): a user's path or a
    // local variable moved to another span could stop resolving.
    let decode_span = match arg_types.as_slice() {
        [ty] => ty.span(),
        _ => item.sig.paren_token.span.join(),
    };
    let input = quote!(input);
    let decode = quote_spanned!(decode_span=> __mp_decode_args(#input));
    // The encode error points at the argument its type is inferred from.
    let result = format_ident!("__mp_result", span = output_span);
    let output = quote!(output);
    let encode = quote_spanned!(output_span=> __mp_encode_result(&#result, #output));

    quote! {
        #item

        const _: () = {
            use #krate::__private::{
                call_each as __mp_call_each, decode_args as __mp_decode_args,
                encode_result as __mp_encode_result,
            };

            fn __mp_invoke(
                input: &[u8],
                output: &mut #krate::__private::Outgoing,
            ) -> ::core::result::Result<bool, #krate::Error> {
                #(#assertions)*
                #output_assertion
                __mp_call_each(input, output, |input, output| {
                    let (#(#arg_names,)*): (#(#arg_types,)*) = #decode?;
                    let #result = #name(#(#arg_names),*);
                    #encode
                })
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
