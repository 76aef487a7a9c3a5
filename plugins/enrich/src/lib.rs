//! `enrich`: validates JSON publications against a small schema, renames and
//! drops fields, and adds server fields.
//!
//! Steps, in order: validate (on the fields as the client sent them), then
//! `rename`, then `drop`, then the server fields, which overwrite whatever
//! the client put under those names (a client cannot forge them). A payload
//! that is not a JSON object is refused.
//!
//! The schema is a hand-checked subset of JSON Schema:
//! - `required`: top-level fields that must be present;
//! - `properties.NAME.type`: one of `string`, `number`, `integer`,
//!   `boolean`, `object`, `array`, `null`, or a list of them;
//! - `properties.NAME.max_length`: the most characters a string may have;
//! - `additional_properties = false`: refuses fields not in `properties`.
//!
//! No nesting, `$ref`, formats or patterns. Server fields:
//! `received_at_field` (Unix ms from the host clock) and `user_field` (the
//! publisher's user, NFKC-normalized, lowercased, whitespace collapsed;
//! left out for server-side publishes). Imports: `clock`.
//!
//! ```toml
//! config = { schema = { required = ["text"], additional_properties = false,
//!                       properties = { text = { type = "string", max_length = 2000 },
//!                                      msg = { type = "string" }, debug = { type = "boolean" },
//!                                      n = { type = ["integer", "null"] } } },
//!            rename = { msg = "text" }, drop = ["debug"],
//!            received_at_field = "received_at", user_field = "user", invalid_code = 400 }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_plugin_sdk::{Message, Plugin, PublishHook, PublishResult, clock};
use unicode_normalization::UnicodeNormalization as _;

/// The plugin config (the TOML `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default: accepts any object.
    pub schema: Schema,
    /// Old name to new name. Default none.
    pub rename: BTreeMap<String, String>,
    /// Fields removed. Default none.
    pub drop: Vec<String>,
    /// Where the receive time goes; empty turns it off. Default
    /// "received_at".
    pub received_at_field: String,
    /// Where the normalized user name goes; empty turns it off. Default
    /// "user".
    pub user_field: String,
    /// Code of a refused publish (400..=1999). Default 400.
    pub invalid_code: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            schema: Schema::default(),
            rename: BTreeMap::new(),
            drop: Vec::new(),
            received_at_field: "received_at".to_owned(),
            user_field: "user".to_owned(),
            invalid_code: 400,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schema {
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Property>,
    pub additional_properties: bool,
}

