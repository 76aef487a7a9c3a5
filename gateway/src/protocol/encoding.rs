//! `Encoding`: the per-connection choice between the JSON and Protobuf
//! codecs, the one seam the session and the fan-out encode through.

use bytes::Bytes;

use super::json::{self, DecodeError};
use super::protobuf;
use super::types::{Command, Publication, Reply};

/// How one connection's frames are encoded. Chosen by the transport at
/// connect time (the `centrifuge-protobuf` WebSocket subprotocol) and fixed
/// for the connection's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Newline-delimited JSON (text frames).
    #[default]
    Json,
    /// Varint-length-delimited Protobuf (binary frames).
    Protobuf,
}

/// Why a reply could not be encoded for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The JSON protocol embeds payloads verbatim and so cannot carry bytes
    /// that are not JSON; the connection ends with 3506.
    #[error("binary payload cannot travel in the json protocol")]
    BinaryPayload,
}

impl Encoding {
    /// Every encoding, in [`Encoding::index`] order.
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

    /// A dense index, for per-encoding caches.
    pub fn index(self) -> usize {
        match self {
            Self::Json => 0,
            Self::Protobuf => 1,
        }
    }

    /// Whether frames are binary (Protobuf) rather than text (JSON).
    pub fn is_binary(self) -> bool {
        self == Self::Protobuf
    }

    pub fn decode_commands(self, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
        match self {
            Self::Json => json::decode_commands(frame),
            Self::Protobuf => protobuf::decode_commands(frame),
        }
    }

    /// One reply, ready to queue: a JSON line, or a length-prefixed message.
    pub fn encode_reply(self, reply: &Reply) -> Result<Bytes, EncodeError> {
        match self {
            Self::Json => json::encode_reply(reply),
            Self::Protobuf => Ok(protobuf::encode_reply(reply)),
        }
    }

    /// The `pub` push, encoded once per encoding and shared by subscribers.
    pub fn encode_publication_push(self, channel: &str, publication: &Publication) -> Result<Bytes, EncodeError> {
        match self {
            Self::Json => json::encode_publication_push(channel, publication),
            Self::Protobuf => Ok(protobuf::encode_publication_push(channel, publication)),
        }
    }

    /// The server ping: `{}` in JSON, the empty `Reply` (one `0x00` length
    /// byte) in Protobuf.
    pub fn ping(self) -> Bytes {
        match self {
            Self::Json => Bytes::from_static(b"{}"),
            Self::Protobuf => Bytes::from_static(protobuf::PING),
        }
    }
}
