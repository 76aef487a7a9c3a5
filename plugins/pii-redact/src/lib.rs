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

/// Pre-scan byte classes: the runs each detector's regex match lies in.
const PHONE: u8 = 1; // [0-9 ().+-]
const CARD: u8 = 2; // [0-9 -]
const IP4: u8 = 4; // [0-9.]
const IP6: u8 = 8; // [0-9A-Fa-f:.]
const DIGIT: u8 = 16;
const UPPER: u8 = 32;
const DOT: u8 = 64;
/// Bytes of a phone, card or IPv4 run.
const NUMBER: u8 = PHONE | CARD | IP4;

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        if c.is_ascii_digit() {
            k |= PHONE | CARD | IP4 | IP6 | DIGIT;
        }
        if matches!(c, b' ' | b'(' | b')' | b'.' | b'+' | b'-') {
            k |= PHONE;
        }
        if matches!(c, b' ' | b'-') {
            k |= CARD;
        }
        if c == b'.' {
            k |= IP4 | IP6 | DOT;
        }
        if c == b':' || matches!(c, b'a'..=b'f' | b'A'..=b'F') {
            k |= IP6;
        }
        if c.is_ascii_uppercase() {
            k |= UPPER;
        }
        table[b] = k;
        b += 1;
    }
    table
};

fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Per byte of a word, the high bit set where the byte is zero (exact: no
/// borrow crosses bytes).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const fn zero_bytes(v: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((v & LOW7) + LOW7) | v | LOW7)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Per byte of `x`, the high bit set where the pre-scan has to look closer:
/// a digit or `:` (any byte 0x30..=0x40, the rest of that range is
/// harmless), `@`, or a backslash.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn triggers(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes 0x30..=0x40 without carries: the high bit is masked off first
    // (and such bytes are no triggers), so the sums stay in their bytes.
    let low = x & !HIGH;
    let from_0x30 = low + splat(0x80 - 0x30);
    let past_0x40 = low + splat(0x80 - 0x41);
    (from_0x30 & !past_0x40 & !x & HIGH) | zero_bytes(x ^ splat(b'\\'))
}

/// The index of the first trigger in a 16-byte block, 16 when it has none.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn first_trigger(block: &[u8; 16]) -> u32 {
    let (low, high) = block.split_at(8);
    let low = triggers(u64::from_le_bytes(low.try_into().expect("eight bytes")));
    let high = triggers(u64::from_le_bytes(high.try_into().expect("eight bytes")));
    if low != 0 { low.trailing_zeros() / 8 } else { 8 + high.trailing_zeros() / 8 }
}

/// [`triggers`] on all sixteen bytes at once in simd128 intrinsics.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn first_trigger(block: &[u8; 16]) -> u32 {
    use core::arch::wasm32::{i8x16_bitmask, i8x16_eq, u8x16, u8x16_le, u8x16_splat, u8x16_sub, v128_or};
    let bytes = u8x16(
        block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7], block[8], block[9], block[10],
        block[11], block[12], block[13], block[14], block[15],
    );
    // 0x30..=0x40: below 0x30 the subtraction wraps past 0x10.
    let digits = u8x16_le(u8x16_sub(bytes, u8x16_splat(0x30)), u8x16_splat(0x10));
    let hits = v128_or(digits, i8x16_eq(bytes, u8x16_splat(b'\\')));
    i8x16_bitmask(hits).trailing_zeros()
}

/// The first trigger at or after `from`, sixteen bytes at a time: clean
/// chat text has few, and this skip is most of the pre-scan's time.
fn next_trigger(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut blocks = rest.chunks_exact(16);
    for (n, block) in blocks.by_ref().enumerate() {
        let within = first_trigger(block.try_into().expect("sixteen bytes"));
        if within < 16 {
            return Some(from + n * 16 + within as usize);
        }
    }
    // The tail, padded with zeros (no triggers).
    let tail = blocks.remainder();
    let mut block = [0u8; 16];
    block[..tail.len()].copy_from_slice(tail);
    let within = first_trigger(&block) as usize;
    (within < tail.len()).then(|| b.len() - tail.len() + within)
}

/// Which detectors could fire somewhere in a text, from what each cannot do
/// without: an email a local-part character, `@` and an alphanumeric; an
/// IBAN two capitals then two digits; a card 13 digits in one run of digits,
/// spaces and dashes, a phone 7 in a run of digits and `().+- `; an IPv4
/// three dots in a run of digits and dots; an IPv6 two colons in a run of
/// hex digits, colons and dots. `escape` is a `\u` (see
/// [`Redactor::surely_clean`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct Candidates {
    escape: bool,
    email: bool,
    iban: bool,
    card: bool,
    ip: bool,
    phone: bool,
}

impl Candidates {
    fn add(&mut self, other: Candidates) {
        self.escape |= other.escape;
        self.email |= other.email;
        self.iban |= other.iban;
        self.card |= other.card;
        self.ip |= other.ip;
        self.phone |= other.phone;
    }

