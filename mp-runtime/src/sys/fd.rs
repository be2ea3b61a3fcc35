//! Descriptors: sending and receiving them beside bytes (SCM_RIGHTS), waiting for one to be
//! readable or writable, closing the ones a new process must not hold.
