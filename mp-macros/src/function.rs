//! The function under `#[process_fn]`: a typed view of it, and the checks that it can run in
//! another process.

use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Safety, Signature, Type};

/// A function that passed the checks: what the expansion needs of it.
pub(crate) struct ProcessFunction {
    pub item: ItemFn,
    /// The argument types, in order.
    pub arg_types: Vec<Type>,
}

/// Checks `item` and collects every problem, each on the token at fault.
pub(crate) fn check(item: ItemFn) -> Result<ProcessFunction, (ItemFn, syn::Error)> {
    let mut errors: Option<syn::Error> = None;
    let mut report = |error: syn::Error| match &mut errors {
        Some(all) => all.combine(error),
        None => errors = Some(error),
    };
    check_signature(&item.sig, &mut report);

    let mut arg_types = Vec::new();
    for input in &item.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => report(syn::Error::new_spanned(
                receiver,
                "methods cannot run in another process: put #[process_fn] on a free function \
                 and pass the value as an argument",
            )),
            FnArg::Typed(typed) => {
                check_type(&typed.ty, "argument", &mut report);
                arg_types.push((*typed.ty).clone());
            }
        }
    }
    if let ReturnType::Type(_, ty) = &item.sig.output {
        check_type(ty, "result", &mut report);
    }

    match errors {
        Some(errors) => Err((item, errors)),
        None => Ok(ProcessFunction { item, arg_types }),
    }
}

fn check_signature(sig: &Signature, report: &mut impl FnMut(syn::Error)) {
    if let Some(asyncness) = &sig.asyncness {
        report(syn::Error::new_spanned(
            asyncness,
            "async fn cannot run in another process: make it a plain fn that blocks on its \
             future (for example with a runtime's `block_on`)",
        ));
    }
    if let Safety::Unsafe(unsafety) = &sig.safety {
        report(syn::Error::new_spanned(
            unsafety,
            "unsafe fn cannot run in another process: the caller could not uphold its contract \
             there; register a safe fn that checks the contract and calls it",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        report(syn::Error::new(
            sig.generics.span(),
            "generic functions cannot run in another process: the child must know the concrete \
             types; register one non-generic fn per type that calls the generic one",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        report(syn::Error::new_spanned(
            variadic,
            "variadic functions cannot run in another process: take a `Vec` instead",
        ));
    }
}

/// Rejects types that cannot cross a process boundary by value.
fn check_type(ty: &Type, role: &str, report: &mut impl FnMut(syn::Error)) {
    match ty {
        Type::Reference(reference) => report(syn::Error::new_spanned(
            reference,
            format!(
                "a reference cannot cross a process boundary: take the {role} by value (an owned \
                 type such as `String` for `&str`, `Vec<T>` for `&[T]`)"
            ),
        )),
        Type::ImplTrait(impl_trait) => report(syn::Error::new_spanned(
            impl_trait,
            format!(
                "`impl Trait` is a generic {role}: the child must know the concrete type; name \
                 it (for example `Vec<u64>` instead of `impl IntoIterator<Item = u64>`)"
            ),
        )),
        Type::Paren(inner) => check_type(&inner.elem, role, report),
        Type::Group(inner) => check_type(&inner.elem, role, report),
        _ => {}
    }
}