    fn of(b: &[u8]) -> Candidates {
        let mut c = Candidates::default();
        let mut i = 0;
        // The end of the last IPv6 run looked at: each is counted once.
        let mut ip6_end = 0;
        while let Some(t) = next_trigger(b, i) {
            i = t + 1;
            c.look_at(b, t, &mut i, &mut ip6_end);
        }
        c
    }

    /// Looks at the trigger at `t`; moves `i` past the bytes that are done.
    fn look_at(&mut self, b: &[u8], t: usize, i: &mut usize, ip6_end: &mut usize) {
        let c = self;
        {
            let byte = b[t];
            let k = class(byte);
            if k & DIGIT != 0 {
                // The first digit of a number run (the bytes before it
                // since the last trigger hold none). Its IBAN head is the
                // two capitals before it: a capital is no part of the run.
                c.iban |= t >= 2
                    && class(b[t - 1]) & UPPER != 0
                    && class(b[t - 2]) & UPPER != 0
                    && b.get(t + 1).is_some_and(u8::is_ascii_digit);
                // Most runs in text are short numbers ("10.30", "42"): a
                // count to the run's end rules phones, cards and IPv4 out
                // before the exact pass; dots before the first digit do not
                // count for an IPv4.
                let (mut digits, mut dots, mut end) = (1, 0, t + 1);
                while let Some(&next) = b.get(end) {
                    let k = class(next);
                    if k & NUMBER == 0 {
                        break;
                    }
                    digits += u32::from(k & DIGIT != 0);
                    dots += u32::from(k & DOT != 0);
                    end += 1;
                }
                if digits >= 7 || dots >= 3 {
                    let mut start = t;
                    while start > 0 && class(b[start - 1]) & NUMBER != 0 {
                        start -= 1;
                    }
                    c.numbers(&b[start..end]);
                }
                // Runs hold no triggers but digits: the scan goes on after.
                *i = end;
            } else if byte == b':' {
                if t >= *ip6_end {
                    let mut start = t;
                    while start > 0 && class(b[start - 1]) & IP6 != 0 {
                        start -= 1;
                    }
                    let mut end = t + 1;
                    while end < b.len() && class(b[end]) & IP6 != 0 {
                        end += 1;
                    }
                    c.ip |= b[start..end].iter().filter(|&&b| b == b':').count() >= 2;
                    *ip6_end = end;
                }
            } else if byte == b'@' {
                let local = t > 0
                    && matches!(b[t - 1], b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'%' | b'+' | b'-');
                c.email |= local && b.get(t + 1).is_some_and(u8::is_ascii_alphanumeric);
            } else if byte == b'\\' {
                c.escape |= b.get(t + 1) == Some(&b'u');
            }
        }
    }

