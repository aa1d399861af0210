//! LCP/IPCP/IPv6CP packets: any bytes through the view, the raw option
//! iterator and the three typed Reprs; a parsed packet must emit exactly the
//! bytes it was parsed from (Length-narrowed) and parse back the same.
#![no_main]

use dataplane::wire::ppp_cp::{ConfigOption, CpRepr, IpcpOption, Ipv6cpOption, LcpOption, Packet};
use libfuzzer_sys::fuzz_target;

fn check<'a, O: ConfigOption<'a> + core::fmt::Debug>(packet: &Packet<&'a [u8]>) {
    let Ok(repr) = CpRepr::<'a, O>::parse(packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    assert_eq!(&out[..], packet.packet());
    let again = CpRepr::<O>::parse(&Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
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
    check::<LcpOption<'_>>(&packet);
    check::<IpcpOption<'_>>(&packet);
    check::<Ipv6cpOption<'_>>(&packet);
});
