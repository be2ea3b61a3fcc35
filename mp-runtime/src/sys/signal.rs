//! Signal dispositions a worker needs as `main` would have them (SIGPIPE ignored, a stack
//! overflow reported).
