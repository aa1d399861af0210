//! CHAP: any bytes through the view and the Repr; a parsed packet must emit
//! exactly buffer_len() bytes that parse back to the same Repr.
#![no_main]

use dataplane::wire::chap::{Packet, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.code(), packet.identifier());
    assert_eq!(packet.data().len() + 4, usize::from(packet.length()));
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.code(), packet.code());
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    let again = Repr::parse(&Packet::new_checked(&out[..]).unwrap());
    assert_eq!(again, Ok(repr));
});
