//! CHAP: any bytes through the view and the Repr; a parsed packet must emit
//! exactly buffer_len() bytes that parse back to the same Repr.
#![no_main]

#[macro_use]
#[path = "ppp_authentication.rs"]
mod ppp_authentication;

fuzz_authentication_packet!(chap);
