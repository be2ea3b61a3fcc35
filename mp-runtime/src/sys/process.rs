//! This process and its children: parent-death signal, resource limits, thread identity,
//! fork, and whether this is a secure-execution (setuid) process.
