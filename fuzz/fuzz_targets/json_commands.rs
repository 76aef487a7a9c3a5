//! The JSON command decoder: any frame (newline-delimited commands) decodes
//! or errors, never panics or recurses without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::Encoding;

fuzz_target!(|frame: &[u8]| {
    let _ = Encoding::Json.decode_commands(frame);
});
