//! Tests that change or count what belongs to the whole process (a resource limit, the
//! disposition of SIGCHLD, the start method, the standard descriptors, open descriptors, every
//! child of the process, a fork of it): each runs its body
//! in a `spawn!`ed child of its own, mp's own isolation, so that the tests beside it neither
//! see nor disturb what it does.

mod adversarial_closed_stdio;
mod adversarial_closed_stdout;
mod adversarial_fd_limit;
mod adversarial_forkserver;
mod adversarial_sigchld;
mod adversarial_starmap_fds;
pub(crate) mod chaos;
mod descriptors;
mod descriptors_inherited;
mod fork_server;
mod forked_copy;
mod large_values;
mod parent_death;
