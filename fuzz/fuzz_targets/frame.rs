//! Bytes from a peer through a channel, and its frames through the request and outcome parsers.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| mp_runtime::__fuzz::wire(bytes));
