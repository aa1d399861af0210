//! The L2TPv2 control connection (RFC 2661), sans-IO: reliable delivery,
//! the tunnel state machine and the incoming-call session state machines.

pub mod reliable;
