//! `Payload`: an opaque `bytes` field (`data`, `info`) shared without copying.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The bytes of a `data` or `info` field.
///
/// The JSON protocol embeds these bytes verbatim, so it can carry only JSON:
/// decoding JSON validates them and removes `\n` (the frame delimiter; inside
/// valid JSON a newline can only be insignificant whitespace, so removing it
/// never changes the value). The Protobuf protocol carries any bytes
/// untouched; [`Payload::from_binary`] records once whether they are JSON so
/// that fan-out never has to look again. Cloning shares the buffer.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload {
    bytes: Bytes,
    /// False for bytes that are not a JSON document: they can only travel to
    /// Protobuf clients (a JSON client receiving them is closed with 3506).
    /// `Default` (empty) counts as binary: it is absent data, never embedded.
    json: bool,
}

impl Payload {
    /// Wraps bytes that are already known to be newline-free JSON.
    pub fn from_json_unchecked(bytes: Bytes) -> Self {
        Self { bytes, json: true }
    }

    /// Validates `text` as JSON and strips its newlines.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let _: &RawValue = serde_json::from_str(text)?;
        Ok(Self::strip(text))
    }

    /// Wraps arbitrary bytes (a Protobuf `bytes` field, API `b64data`)
    /// untouched, noting whether they are a JSON document.
    pub fn from_binary(bytes: Bytes) -> Self {
        let json = std::str::from_utf8(&bytes).is_ok_and(|t| serde_json::from_str::<&RawValue>(t).is_ok());
        Self { bytes, json }
    }

    fn strip(text: &str) -> Self {
        let bytes = if text.contains(['\n', '\r']) {
            Bytes::from(text.replace(['\n', '\r'], ""))
        } else {
            Bytes::copy_from_slice(text.as_bytes())
        };
        Self { bytes, json: true }
    }

    /// Whether the JSON protocol can embed these bytes.
    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.bytes) {
            Ok(s) if self.json => write!(f, "Payload({s})"),
            _ => write!(f, "Payload({} binary bytes)", self.bytes.len()),
        }
    }
}

/// The serializer error for a binary payload; the JSON codec maps it to
/// [`super::EncodeError::BinaryPayload`].
pub(super) const BINARY_IN_JSON: &str = "binary payload in the json protocol";

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if !self.json {
            return Err(S::Error::custom(BINARY_IN_JSON));
        }
        let text = std::str::from_utf8(&self.bytes).map_err(S::Error::custom)?;
        if text.contains(['\n', '\r']) {
            // JSON that arrived as binary keeps its newlines for Protobuf
            // clients; the line-delimited JSON protocol gets them removed.
            let stripped = text.replace(['\n', '\r'], "");
            let raw: &RawValue = serde_json::from_str(&stripped).map_err(S::Error::custom)?;
            return raw.serialize(serializer);
        }
        // Borrowed parse: validates without allocating, then embeds verbatim.
        let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        Ok(Self::strip(raw.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_newlines_and_round_trips() {
        let p = Payload::from_json("{\n \"a\": [1,\n2]\n}").unwrap();
        assert_eq!(p.as_bytes().as_ref(), b"{ \"a\": [1,2]}");
        assert_eq!(serde_json::to_string(&p).unwrap(), "{ \"a\": [1,2]}");
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(Payload::from_json("{nope").is_err());
    }

    #[test]
    fn binary_bytes_stay_untouched_and_know_whether_they_are_json() {
        let p = Payload::from_binary(Bytes::from_static(b"{\n\"a\": 1}"));
        assert!(p.is_json());
        assert_eq!(p.as_bytes().as_ref(), b"{\n\"a\": 1}");
        assert_eq!(serde_json::to_string(&p).unwrap(), "{\"a\": 1}");
        let raw = Payload::from_binary(Bytes::from_static(&[0, 159, 146, 150]));
        assert!(!raw.is_json());
        assert!(serde_json::to_string(&raw).is_err());
        assert!(!Payload::from_binary(Bytes::from_static(b"not json")).is_json());
    }
}
