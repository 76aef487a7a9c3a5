//! The one-way `Last-Event-ID` positions codec: garbage decodes to `None`
//! and never panics; whatever decodes round-trips exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::transport::parsers::{decode_last_event_id, encode_last_event_id};

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else { return };
    if let Some(positions) = decode_last_event_id(id, 128) {
        assert!(positions.len() <= 128);
        let again = decode_last_event_id(&encode_last_event_id(positions.clone()), 128);
        assert_eq!(again.as_ref(), Some(&positions), "positions do not round-trip");
    }
});