    /// The exact pass over one run of [`NUMBER`] bytes.
    fn numbers(&mut self, run: &[u8]) {
        let (mut phone, mut card, mut dots) = (0, 0, 0);
        for &b in run {
            let k = class(b);
            let digit = u32::from(k & DIGIT != 0);
            phone = if k & PHONE != 0 { phone + digit } else { 0 };
            card = if k & CARD != 0 { card + digit } else { 0 };
            dots = if k & IP4 != 0 { dots + u32::from(k & DOT != 0) } else { 0 };
            self.phone |= phone >= 7;
            self.card |= card >= 13;
            self.ip |= dots >= 3;
        }
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
    /// [`Candidates`]). A candidate in a decoded JSON string is also one in
    /// the raw text: no character the detectors look for needs escaping,
    /// and the characters escapes stand for break every run, as their raw
    /// spelling does. Only `\uXXXX` escapes could hide one, so they disable
    /// the shortcut.
    fn surely_clean(&self, data: &[u8]) -> bool {
        self.none_of(&Candidates::of(data))
    }

    /// Whether no string of the JSON document `data` holds a candidate:
    /// only strings are redacted in a document, so numbers (a timestamp's
    /// 19 digits look like a card) and structure do not count. Read with
    /// the parser the exact pass uses, without building the tree; false
    /// when it is not JSON (the exact pass then scans it as text).
    fn json_strings_clean(&self, data: &[u8]) -> bool {
        // UTF-8 checked once with SIMD: from a `str`, serde_json does not
        // check each string again with core's word-at-a-time `from_utf8`.
        let Ok(text) = simdutf8::basic::from_utf8(data) else {
            return false;
        };
        let mut c = Candidates::default();
        let mut de = serde_json::Deserializer::from_str(text);
        serde::de::DeserializeSeed::deserialize(StringScan(&mut c), &mut de).is_ok()
            && de.end().is_ok()
            && self.none_of(&c)
    }

    fn none_of(&self, c: &Candidates) -> bool {
        !c.escape
            && !self.kinds.iter().any(|kind| match kind {
                Kind::Email => c.email,
                Kind::Iban => c.iban,
                Kind::Card => c.card,
                Kind::Ip => c.ip,
                Kind::Phone => c.phone,
            })
    }

    /// The rewritten payload, `None` when nothing was redacted.
    pub fn redact_payload(&self, msg: &Message) -> Option<Vec<u8>> {
        if self.surely_clean(&msg.data) || (msg.is_json() && self.json_strings_clean(&msg.data)) {
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

/// Visits a JSON document and adds the candidates of each string value
/// (decoded) to its `Candidates`; names and other values are skipped.
struct StringScan<'c>(&'c mut Candidates);

impl<'de> serde::de::DeserializeSeed<'de> for StringScan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StringScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.0.add(Candidates::of(text.as_bytes()));
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(StringScan(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(StringScan(&mut *self.0))?;
        }
        Ok(())
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
    use proptest::prelude::*;
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
        // JSON with a byte that is not UTF-8 beside a candidate: neither a
        // document nor text, so it passes as it was sent.
        let bad = b"{\"t\":\"a@b.io \xff\"}".to_vec();
        assert!(!r.json_strings_clean(&bad));
        assert_eq!(r.on_publish(Message::new("c", bad)), PublishResult::Pass);
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
        // The gateway bench's chat message (digits, dots, `@`) takes the
        // shortcut: that is the hot path it measures.
        assert!(r.surely_clean(&switchboard_plugin_sdk::testing::chat_message_1kib()));
        assert!(r.surely_clean(br#"{"t":"at 10.30, gate 42, @team: ok","u":"2024-01"}"#));
        assert!(!r.surely_clean(br#"{"t":"x\u0040"}"#));
    }

    /// Numbers and names of a document are never redacted, so only its
    /// strings decide: a 19-digit timestamp no longer forces the exact
    /// pass. Text that is not JSON is still scanned whole.
    #[test]
    fn only_the_strings_of_a_document_count() {
        let r = all();
        let doc = br#"{"lg":[7,1732870000123456789],"4111111111111111":"xxxx"}"#;
        assert!(!r.surely_clean(doc), "the raw bytes hold a card-like run");
        assert!(r.json_strings_clean(doc));
        assert_eq!(r.redact_payload(&Message::new("c", doc.to_vec())), None);
        let with_card = br#"{"lg":[7,1732870000123456789],"p":"card 4111 1111 1111 1111"}"#;
        assert!(!r.json_strings_clean(with_card));
        let escaped = br#"{"n":1732870000123456789,"p":"a\u0040b.io"}"#;
        assert!(!r.json_strings_clean(escaped), "decoded strings are scanned");
        // Not JSON (the default content type is JSON): the text pass runs.
        let text = b"not json: 4111 1111 1111 1111".to_vec();
        assert!(!r.json_strings_clean(&text));
        assert_eq!(r.redact_payload(&Message::new("c", text)), Some(b"not json: [redacted:card]".to_vec()));
    }

    /// One detector per kind, so a pre-scan miss for one kind is not hidden
    /// by a candidate for another.
    static SINGLE: std::sync::LazyLock<Vec<Redactor>> = std::sync::LazyLock::new(|| {
        ["email", "iban", "card", "ip", "phone"]
            .iter()
            .map(|k| Redactor::from_config(&format!(r#"{{ "patterns": ["{k}"] }}"#)).unwrap())
            .collect()
    });

    /// Text made of real values, near misses and the bytes detectors and
    /// JSON escapes care about.
    fn fragments() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            proptest::sample::select(vec![
                "a@b.io",
                "x.y+z@mail.example.co.uk",
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
                "378282246310005",
                "4222222222222",
                "123-45-67",
                "0301234",
                "+49 30 1234567",
                "(555) 123-4567",
                "555.123.4567",
                "06.12.34.56.78",
                "020 7946 0958",
                "DE89 3704 0044 0532 0130 00",
                "GB82WEST12345698765432",
                "192.168.1.20",
                "2001:db8::8a2e:370:7334",
                "::ffff:192.0.2.128",
                "fe80::1",
                "10.30",
                "@team",
                "v1.2.3.4",
                "12:30:45",
                "é",
                "\n",
                "\"",
                "\\",
            ])
            .prop_map(str::to_owned),
            proptest::string::string_regex("[0-9 .:()+@a-fA-Z_-]{1,12}").unwrap(),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The pre-scan never calls clean what a detector would redact, in
        /// plain text or inside JSON strings (with their escapes).
        #[test]
        fn the_shortcut_never_hides_a_redaction(text in fragments()) {
            let json = serde_json::to_vec(&json!({ "t": text, "list": [{ "u": format!("x {text} y") }] })).unwrap();
            for r in SINGLE.iter() {
                if r.redact_text(&text).is_some() {
                    prop_assert!(!r.surely_clean(text.as_bytes()), "{:?} on {text:?}", r.kinds);
                }
                if r.redact_payload(&Message::new("c", json.clone())).is_some() {
                    prop_assert!(!r.surely_clean(&json), "{:?} on {}", r.kinds, String::from_utf8_lossy(&json));
                    prop_assert!(!r.json_strings_clean(&json), "{:?} on {}", r.kinds, String::from_utf8_lossy(&json));
                }
                // The text as a document of its own (mostly not JSON).
                if r.redact_payload(&Message::new("c", text.clone().into_bytes())).is_some() {
                    prop_assert!(!r.json_strings_clean(text.as_bytes()), "{:?} on {text:?}", r.kinds);
                }
            }
        }
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
