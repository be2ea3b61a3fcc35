//! Every system call and OS-facing `unsafe` of the crate, behind safe functions.
