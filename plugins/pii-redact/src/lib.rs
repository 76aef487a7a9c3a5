//! `pii-redact`: replaces personal data in publications with
//! `[redacted:KIND]`, for KIND in `email`, `phone`, `iban`, `card`, `ip`.
//!
//! JSON payloads are rewritten in their string values (keys, numbers and
//! key order stay as they are); other UTF-8 payloads as one text when
//! `scan_text` is on. A field path is the dotted chain of object keys
//! (arrays add no segment); `*` in a pattern matches one segment, and a
//! pattern covers everything below it. `scan_fields` (the allow list), when
//! not empty, limits scanning to those fields; `skip_fields` (the deny list)
//! are never scanned.
//!
//! Detection: regexes find candidates, then checks keep only the real ones:
//! - email: `local@domain.tld`, TLD of 2+ letters (`user@localhost` stays);
//! - iban: country, 2 check digits, 11..30 more (spaces allowed), total
//!   15..34, ISO 13616 mod-97 = 1; upper case only;
//! - card: 13..19 digits (spaces or dashes allowed) starting with 2..6, and
//!   a valid Luhn checksum;
//! - ip: IPv4 with octets 0..255 and no leading zeros, not part of a longer
//!   dotted run (`1.2.3.4.5` is a version) nor after a letter (`v1.2.3.4`);
//!   IPv6 as parsed by std with at least two non-empty groups (`std::vec`
//!   and `12:30:45` stay, `::1` too);
//! - phone: 7..15 digits with `+`, or a leading `0` or `(`, or at least
//!   three groups; plain digit runs (ids, timestamps) and dates stay.
//!
//! A candidate that fails a check is retried shorter, cut at a separator,
//! so trailing digits do not hide a real number. Imports: none.
//!
//! ```toml
//! config = { patterns = ["email", "phone", "iban", "card", "ip"],
//!            scan_fields = [], skip_fields = ["id", "meta.*"], scan_text = true }
//! ```

use std::net::Ipv6Addr;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use switchboard_plugin_sdk::{Message, Plugin, PublishHook, PublishResult};

/// The plugin config (the TOML `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kinds to redact. Default all five.
    pub patterns: Vec<Kind>,
    /// Only these field paths are scanned; empty means all. Default empty.
    pub scan_fields: Vec<String>,
    /// Field paths never scanned. Default none.
    pub skip_fields: Vec<String>,
    /// Scans non-JSON UTF-8 payloads as one text. Default true.
    pub scan_text: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { patterns: Kind::ALL.to_vec(), scan_fields: Vec::new(), skip_fields: Vec::new(), scan_text: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Email,
    Phone,
    Iban,
    Card,
    Ip,
}

impl Kind {
    /// Also the order detectors run in: an email or IBAN may hold digits a
    /// phone detector would take, and a card number looks like a phone.
    const ALL: [Kind; 5] = [Kind::Email, Kind::Iban, Kind::Card, Kind::Ip, Kind::Phone];

    fn token(self) -> &'static str {
        match self {
            Kind::Email => "[redacted:email]",
            Kind::Phone => "[redacted:phone]",
            Kind::Iban => "[redacted:iban]",
            Kind::Card => "[redacted:card]",
            Kind::Ip => "[redacted:ip]",
        }
    }
}

#[derive(Debug)]
struct Detector {
    kind: Kind,
    regex: Regex,
    check: fn(&str) -> bool,
    /// Whether a failed candidate is retried cut at a separator: for cards
    /// and IBANs, whose length is fixed by the checksum; a phone cut short
    /// would take half of anything long.
    shrink: bool,
    /// Characters that may not touch the match (besides alphanumerics).
    fence: &'static [char],
}

#[derive(Debug)]
pub struct Redactor {
    detectors: Vec<Detector>,
    kinds: Vec<Kind>,
    scan: Vec<Vec<String>>,
    skip: Vec<Vec<String>>,
    scan_text: bool,
}

fn pattern(kind: Kind) -> (&'static str, fn(&str) -> bool, &'static [char]) {
    match kind {
        Kind::Email => (
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
            |_| true,
            &['@'],
        ),
        Kind::Iban => (r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{11,40}", iban_ok, &[]),
        Kind::Card => (r"[0-9][0-9 -]{11,40}[0-9]", card_ok, &['.', ',']),
        Kind::Ip => (r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", ip_ok, &['.', ':']),
        Kind::Phone => (r"\+?\(?[0-9][0-9 ().-]{5,}[0-9]", phone_ok, &['.', '+', '-']),
    }
}

fn detector(kind: Kind) -> Detector {
    let (pattern, check, fence) = pattern(kind);
    let shrink = matches!(kind, Kind::Iban | Kind::Card);
    Detector { kind, regex: Regex::new(pattern).expect("detector regexes are valid"), check, shrink, fence }
}

/// ISO 13616: move the first four characters to the end, letters count as
/// 10..35, the number mod 97 must be 1.
pub fn iban_ok(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let value =
            if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b.to_ascii_uppercase() - b'A') + 10 };
        rem = if value >= 10 { (rem * 100 + value) % 97 } else { (rem * 10 + value) % 97 };
    }
    rem == 1
}

