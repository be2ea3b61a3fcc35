//! Bytes through the record splitter and the argument decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| mp_runtime::__fuzz::records(bytes));