impl Default for Schema {
    fn default() -> Self {
        Schema { required: Vec::new(), properties: BTreeMap::new(), additional_properties: true }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Property {
    #[serde(rename = "type")]
    pub types: Types,
    pub max_length: Option<usize>,
}

/// `"string"` or `["string", "null"]`; empty allows any type.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "Value")]
pub struct Types(Vec<JsonType>);

impl TryFrom<Value> for Types {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let one = |v: &Value| -> Result<JsonType, String> {
            let name = v.as_str().ok_or_else(|| format!("type must be a string or a list of strings, not {v}"))?;
            JsonType::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| {
                format!("unknown type `{name}` (expected string, number, integer, boolean, object, array or null)")
            })
        };
        match &value {
            Value::Array(items) => items.iter().map(one).collect::<Result<_, _>>().map(Types),
            other => one(other).map(|t| Types(vec![t])),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    Null,
}

impl JsonType {
    const ALL: [JsonType; 7] = [
        JsonType::String,
        JsonType::Number,
        JsonType::Integer,
        JsonType::Boolean,
        JsonType::Object,
        JsonType::Array,
        JsonType::Null,
    ];

    /// Judged from the raw JSON text, which the parser already checked: its
    /// first byte tells the type, and an integer is a number without a
    /// fraction or exponent.
    fn admits(self, raw: &RawValue) -> bool {
        let text = raw.get();
        let first = text.as_bytes().first().copied().unwrap_or(b' ');
        let number = first == b'-' || first.is_ascii_digit();
        match self {
            JsonType::String => first == b'"',
            JsonType::Number => number,
            JsonType::Integer => number && !text.contains(['.', 'e', 'E']),
            JsonType::Boolean => first == b't' || first == b'f',
            JsonType::Object => first == b'{',
            JsonType::Array => first == b'[',
            JsonType::Null => first == b'n',
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::Null => "null",
        }
    }
}

#[derive(Debug)]
pub struct Enrich {
    config: Config,
}

/// Trimmed, NFKC, lowercased, inner whitespace runs as one space, control
/// characters removed.
pub fn normalize_user(user: &str) -> String {
    if user.is_ascii() { normalize_ascii_user(user) } else { normalize_any_user(user) }
}

fn normalize_any_user(user: &str) -> String {
    let folded: String = user.nfkc().flat_map(char::to_lowercase).filter(|c| !c.is_control()).collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`normalize_user`] for ASCII, which NFKC leaves as it is: the same
/// result without the normalizer's tables (most user names are ASCII).
/// Controls go first, as in the general path, so only spaces separate
/// words.
fn normalize_ascii_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    let mut space = false;
    for byte in user.bytes() {
        if byte.is_ascii_control() {
            continue;
        }
        if byte == b' ' {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(char::from(byte.to_ascii_lowercase()));
    }
    out
}

impl Enrich {
    pub fn from_config(json: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("enrich config: {e}"))?;
        if !(400..=1999).contains(&config.invalid_code) {
            return Err(format!("enrich config: invalid_code {} out of range (400..=1999)", config.invalid_code));
        }
        for (name, prop) in &config.schema.properties {
            if prop.max_length.is_some() && !prop.types.0.is_empty() && !prop.types.0.contains(&JsonType::String) {
                return Err(format!("enrich config: schema.properties.{name}: max_length needs type string"));
            }
        }
        Ok(Enrich { config })
    }

    /// Checks the object against the schema; the error names the field.
    pub fn validate(&self, object: &Object) -> Result<(), String> {
        let schema = &self.config.schema;
        for name in &schema.required {
            if !object.contains_key(name.as_str()) {
                return Err(format!("field {name} is required"));
            }
        }
        for (name, value) in object.iter() {
            let Some(prop) = schema.properties.get(name) else {
                if schema.additional_properties {
                    continue;
                }
                return Err(format!("field {name} is not allowed"));
            };
            let types = &prop.types.0;
            if !types.is_empty() && !types.iter().any(|t| t.admits(value)) {
                let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
                return Err(format!("field {name} must be {}", names.join(" or ")));
            }
            // A string has at most as many characters as its raw text has
            // bytes: only a long one is counted.
            if let Some(max) = prop.max_length
                && value.get().len() > max
                && let Some(chars) = string_chars(value)
                && chars > max
            {
                return Err(format!("field {name} is too long (max {max} characters)"));
            }
        }
        Ok(())
    }

    /// Validates and rewrites one payload. Only the top level is parsed,
    /// borrowing from `data`: nested values are carried as raw JSON text,
    /// and the output is written as `serde_json` writes the object (compact,
    /// names escaped its way, values as sent).
    pub fn transform(&self, data: &[u8], user: &str, now_ms: u64) -> Result<Vec<u8>, String> {
        // UTF-8 is checked once, up front, with SIMD; parsing a `str`, serde_json
        // then trusts it (from bytes it validates each raw value again with
        // `core::str::from_utf8`, a word at a time: ~8% of the call in wasm).
        let Ok(text) = simdutf8::basic::from_utf8(data) else {
            return Err("payload is not valid JSON".to_owned());
        };
        let mut object = match serde_json::from_str::<Object>(text) {
            Ok(object) => object,
            Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                return Err("payload must be a JSON object".to_owned());
            }
            Err(_) => return Err("payload is not valid JSON".to_owned()),
        };
        self.validate(&object)?;
        for (from, to) in &self.config.rename {
            if let Some(value) = object.shift_remove(from.as_str()) {
                object.insert(Cow::Borrowed(to.as_str()), value);
            }
        }
        for name in &self.config.drop {
            object.shift_remove(name.as_str());
        }
        // The server fields are written straight into the output, never made
        // into JSON values of their own. Their places: the receive time takes
        // the place of a field of its name, or goes last; the user field
        // always goes last, and a field of its name is removed first (a
        // client-sent value never survives, nor does the receive time when
        // both have one name).
        let user_field = self.config.user_field.as_str();
        if !user_field.is_empty() {
            object.shift_remove(user_field);
        }
        let at_field = self.config.received_at_field.as_str();
        let at_written = !at_field.is_empty() && at_field != user_field;
        let at_place = if at_written { object.position(at_field) } else { None };

        let mut out = Vec::with_capacity(data.len() + 64);
        let field = |out: &mut Vec<u8>, name: &str| {
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name).expect("writing to a Vec cannot fail");
            out.push(b':');
        };
        out.push(b'{');
        for (i, (name, value)) in object.iter().enumerate() {
            field(&mut out, name);
            if at_place == Some(i) {
                serde_json::to_writer(&mut out, &now_ms).expect("writing to a Vec cannot fail");
            } else {
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        if at_written && at_place.is_none() {
            field(&mut out, at_field);
            serde_json::to_writer(&mut out, &now_ms).expect("writing to a Vec cannot fail");
        }
        if !user_field.is_empty() && !user.is_empty() {
            field(&mut out, user_field);
            serde_json::to_writer(&mut out, &normalize_user(user)).expect("writing to a Vec cannot fail");
        }
        out.push(b'}');
        Ok(out)
    }
}

/// A top-level JSON object: its names in the order first seen, its values
/// unparsed; names borrow from the payload unless they hold escapes. A
/// repeated name keeps its first place and its last value, as a map insert
/// does.
///
/// Payloads have a handful of top-level fields, so they are kept in a vector
/// and found by comparing names: hashing each name with SipHash (an
/// `IndexMap`) was about a fifth of the plugin's time in wasm. Past
/// [`FEW_FIELDS`] names the object moves into an `IndexMap`, so that a
/// payload with thousands of fields still costs linear time.
#[derive(Debug)]
pub enum Object<'a> {
    Few(Vec<(Cow<'a, str>, &'a RawValue)>),
    Many(IndexMap<Cow<'a, str>, &'a RawValue>),
}

