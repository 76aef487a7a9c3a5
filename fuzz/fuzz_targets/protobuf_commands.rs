//! The Protobuf command decoder (varint length-prefixed `Command`s): any
//! frame decodes or errors, never panics or allocates by a forged length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::Encoding;

fuzz_target!(|frame: &[u8]| {
    let _ = Encoding::Protobuf.decode_commands(frame);
});
