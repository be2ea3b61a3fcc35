//! Robust process-shared pthread mutexes: a lock whose owner died is reported to the next
//! locker instead of being held forever.
