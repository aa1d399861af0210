//! L2TP header: whatever passes the check must have every accessor in
//! bounds, and its header must emit a header that parses the same and
//! frames the same payload.
#![no_main]

use dataplane::wire::l2tp::{HeaderRepr, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.is_control(), packet.priority(), packet.version());
    let _ = (
        packet.tunnel_id(),
        packet.session_id(),
        packet.ns(),
        packet.nr(),
    );
    let payload = packet.payload();
    assert!(packet.header_len() + payload.len() <= data.len());
    let repr = HeaderRepr::parse(&packet).unwrap();
    assert_eq!(repr.buffer_len(), packet.header_len());
    let mut out = vec![0xa5; repr.buffer_len() + payload.len()];
    repr.emit(&mut out, payload.len()).unwrap();
    out[repr.buffer_len()..].copy_from_slice(payload);
    let again = Packet::new_checked(&out[..]).unwrap();
    assert_eq!(HeaderRepr::parse(&again), Ok(repr));
    assert_eq!(again.payload(), payload);
});
