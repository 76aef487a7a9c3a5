//! What the emulation transports parse before a session exists: the
//! `POST /emulation` body, the `cf_connect` query parameter, and the
//! one-way connect request wrapped into a connect command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::transport::parsers::{connect_command, parse_emulation_request, query_param};

fuzz_target!(|data: &[u8]| {
    for protobuf in [false, true] {
        if let Ok(post) = parse_emulation_request(data, protobuf, 65536) {
            assert!(!post.session.is_empty());
            assert!(post.data.len() <= 65536);
        }
    }
    if let Ok(query) = std::str::from_utf8(data) {
        if let Some(connect) = query_param(Some(query), "cf_connect") {
            let _ = connect_command(connect.as_bytes(), None);
        }
    }
    if let Some(command) = connect_command(data, None) {
        // What it builds is always one JSON object the JSON decoder takes.
        let commands = switchboard::protocol::Encoding::Json.decode_commands(&command);
        assert!(commands.is_ok_and(|c| c.len() == 1), "connect command does not decode");
    }
});
