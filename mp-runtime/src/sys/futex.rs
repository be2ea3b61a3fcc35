//! Futexes: waiting on a 32-bit word in shared memory until another process changes it.
