//! PPPoE: any bytes through the view, the tag iterator and both Reprs; a
//! parsed packet must emit bytes that parse to the same Repr.
#![no_main]

use dataplane::wire::pppoe::{DiscoveryRepr, Packet, Repr, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.pppoe_type(),
        packet.code(),
        packet.session_id(),
    );
    assert_eq!(packet.payload().len(), usize::from(packet.length()));
    // The iterator ends: at most one item per tag header, plus one error.
    assert!(packet.tags().count() <= packet.payload().len() / 4 + 1);
    for tag in packet.tags().flatten() {
        assert!(tag.buffer_len() <= packet.payload().len());
    }

    let header = Repr::parse(&packet).unwrap();
    let mut out = vec![0u8; HEADER_LEN];
    assert_eq!(header.emit(&mut out), Ok(header.buffer_len()));
    assert_eq!(out[..], data[..HEADER_LEN]);

    let Ok(repr) = DiscoveryRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    let again = DiscoveryRepr::parse(&Packet::new_checked(&out[..]).unwrap());
    assert_eq!(again, Ok(repr));
});
