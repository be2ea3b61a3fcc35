//! The function under `#[process_fn]`: a typed view of it, and the checks that it can run in
//! another process.

use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Safety, Signature, Type};

/// The most arguments a function can take: the runtime's `ProcessFn` is implemented up to here.
const MAX_ARGS: usize = 12;

/// A function that passed the checks: what the expansion needs of it.
pub(crate) struct ProcessFunction<'a> {
    pub item: &'a ItemFn,
    /// The argument types, in order.
    pub arg_types: Vec<&'a Type>,
}

/// Where a type sits in the signature, for messages.
#[derive(Clone, Copy)]
enum Role {
    Argument,
    Result,
}

/// Checks `item` and collects every problem, each on the token at fault.
pub(crate) fn check(item: &ItemFn) -> syn::Result<ProcessFunction<'_>> {
    let mut errors: Option<syn::Error> = None;
    let mut report = |error: syn::Error| match &mut errors {
        Some(all) => all.combine(error),
        None => errors = Some(error),
    };
    check_signature(&item.sig, &mut report);

    let mut arg_types = Vec::new();
    for (index, input) in item.sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => report(syn::Error::new_spanned(
                receiver,
                "methods cannot run in another process: put `#[process_fn]` on a free function \
                 and pass the value as an argument",
            )),
            FnArg::Typed(typed) => {
                if index == MAX_ARGS {
                    report(syn::Error::new_spanned(
                        typed,
                        "a `#[process_fn]` takes at most 12 arguments: group some of them into \
                         a tuple or a struct",
                    ));
                }
                check_type(&typed.ty, Role::Argument, &mut report);
                arg_types.push(&*typed.ty);
            }
        }
    }
    if let ReturnType::Type(_, ty) = &item.sig.output {
        check_type(ty, Role::Result, &mut report);
    }

    match errors {
        Some(errors) => Err(errors),
        None => Ok(ProcessFunction { item, arg_types }),
    }
}

fn check_signature(sig: &Signature, report: &mut impl FnMut(syn::Error)) {
    if let Some(asyncness) = &sig.asyncness {
        report(syn::Error::new_spanned(
            asyncness,
            "`async fn` cannot run in another process: make it a plain fn that blocks on its \
             future (for example with a runtime's `block_on`)",
        ));
    }
    match (&sig.variadic, &sig.safety) {
        // A C-variadic fn must be `unsafe extern "C"`: one error says what to do about both.
        (Some(variadic), _) => report(syn::Error::new_spanned(
            variadic,
            "C-variadic functions cannot run in another process: take the extra arguments as \
             one `Vec<T>` argument of a safe fn",
        )),
        (None, Safety::Unsafe(unsafety)) => report(syn::Error::new_spanned(
            unsafety,
            "`unsafe fn` cannot run in another process: its safety contract cannot be checked \
             across the boundary; register a safe fn that upholds the contract and calls this one",
        )),
        (None, _) => {}
    }
    // A `where` clause alone can only bound concrete types: it does no harm, so it may stay.
    if !sig.generics.params.is_empty() {
        report(syn::Error::new_spanned(
            &sig.generics,
            "generic functions cannot run in another process: the child must know the concrete \
             types; register one non-generic fn per type that calls the generic one",
        ));
    }
}

/// Rejects types that cannot cross a process boundary by value, wherever they sit in the type
/// (`&str`, but also `Vec<&str>` or `(u32, impl Trait)`).
fn check_type(ty: &Type, role: Role, report: &mut impl FnMut(syn::Error)) {
    let what = match role {
        Role::Argument => "argument",
        Role::Result => "result",
    };
    match ty {
        Type::Reference(reference) => report(syn::Error::new_spanned(
            reference,
            format!(
                "a reference cannot cross a process boundary: take the {what} by value (an owned \
                 type such as `String` for `&str`, `Vec<T>` for `&[T]`)"
            ),
        )),
        Type::ImplTrait(impl_trait) => report(syn::Error::new_spanned(
            impl_trait,
            match role {
                Role::Argument => {
                    "`impl Trait` makes the argument generic, and the child must know the \
                     concrete type: name it (for example `Vec<u64>` instead of \
                     `impl IntoIterator<Item = u64>`)"
                }
                Role::Result => {
                    "`impl Trait` hides the result's type, and the parent must know it to decode \
                     the result: name the concrete type"
                }
            },
        )),
        Type::Paren(inner) => check_type(&inner.elem, role, report),
        Type::Group(inner) => check_type(&inner.elem, role, report),
        Type::Array(array) => check_type(&array.elem, role, report),
        Type::Slice(slice) => check_type(&slice.elem, role, report),
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_type(elem, role, report);
            }
        }
        // `PhantomData<&T>` holds no reference, and serde transfers it.
        Type::Path(path)
            if path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "PhantomData") => {}
        // Only an associated fn can name `Self`: the registration, beside the fn, could not
        // reach it inside its `impl`.
        Type::Path(path)
            if path.qself.is_none()
                && path
                    .path
                    .segments
                    .first()
                    .is_some_and(|s| s.ident == "Self") =>
        {
            report(syn::Error::new_spanned(
                path,
                "associated functions cannot run in another process: put `#[process_fn]` on a \
                 free function outside the `impl`, with the type named instead of `Self`",
            ))
        }
        Type::Path(path) => {
            for segment in &path.path.segments {
                if let PathArguments::AngleBracketed(generics) = &segment.arguments {
                    for argument in &generics.args {
                        if let GenericArgument::Type(elem) = argument {
                            check_type(elem, role, report);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
