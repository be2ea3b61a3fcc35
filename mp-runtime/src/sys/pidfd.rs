//! Process descriptors (pidfd): knowing when a child exits and signalling it without the risk
//! of a reused pid.
