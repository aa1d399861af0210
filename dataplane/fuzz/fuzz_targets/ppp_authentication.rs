//! The check the PAP and CHAP targets share: both protocols use the RFC 1661
//! §5 packet (`wire::ppp_cp::CpPacket`) with codes and Reprs of their own,
//! so only the module differs. Not a target itself: each target includes it.

/// A fuzz target for `dataplane::wire::$protocol` (`pap` or `chap`): any
/// bytes through the view and the Repr; a parsed packet must emit exactly
/// buffer_len() bytes that parse back to the same Repr.
macro_rules! fuzz_authentication_packet {
    ($protocol:ident) => {
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            use dataplane::wire::$protocol::{Packet, Repr};

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
    };
}
