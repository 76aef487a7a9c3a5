//! The Centrifugo client protocol (v2): wire types, codes and the JSON and
//! Protobuf codecs.
//!
//! Pure and synchronous: no I/O, no tokio, no knowledge of channels or
//! sessions. The schema is `client.proto` of the public `centrifugal/protocol`
//! repository; field names in `types` are its JSON names, and `proto` holds
//! its Protobuf messages. The model in `types` is the single in-memory
//! representation; [`Encoding`] picks the codec per connection.
//! JSON specifics that matter for SDK compatibility: `bytes` fields travel as
//! raw embedded JSON with newlines removed, offsets are plain numbers, and
//! zero values are omitted. Protobuf carries `bytes` untouched.

pub mod codes;
mod encoding;
mod json;
mod payload;
pub mod proto;
pub mod protobuf;
mod types;

pub use codes::{DisconnectCode, ErrorCode};
pub use encoding::{EncodeError, Encoding};
pub use json::{
    DecodeError, MAX_COMMANDS_PER_FRAME, decode_commands, encode_publication_push, encode_reply, encode_reply_into,
};
pub use payload::Payload;
pub use types::*;
