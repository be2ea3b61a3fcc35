//! Shared mappings of a file, unmapped when dropped.
