//! PPP frame header: any bytes through the view and the Repr; a parsed
//! header must emit back to the same bytes.
#![no_main]

use dataplane::wire::ppp::{Packet, Protocol, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.has_address_control(),
        packet.is_protocol_compressed(),
    );
    assert!(Protocol::is_valid_value(u16::from(packet.protocol())));
    assert_eq!(packet.header_len() + packet.payload().len(), data.len());
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    assert_eq!(out[..], data[..repr.buffer_len()]);
    out.extend_from_slice(packet.payload());
    assert_eq!(
        Repr::parse(&Packet::new_checked(&out[..]).unwrap()),
        Ok(repr)
    );
});
