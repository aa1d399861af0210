//! Ethernet: any bytes through the view and the Repr; a parsed header must
//! emit back to the same bytes.
#![no_main]

use dataplane::wire::ethernet::{Frame, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::new_checked(data) else {
        return;
    };
    let _ = (frame.dst_addr(), frame.src_addr(), frame.tag_count());
    let _ = (frame.tag(0), frame.tag(1), frame.tag(2));
    assert!(!frame.ethertype().is_vlan_tag());
    assert_eq!(frame.header_len() + frame.payload().len(), data.len());
    let Ok(repr) = Repr::parse(&frame) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(repr.buffer_len()));
    assert_eq!(out[..], data[..repr.buffer_len()]);
    let again = Repr::parse(&Frame::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
});
