//! `Encoding`: the per-connection choice between the JSON and Protobuf
//! codecs, the one seam the session and the fan-out encode through.

use bytes::Bytes;

use super::Payload;
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

    /// The `pub` push for a subscription that negotiated delta compression:
    /// the full data when `delta` is `None`, else the fossil delta with
    /// `delta: true`. Encoded once per publication and form.
    pub fn encode_delta_publication_push(
        self,
        channel: &str,
        publication: &Publication,
        delta: Option<&[u8]>,
    ) -> Result<Bytes, EncodeError> {
        match self {
            Self::Json => json::encode_delta_publication_push(channel, publication, delta),
            Self::Protobuf => Ok(protobuf::encode_delta_publication_push(channel, publication, delta)),
        }
    }

    /// Whether a full publication for a delta subscription differs from the
    /// plain `pub` push. JSON wraps the data in a string then; Protobuf
    /// carries bytes either way, so one encoding serves both.
    pub fn delta_changes_full_form(self) -> bool {
        self == Self::Json
    }

    /// A publication's data as a delta subscription of this encoding sees it
    /// (recovered publications in a subscribe reply): a JSON string holding
    /// the data's text in JSON, untouched in Protobuf. `None` when the JSON
    /// protocol cannot carry it (binary data).
    pub fn delta_full_data(self, data: &Payload) -> Option<Payload> {
        match self {
            Self::Protobuf => Some(data.clone()),
            Self::Json if data.is_json() => {
                let text = std::str::from_utf8(data.as_bytes()).ok()?;
                let quoted = serde_json::to_vec(text).ok()?;
                Some(Payload::from_json_unchecked(Bytes::from(quoted)))
            }
            Self::Json => None,
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
