//! L2TP control messages with a fixed tunnel secret, so hidden AVPs are
//! revealed too: a parsed message must emit exactly `buffer_len()` bytes
//! that parse back to the same message.
#![no_main]

use dataplane::wire::control::{Context, ControlMessage, HA_VENDOR_ID};
use libfuzzer_sys::fuzz_target;

const CTX: Context<'static> = Context {
    secret: Some(b"secret"),
    ha_vendor_id: HA_VENDOR_ID,
};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = ControlMessage::parse(data, &CTX) else {
        return;
    };
    let mut out = vec![0xa5; message.buffer_len()];
    assert_eq!(message.emit(&mut out, &CTX), Ok(out.len()));
    assert_eq!(ControlMessage::parse(&out, &CTX), Ok(message));
});
