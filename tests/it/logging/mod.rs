//! Worker logs in the parent: each test runs its scenario in a `spawn!`ed child of its own,
//! whose `main`-like scenario sets the global logger or subscriber once, as a program does.

mod log;
mod panics;
mod relay;
mod tracing;
