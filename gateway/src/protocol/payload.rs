//! `Payload`: an opaque `bytes` field (`data`, `info`) shared without copying.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The bytes of a `data` or `info` field.
///
/// In the JSON protocol these bytes are a JSON document embedded verbatim.
/// Decoding validates them and removes `\n` (the frame delimiter; inside
/// valid JSON a newline can only be insignificant whitespace, so removing it
/// never changes the value). Cloning shares the buffer.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Bytes);

impl Payload {
    /// Wraps bytes that are already known to be newline-free JSON.
    pub fn from_json_unchecked(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// Validates `text` as JSON and strips its newlines.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let _: &RawValue = serde_json::from_str(text)?;
        Ok(Self::strip(text))
    }

    fn strip(text: &str) -> Self {
        if text.contains(['\n', '\r']) {
            Self(Bytes::from(text.replace(['\n', '\r'], "")))
        } else {
            Self(Bytes::copy_from_slice(text.as_bytes()))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "Payload({s})"),
            Err(_) => write!(f, "Payload({} bytes)", self.0.len()),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let text = std::str::from_utf8(&self.0).map_err(S::Error::custom)?;
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
}
