//! IPv4: any bytes through the view and the Repr; a parsed header must emit
//! a header that parses to the same Repr.
#![no_main]

use dataplane::wire::ipv4::{Packet, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.dscp(),
        packet.ecn(),
        packet.ident(),
    );
    let _ = (
        packet.dont_frag(),
        packet.more_frags(),
        packet.frag_offset(),
    );
    let _ = (
        packet.is_fragment(),
        packet.ttl(),
        packet.protocol(),
        packet.checksum(),
    );
    let _ = (packet.src_addr(), packet.dst_addr(), packet.options());
    let verified = packet.verify_checksum();
    assert!(packet.header_len() + packet.payload().len() <= data.len());

    // The incremental TTL update must agree with a full recomputation.
    let mut copy = data.to_vec();
    let mut writable = Packet::new_checked(&mut copy[..]).unwrap();
    writable.set_ttl_and_update_checksum(packet.ttl().wrapping_sub(1));
    assert_eq!(writable.verify_checksum(), verified);

    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.total_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    out[repr.buffer_len()..].copy_from_slice(packet.payload());
    let again = Repr::parse(&Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
});
