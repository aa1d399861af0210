//! Authentication, authorization and accounting for the LNS, and the
//! subscriber address pools.

pub mod pool;
