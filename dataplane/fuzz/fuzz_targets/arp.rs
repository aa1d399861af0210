//! ARP: any bytes through the view and the Repr; a parsed Ethernet/IPv4
//! packet must emit the bytes it came from.
#![no_main]

use dataplane::wire::arp::{Packet, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.hardware_type(),
        packet.protocol_type(),
        packet.operation(),
    );
    let lens = packet.source_hardware_addr().len()
        + packet.source_protocol_addr().len()
        + packet.target_hardware_addr().len()
        + packet.target_protocol_addr().len();
    assert_eq!(8 + lens, packet.packet_len());
    assert!(packet.packet_len() <= data.len());
    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    assert_eq!(out[..], data[..repr.buffer_len()]);
    assert_eq!(
        Repr::parse(&Packet::new_checked(&out[..]).unwrap()),
        Ok(repr)
    );
});
