//! The Centrifugo client protocol (v2): wire types, codes and the JSON codec.
//!
//! Pure and synchronous: no I/O, no tokio, no knowledge of channels or
//! sessions. The schema is `definitions/client.proto` of the public
//! `centrifugal/protocol` repository; field names here are its JSON names.
//! JSON specifics that matter for SDK compatibility: `bytes` fields travel as
//! raw embedded JSON with newlines removed, offsets are plain numbers, and
//! zero values are omitted.

pub mod codes;
mod json;
mod payload;
mod types;

pub use codes::{DisconnectCode, ErrorCode};
pub use json::{
    DecodeError, MAX_COMMANDS_PER_FRAME, decode_commands, encode_publication_push, encode_reply, encode_reply_into,
};
pub use payload::Payload;
pub use types::*;