/// The most fields an [`Object`] searches one by one.
const FEW_FIELDS: usize = 16;

impl<'a> Object<'a> {
    pub fn contains_key(&self, name: &str) -> bool {
        match self {
            Object::Few(fields) => fields.iter().any(|(n, _)| n == name),
            Object::Many(map) => map.contains_key(name),
        }
    }

    /// Sets `name` to `value`: in place when present, else at the end.
    pub fn insert(&mut self, name: Cow<'a, str>, value: &'a RawValue) {
        match self {
            Object::Few(fields) => {
                if let Some(slot) = fields.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = value;
                } else if fields.len() < FEW_FIELDS {
                    fields.push((name, value));
                } else {
                    let mut map: IndexMap<_, _> = fields.drain(..).collect();
                    map.insert(name, value);
                    *self = Object::Many(map);
                }
            }
            Object::Many(map) => {
                map.insert(name, value);
            }
        }
    }

    /// Where `name` is in the order.
    pub fn position(&self, name: &str) -> Option<usize> {
        match self {
            Object::Few(fields) => fields.iter().position(|(n, _)| n == name),
            Object::Many(map) => map.get_index_of(name),
        }
    }

    /// Removes `name`, keeping the order of the others.
    pub fn shift_remove(&mut self, name: &str) -> Option<&'a RawValue> {
        match self {
            Object::Few(fields) => {
                let at = fields.iter().position(|(n, _)| n == name)?;
                Some(fields.remove(at).1)
            }
            Object::Many(map) => map.shift_remove(name),
        }
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        let (few, many) = match self {
            Object::Few(fields) => (Some(fields.iter()), None),
            Object::Many(map) => (None, Some(map.iter())),
        };
        let few = few.into_iter().flatten().map(|(n, v)| (n.as_ref(), *v));
        few.chain(many.into_iter().flatten().map(|(n, v)| (n.as_ref(), *v)))
    }
}

/// Deserialized with borrowed names (serde's own `Cow` always copies).
impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut object = Object::Few(Vec::with_capacity(map.size_hint().unwrap_or(8).min(FEW_FIELDS)));
                while let Some(Name(name)) = map.next_key()? {
                    object.insert(name, map.next_value()?);
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A field name, borrowed from the payload when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

/// The characters of a JSON string value, `None` for other values. Counted
/// on the raw text when it has no escapes (then it is the string itself).
fn string_chars(value: &RawValue) -> Option<usize> {
    let text = value.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(inner.chars().count());
    }
    serde_json::from_str::<String>(text).ok().map(|s| s.chars().count())
}

impl Plugin for Enrich {
    fn init(config: &str) -> Result<Self, String> {
        Enrich::from_config(config)
    }
}

impl PublishHook for Enrich {
    fn on_publish(&mut self, mut msg: Message) -> PublishResult {
        let now = if self.config.received_at_field.is_empty() { 0 } else { clock::now_ms() };
        match self.transform(&msg.data, msg.user(), now) {
            Ok(data) => {
                msg.data = data;
                if msg.content_type != "application/json" {
                    msg.content_type = "application/json".to_owned();
                }
                PublishResult::Replace(msg)
            }
            Err(reason) => PublishResult::deny(self.config.invalid_code, reason),
        }
    }
}