/// Luhn over the digits, 13..19 of them, first digit 2..6.
pub fn card_ok(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || !(2..=6).contains(&digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

pub fn ip_ok(candidate: &str) -> bool {
    if candidate.contains(':') {
        let groups = candidate.split(':').filter(|g| !g.is_empty()).count();
        return groups >= 2 && candidate.parse::<Ipv6Addr>().is_ok();
    }
    let octets: Vec<&str> = candidate.split('.').collect();
    octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && (o.len() == 1 || !o.starts_with('0')) && o.parse::<u8>().is_ok())
}

pub fn phone_ok(candidate: &str) -> bool {
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    if candidate.starts_with('+') {
        return digits >= 8;
    }
    let groups: Vec<&str> = candidate.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let date = matches!(lens.as_slice(), [4, 1..=2, 1..=2] | [1..=2, 1..=2, 4]) && !candidate.contains(' ');
    if date {
        return false;
    }
    // Dotted runs are versions unless the groups are long (`555.123.4567`)
    // or five pairs and more (`06.12.34.56.78`).
    if candidate.contains('.') && !(lens.iter().all(|&l| l >= 3) || (groups.len() >= 5 && lens.iter().all(|&l| l >= 2)))
    {
        return false;
    }
    candidate.starts_with('0') || candidate.starts_with('(') || groups.len() >= 3
}

/// What detectors need at least: an email an `@`; an IBAN two capitals
/// then two digits; a card 13 digits, a phone 7; an IPv4 a digit, a dot and
/// a digit; an IPv6 two colons in one run of hex digits, colons and dots.
#[derive(Debug, Default)]
struct Hints {
    escape: bool,
    at: bool,
    digits: usize,
    dotted_digit: bool,
    iban_head: bool,
    colon_run: bool,
}

impl Hints {
    fn of(b: &[u8]) -> Hints {
        let mut h = Hints::default();
        let mut colons = 0;
        for (i, &c) in b.iter().enumerate() {
            let before = |n: usize| if i >= n { b[i - n] } else { b' ' };
            if c.is_ascii_digit() {
                h.digits += 1;
                if before(1).is_ascii_digit() && before(2).is_ascii_uppercase() && before(3).is_ascii_uppercase() {
                    h.iban_head = true;
                }
                if before(1) == b'.' && before(2).is_ascii_digit() {
                    h.dotted_digit = true;
                }
            }
            match c {
                b'@' => h.at = true,
                b'u' if before(1) == b'\\' => h.escape = true,
                _ => {}
            }
            if c == b':' {
                colons += 1;
                h.colon_run |= colons >= 2;
            } else if !(c.is_ascii_hexdigit() || c == b'.') {
                colons = 0;
            }
        }
        h
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Redactor {
    pub fn from_config(json: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("pii-redact config: {e}"))?;
        let split = |list: &[String], key: &str| -> Result<Vec<Vec<String>>, String> {
            list.iter()
                .enumerate()
                .map(|(i, path)| {
                    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                    if segments.iter().any(String::is_empty) {
                        Err(format!("pii-redact config: {key}[{i}]: empty segment in {path:?}"))
                    } else {
                        Ok(segments)
                    }
                })
                .collect()
        };
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| config.patterns.contains(k)).collect();
        Ok(Redactor {
            detectors: kinds.iter().copied().map(detector).collect(),
            kinds,
            scan: split(&config.scan_fields, "scan_fields")?,
            skip: split(&config.skip_fields, "skip_fields")?,
            scan_text: config.scan_text,
        })
    }

    /// The text with every detected value replaced; `None` when nothing was.
    pub fn redact_text(&self, text: &str) -> Option<String> {
        if !text.bytes().any(|b| b.is_ascii_digit() || b == b'@' || b == b':') {
            return None;
        }
        let mut current: Option<String> = None;
        for detector in &self.detectors {
            let source = current.as_deref().unwrap_or(text);
            if let Some(next) = self.apply(detector, source) {
                current = Some(next);
            }
        }
        current
    }

    fn apply(&self, d: &Detector, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        let fenced = |c: Option<char>| c.is_some_and(|c| is_word(c) || d.fence.contains(&c));
        while let Some(m) = d.regex.find_at(text, at) {
            let start = m.start();
            // A run glued to a word is not a value of its own, and a run
            // that failed is not searched again from its middle.
            if fenced(text[..start].chars().next_back()) {
                at = m.end();
                continue;
            }
            // Longest first: the whole match, then cut at each separator.
            let span = m.as_str();
            let ends = std::iter::once(span.len()).chain(
                span.char_indices()
                    .filter(|_| d.shrink)
                    .rev()
                    .filter(|&(i, c)| !is_word(c) && i > 0 && is_word(span[..i].chars().next_back().unwrap_or(' ')))
                    .map(|(i, _)| i),
            );
            let mut hit = None;
            for len in ends {
                let end = start + len;
                let after = text[end..].chars().next();
                // A dot followed by a digit continues a number.
                let continued = after == Some('.') && text[end + 1..].starts_with(|c: char| c.is_ascii_digit());
                let blocked = after.is_some_and(|c| is_word(c) || (d.fence.contains(&c) && c != '.')) || continued;
                if !blocked && (d.check)(&text[start..end]) {
                    hit = Some(end);
                    break;
                }
            }
            match hit {
                Some(end) => {
                    out.push_str(&text[copied..start]);
                    out.push_str(d.kind.token());
                    copied = end;
                    at = end;
                }
                None => at = m.end(),
            }
            if at >= text.len() {
                break;
            }
        }
        if copied == 0 {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }

    fn wanted(&self, path: &[&str]) -> bool {
        let covers = |pattern: &Vec<String>| {
            pattern.len() <= path.len() && pattern.iter().zip(path).all(|(p, s)| p == "*" || p == s)
        };
        (self.scan.is_empty() || self.scan.iter().any(covers)) && !self.skip.iter().any(covers)
    }

    fn walk<'a>(&self, value: &'a mut Value, path: &mut Vec<&'a str>, changed: &mut bool) {
        match value {
            Value::String(s) => {
                if self.wanted(path)
                    && let Some(redacted) = self.redact_text(s)
                {
                    *s = redacted;
                    *changed = true;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, path, changed);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(key.as_str());
                    self.walk(item, path, changed);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Whether no detector can fire anywhere in the payload, from one pass
    /// over the raw bytes for what each kind cannot do without (see
    /// [`Hints`]). A candidate in a decoded JSON string is also one in the
    /// raw text, since no character the detectors look for needs escaping;
    /// only `\uXXXX` escapes could hide one, so they disable the shortcut.
    fn surely_clean(&self, data: &[u8]) -> bool {
        let h = Hints::of(data);
        !h.escape
            && !self.kinds.iter().any(|kind| match kind {
                Kind::Email => h.at,
                Kind::Iban => h.iban_head,
                Kind::Card => h.digits >= 13,
                Kind::Ip => h.dotted_digit || h.colon_run,
                Kind::Phone => h.digits >= 7,
            })
    }

    /// The rewritten payload, `None` when nothing was redacted.
    pub fn redact_payload(&self, msg: &Message) -> Option<Vec<u8>> {
        if self.surely_clean(&msg.data) {
            return None;
        }
        if msg.is_json()
            && let Ok(mut value) = serde_json::from_slice::<Value>(&msg.data)
        {
            let mut changed = false;
            self.walk(&mut value, &mut Vec::new(), &mut changed);
            return changed.then(|| value.to_string().into_bytes());
        }
        if !self.scan_text {
            return None;
        }
        let text = std::str::from_utf8(&msg.data).ok()?;
        self.redact_text(text).map(String::into_bytes)
    }
}

impl Plugin for Redactor {
    fn init(config: &str) -> Result<Self, String> {
        Redactor::from_config(config)
    }
}

impl PublishHook for Redactor {
    fn on_publish(&mut self, mut msg: Message) -> PublishResult {
        match self.redact_payload(&msg) {
            Some(data) => {
                msg.data = data;
                PublishResult::Replace(msg)
            }
            None => PublishResult::Pass,
        }
    }
}

switchboard_plugin_sdk::export_plugin!(Redactor, hooks: [publish]);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn all() -> Redactor {
        Redactor::from_config("{}").unwrap()
    }

    /// Every case is (input, expected output); an unchanged output is a
    /// negative case.
    const TABLE: &[(&str, &str)] = &[
        // email
        ("mail alice@example.com now", "mail [redacted:email] now"),
        ("<first.last+tag@mail.example.co.uk>", "<[redacted:email]>"),
        ("a@b.io", "[redacted:email]"),
        ("user@localhost", "user@localhost"),
        ("@handle and a@b", "@handle and a@b"),
        ("x@y.c", "x@y.c"),
        // iban
        ("IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN [redacted:iban], thanks"),
        ("DE89370400440532013000", "[redacted:iban]"),
        ("GB82 WEST 1234 5698 7654 32", "[redacted:iban]"),
        ("FR1420041010050500013M02606", "[redacted:iban]"),
        ("DE89 3704 0044 0532 0130 00 IS MINE", "[redacted:iban] IS MINE"),
        ("DE88 3704 0044 0532 0130 00", "DE88 3704 0044 0532 0130 00"),
        ("DE00370400440532013000", "DE00370400440532013000"),
        ("XX12 ABCD", "XX12 ABCD"),
        // card (Luhn)
        ("card 4111 1111 1111 1111 exp", "card [redacted:card] exp"),
        ("4111-1111-1111-1111", "[redacted:card]"),
        ("5500005555555559", "[redacted:card]"),
        ("amex 378282246310005", "amex [redacted:card]"),
        ("4111111111111111 12", "[redacted:card] 12"),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),
        ("1111 1111 1111 1117", "1111 1111 1111 1117"),
        ("id 4111111111111111111111", "id 4111111111111111111111"),
        // ip
        ("from 192.168.1.20 port", "from [redacted:ip] port"),
        ("8.8.8.8", "[redacted:ip]"),
        ("[10.0.0.1]:80", "[[redacted:ip]]:80"),
        ("v1.2.3.4", "v1.2.3.4"),
        ("version 1.2.3", "version 1.2.3"),
        ("1.2.3.4.5", "1.2.3.4.5"),
        ("256.1.1.1", "256.1.1.1"),
        ("01.02.03.04", "01.02.03.04"),
        ("ip 2001:db8::8a2e:370:7334 x", "ip [redacted:ip] x"),
        ("fe80::1ff:fe23:4567:890a", "[redacted:ip]"),
        ("::ffff:192.0.2.128", "[redacted:ip]"),
        ("std::vector", "std::vector"),
        ("at 12:30:45", "at 12:30:45"),
        ("mac 00:1A:2B:3C:4D:5E", "mac 00:1A:2B:3C:4D:5E"),
        ("::1", "::1"),
        // phone
        ("call +49 30 1234567 now", "call [redacted:phone] now"),
        ("+1 (555) 123-4567", "[redacted:phone]"),
        ("(555) 123-4567", "[redacted:phone]"),
        ("555-123-4567", "[redacted:phone]"),
        ("020 7946 0958", "[redacted:phone]"),
        ("555.123.4567", "[redacted:phone]"),
        ("06.12.34.56.78", "[redacted:phone]"),
        ("call 555-123-4567 or 555-987-6543", "call [redacted:phone] or [redacted:phone]"),
        ("ts 1700000000123", "ts 1700000000123"),
        ("order 12345", "order 12345"),
        ("on 2024-01-15", "on 2024-01-15"),
        ("15/01/2024", "15/01/2024"),
        ("1000-2000", "1000-2000"),
        ("+123", "+123"),
        // mixed, and nothing to do
        ("a@b.io or +44 20 7946 0958", "[redacted:email] or [redacted:phone]"),
        ("héllo wörld", "héllo wörld"),
        ("", ""),
    ];

    #[test]
    fn detection_table() {
        let r = all();
        let mut failures = Vec::new();
        for (input, want) in TABLE {
            let got = r.redact_text(input).unwrap_or_else(|| (*input).to_owned());
            if got != *want {
                failures.push(format!("{input:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), TABLE.len(), failures.join("\n"));
    }

    #[test]
    fn checksums() {
        assert!(iban_ok("GB82WEST12345698765432"));
        assert!(!iban_ok("GB82WEST12345698765433"));
        assert!(card_ok("4111111111111111"));
        assert!(!card_ok("4111111111111112"));
        assert!(!card_ok("0000000000000000"), "first digit out of range");
    }

    #[test]
    fn only_enabled_patterns() {
        let r = Redactor::from_config(r#"{ "patterns": ["email"] }"#).unwrap();
        assert_eq!(r.redact_text("a@b.io 8.8.8.8").as_deref(), Some("[redacted:email] 8.8.8.8"));
        assert_eq!(r.redact_text("8.8.8.8"), None);
    }

    #[test]
    fn json_fields_allow_and_deny_lists() {
        let payload = json!({
            "id": "alice@example.com",
            "text": "mail alice@example.com",
            "n": 4111111111111111u64,
            "user": { "email": "bob@example.com", "note": "8.8.8.8" },
            "list": ["+49 30 1234567", { "ip": "10.0.0.1" }],
            "meta": { "src": "1.1.1.1" }
        });
        let msg = Message::new("c", payload.to_string().into_bytes());
        let redact = |config: &str| -> Value {
            let r = Redactor::from_config(config).unwrap();
            serde_json::from_slice(&r.redact_payload(&msg).unwrap_or_else(|| msg.data.clone())).unwrap()
        };
        let out = redact(r#"{ "skip_fields": ["id", "meta.*"] }"#);
        assert_eq!(
            out,
            json!({
                "id": "alice@example.com",
                "text": "mail [redacted:email]",
                "n": 4111111111111111u64,
                "user": { "email": "[redacted:email]", "note": "[redacted:ip]" },
                "list": ["[redacted:phone]", { "ip": "[redacted:ip]" }],
                "meta": { "src": "1.1.1.1" }
            })
        );
        // Key order survives.
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "text", "n", "user", "list", "meta"]);
        let out = redact(r#"{ "scan_fields": ["user"], "skip_fields": ["user.note"] }"#);
        assert_eq!(out["user"], json!({ "email": "[redacted:email]", "note": "8.8.8.8" }));
        assert_eq!(out["text"], "mail alice@example.com");
        assert_eq!(out["list"][1]["ip"], "10.0.0.1");
        let out = redact(r#"{ "scan_fields": ["ip"] }"#);
        assert_eq!(out["list"][1]["ip"], "10.0.0.1", "arrays add no segment: the path is `list.ip`");
        let out = redact(r#"{ "scan_fields": ["*.ip"] }"#);
        assert_eq!(out["list"][1]["ip"], "[redacted:ip]");
        assert_eq!(out["user"]["note"], "8.8.8.8");
        let out = redact(r#"{ "scan_fields": ["list.ip"] }"#);
        assert_eq!(out["list"][1]["ip"], "[redacted:ip]");
    }

    #[test]
    fn publish_replaces_or_passes() {
        let mut r = all();
        let out = r.on_publish(Message::new("c", br#"{"t":"a@b.io"}"#.to_vec()));
        assert_eq!(out, PublishResult::Replace(Message::new("c", br#"{"t":"[redacted:email]"}"#.to_vec())));
        assert_eq!(r.on_publish(Message::new("c", br#"{"t":"hi"}"#.to_vec())), PublishResult::Pass);
        let mut text = Message::new("c", b"call 020 7946 0958".to_vec());
        text.content_type = "text/plain".into();
        let PublishResult::Replace(out) = r.on_publish(text.clone()) else { panic!("expected replace") };
        assert_eq!(out.data, b"call [redacted:phone]");
        let mut off = Redactor::from_config(r#"{ "scan_text": false }"#).unwrap();
        assert_eq!(off.on_publish(text), PublishResult::Pass);
        assert_eq!(r.on_publish(Message::new("c", vec![0xff, 0x00])), PublishResult::Pass);
    }

    #[test]
    fn the_shortcut_never_hides_a_table_case() {
        let r = all();
        for (input, want) in TABLE {
            if input != want {
                assert!(!r.surely_clean(input.as_bytes()), "{input:?}");
            }
        }
        assert!(r.surely_clean(br#"{"text":"see you at 5 pm","n":42}"#));
        assert!(!r.surely_clean(br#"{"t":"x\u0040"}"#));
    }

    #[test]
    fn escaped_values_are_still_found() {
        let r = all();
        let msg = Message::new("c", br#"{"t":"a\u0040b.io","u":"4111\n4111111111111111"}"#.to_vec());
        let out: Value = serde_json::from_slice(&r.redact_payload(&msg).unwrap()).unwrap();
        assert_eq!(out, json!({"t": "[redacted:email]", "u": "4111\n[redacted:card]"}));
        assert_eq!(r.redact_payload(&Message::new("c", br#"{"key":"value","n":42,"ok":true}"#.to_vec())), None);
    }

    #[test]
    fn config_is_validated() {
        assert!(Redactor::from_config(r#"{ "patterns": ["ssn"] }"#).unwrap_err().contains("unknown variant `ssn`"));
        assert!(Redactor::from_config(r#"{ "skip_fields": ["a..b"] }"#).unwrap_err().contains("skip_fields[0]"));
    }
}
