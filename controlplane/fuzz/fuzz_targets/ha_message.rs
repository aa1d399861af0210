//! Any bytes as an L2TP control message carrying an HA vendor message
//! (LSORQ, LSORS, STPLRQ, STPLRP; DESIGN.md §3), read as the LNS and the
//! LAC read them: the control message first (hidden AVPs revealed with a
//! fixed secret), then `HaMessage::from_control`.
//!
//! Checked: no panic; and whatever reads as an HA message is written back
//! by `to_control` to a message that reads the same (what a LAC answers or
//! an LNS re-offloads is what it understood).
#![no_main]

use controlplane::ha::message::HaMessage;
use dataplane::wire::control::{Context, ControlMessage, HA_VENDOR_ID};
use libfuzzer_sys::fuzz_target;

const CTX: Context<'static> = Context {
    secret: Some(b"secret"),
    ha_vendor_id: HA_VENDOR_ID,
};

fuzz_target!(|data: &[u8]| {
    let Ok(control) = ControlMessage::parse(data, &CTX) else {
        return;
    };
    let Ok(message) = HaMessage::from_control(&control) else {
        return;
    };
    let again = HaMessage::from_control(&message.to_control(false));
    assert_eq!(again.as_ref(), Ok(&message));
});