switchboard_plugin_sdk::export_plugin!(Enrich, hooks: [publish]);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_plugin_sdk::testing;

    use super::*;

    const CONFIG: &str = r#"{
        "schema": {
            "required": ["text"],
            "additional_properties": false,
            "properties": {
                "text": { "type": "string", "max_length": 5 },
                "msg": { "type": "string" },
                "debug": { "type": "boolean" },
                "n": { "type": ["integer", "null"] },
                "x": { "type": "number" },
                "any": {},
                "user": {},
                "received_at": {}
            }
        },
        "rename": { "msg": "message" },
        "drop": ["debug"]
    }"#;

    #[test]
    fn validation_table() {
        let e = Enrich::from_config(CONFIG).unwrap();
        let cases: &[(Value, Result<(), &str>)] = &[
            (json!({"text": "hi"}), Ok(())),
            (json!({"text": "héllo"}), Ok(())),
            (json!({"text": "hi", "n": 3, "x": 1.5, "any": [1], "debug": true}), Ok(())),
            (json!({"text": "hi", "n": null, "x": 2}), Ok(())),
            (json!({"text": "hi", "n": -3, "x": -2.5e-3}), Ok(())),
            (json!({"text": "\"é\""}), Ok(())),
            (json!({"text": "\"é\"\n!!"}), Err("field text is too long (max 5 characters)")),
            (json!({}), Err("field text is required")),
            (json!({"text": 1}), Err("field text must be string")),
            (json!({"text": "toolong"}), Err("field text is too long (max 5 characters)")),
            (json!({"text": "hi", "n": 1.5}), Err("field n must be integer or null")),
            (json!({"text": "hi", "x": "1"}), Err("field x must be number")),
            (json!({"text": "hi", "debug": "yes"}), Err("field debug must be boolean")),
            (json!({"text": "hi", "extra": 1}), Err("field extra is not allowed")),
        ];
        for (value, want) in cases {
            let got = e.validate(&serde_json::from_str(&value.to_string()).unwrap());
            assert_eq!(got, want.map_err(str::to_owned), "{value}");
        }
    }

    #[test]
    fn transform_renames_drops_and_adds_server_fields() {
        let e = Enrich::from_config(CONFIG).unwrap();
        let data = json!({"text": "hi", "msg": "m", "debug": true, "user": "forged", "received_at": 1}).to_string();
        let out: Value = serde_json::from_slice(&e.transform(data.as_bytes(), "  Ｊöe\t DOE ", 42).unwrap()).unwrap();
        assert_eq!(out, json!({"text": "hi", "message": "m", "user": "jöe doe", "received_at": 42}));
        // Server-side publishes get no user field, not even the forged one.
        let out: Value = serde_json::from_slice(&e.transform(data.as_bytes(), "", 42).unwrap()).unwrap();
        assert_eq!(out, json!({"text": "hi", "message": "m", "received_at": 42}));
        assert_eq!(e.transform(b"[1]", "a", 0), Err("payload must be a JSON object".to_owned()));
        assert_eq!(e.transform(b"{nope", "a", 0), Err("payload is not valid JSON".to_owned()));
        // Not UTF-8, in a string and outside one (checked before parsing).
        assert_eq!(e.transform(b"{\"text\":\"\xff\"}", "a", 0), Err("payload is not valid JSON".to_owned()));
        assert_eq!(e.transform(b"{\"text\":\"hi\"}\xc3", "a", 0), Err("payload is not valid JSON".to_owned()));
        // Nested values and escapes pass through as they were sent.
        let nested = br#"{"text":"a\"b","deep":{"x":[1,2.5,{"y":null}]},"e":1e3}"#;
        let open = Enrich::from_config("{}").unwrap();
        let out = open.transform(nested, "", 7).unwrap();
        assert_eq!(out, br#"{"text":"a\"b","deep":{"x":[1,2.5,{"y":null}]},"e":1e3,"received_at":7}"#);
    }

    fn raw(json: String) -> Box<RawValue> {
        RawValue::from_string(json).expect("server fields are valid JSON")
    }

    /// The rewrite as it was before names and values were borrowed: owned
    /// map, then `serde_json::to_vec`. The borrowed one must write the same
    /// bytes.
    fn reference(e: &Enrich, data: &[u8], user: &str, now_ms: u64) -> Vec<u8> {
        let mut object: IndexMap<String, Box<RawValue>> = serde_json::from_slice(data).unwrap();
        for (from, to) in &e.config.rename {
            if let Some(value) = object.shift_remove(from) {
                object.insert(to.clone(), value);
            }
        }
        for name in &e.config.drop {
            object.shift_remove(name);
        }
        if !e.config.received_at_field.is_empty() {
            object.insert(e.config.received_at_field.clone(), raw(now_ms.to_string()));
        }
        if !e.config.user_field.is_empty() {
            object.shift_remove(&e.config.user_field);
            if !user.is_empty() {
                object.insert(e.config.user_field.clone(), raw(Value::from(normalize_user(user)).to_string()));
            }
        }
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn output_is_byte_for_byte_the_owned_rewrite() {
        let configs = [
            "{}",
            r#"{ "rename": { "msg": "text", "a": "b" }, "drop": ["debug"] }"#,
            r#"{ "rename": { "msg": "user" }, "received_at_field": "", "user_field": "who" }"#,
            r#"{ "received_at_field": "user" }"#,
        ];
        // More fields than an `Object` searches one by one, with names
        // repeated before and after it moves into a map.
        let mut many = String::from(r#"{"a":1,"msg":"m","debug":true"#);
        for i in 0..40 {
            many.push_str(&format!(r#","f{i}":{i}"#));
            if i == 20 {
                many.push_str(r#","a":3,"user":"forged","msg":"again""#);
            }
        }
        many.push_str(r#","f3":"last","received_at":0}"#);
        let payloads: &[&[u8]] = &[
            many.as_bytes(),
            br#"{"f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9,"f10":10,"f11":11,"f12":12,"f13":13,"f14":14,"f15":15,"msg":"sixteenth"}"#,
            b"{}",
            br#"{"msg":"hi","room":"lobby","n":7}"#,
            b" { \"msg\" : \"a\\\"b\\u00e9\" ,\n \"debug\":true , \"n\": 1e3 } ",
            br#"{"a":1,"b":2,"a":3,"text":"x","user":"forged","received_at":0}"#,
            br#"{"m\u0073g":"escaped name","tab\tname":1,"deep":{"x":[1,{"y":null}]},"who":"w"}"#,
            "{\"émoji 😀\":\"ü\",\"msg\":[]}".as_bytes(),
            &switchboard_plugin_sdk::testing::chat_message_1kib(),
        ];
        for config in configs {
            let e = Enrich::from_config(config).unwrap();
            for &data in payloads {
                for user in ["", "  Ｊöe\t DOE "] {
                    let got = e.transform(data, user, 1_700_000_000_123).unwrap();
                    let want = reference(&e, data, user, 1_700_000_000_123);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want),
                        "{config} on {}",
                        String::from_utf8_lossy(data)
                    );
                }
            }
        }
    }

    #[test]
    fn normalizes_user_names() {
        for (raw, want) in [
            ("Alice", "alice"),
            ("  Bob  Smith ", "bob smith"),
            ("ＡＬＩＣＥ", "alice"),
            ("e\u{301}", "é"),
            ("a\u{7}b", "ab"),
        ] {
            assert_eq!(normalize_user(raw), want, "{raw:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_ascii_shortcut_normalizes_as_nfkc_does(user in "[ -~\\t\\n\\r\\x00-\\x1f\\x7f]{0,24}") {
            proptest::prop_assert_eq!(normalize_ascii_user(&user), normalize_any_user(&user));
        }
    }

    #[test]
    fn publish_uses_the_host_clock_and_denies_invalid() {
        testing::reset();
        let mut e = Enrich::from_config(r#"{ "schema": { "required": ["t"] }, "invalid_code": 422 }"#).unwrap();
        let msg = Message::new("c", br#"{"t":1}"#.to_vec()).with_publisher("Alice", "c1");
        let PublishResult::Replace(out) = e.on_publish(msg) else { panic!("expected replace") };
        let want = json!({"t": 1, "received_at": testing::START_MS, "user": "alice"});
        assert_eq!(serde_json::from_slice::<Value>(&out.data).unwrap(), want);
        assert_eq!(e.on_publish(Message::new("c", b"{}".to_vec())), PublishResult::deny(422, "field t is required"));
    }

    #[test]
    fn config_is_validated() {
        for (json, want) in [
            (r#"{ "schema": { "properties": { "a": { "type": "int" } } } }"#, "unknown type `int`"),
            (
                r#"{ "schema": { "properties": { "a": { "type": "number", "max_length": 3 } } } }"#,
                "max_length needs type string",
            ),
            (r#"{ "invalid_code": 99 }"#, "invalid_code 99 out of range"),
            (r#"{ "schema": { "requird": [] } }"#, "unknown field `requird`"),
        ] {
            let error = Enrich::from_config(json).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
    }
}
