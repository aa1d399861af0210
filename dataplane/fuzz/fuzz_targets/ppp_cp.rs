//! LCP/IPCP/IPv6CP packets: any bytes through the view, the raw option
//! iterator and the three typed Reprs; a parsed packet must emit exactly the
//! bytes it was parsed from (Length-narrowed) and parse back the same.
#![no_main]

use dataplane::wire::ppp_cp::{IpcpRepr, Ipv6cpRepr, LcpRepr, Packet};
use libfuzzer_sys::fuzz_target;

/// Parse as `$repr`; if that works, emit, compare bytes and re-parse. A
/// macro rather than a generic function: the re-parse borrows a local
/// buffer, so its Repr has a shorter lifetime than the input's.
macro_rules! check {
    ($repr:ident, $packet:expr) => {
        if let Ok(repr) = $repr::parse($packet) {
            let mut out = vec![0u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
            assert_eq!(&out[..], $packet.packet());
            let again = $repr::parse(&Packet::new_checked(&out[..]).unwrap()).unwrap();
            assert_eq!(again, repr);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.code(), packet.identifier(), packet.length());
    let _ = (packet.magic_number(), packet.rejected_protocol());
    assert_eq!(packet.data().len() + 4, usize::from(packet.length()));
    let mut total = 0;
    for option in packet.options() {
        match option {
            Ok(raw) => total += 2 + raw.value.len(),
            Err(_) => break,
        }
    }
    assert!(total <= packet.data().len());
    check!(LcpRepr, &packet);
    check!(IpcpRepr, &packet);
    check!(Ipv6cpRepr, &packet);
});
