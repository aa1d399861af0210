//! Any bytes as an HA Session-State blob (vendor AVP 6, the value a peer LNS
//! receives in an LSORQ).
//!
//! Checked: no panic; and whatever decodes encodes again to a blob that
//! decodes to the same state (what the peer stores is what it re-offloads).
#![no_main]

use controlplane::ha::state::SessionState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = SessionState::decode(data) {
        // A decoded state may still hold a value too long to re-encode only
        // if the input had one, and every TLV's length fits 16 bits: encode
        // cannot fail here.
        let bytes = state.encode().expect("a decoded state encodes");
        assert_eq!(SessionState::decode(&bytes).as_ref(), Ok(&state));
    }
});
