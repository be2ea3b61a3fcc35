//! Tests that change or count what belongs to the whole process (a resource limit, the
//! disposition of SIGCHLD, open descriptors, every child of the process): each runs its body
//! in a `spawn!`ed child of its own, mp's own isolation, so that the tests beside it neither
//! see nor disturb what it does.

mod adversarial_fd_limit;
mod adversarial_sigchld;
mod adversarial_starmap_fds;
mod chaos;
mod descriptors;
mod large_values;
