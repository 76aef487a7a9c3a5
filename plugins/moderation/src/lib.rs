//! `moderation`: blocks or masks words from configured lists, and puts a
//! user who keeps getting blocked on a cooldown.
//!
//! Matching is Unicode-aware: text and terms are folded character by
//! character with NFKD, combining marks dropped, then lowercased, so
//! `ＢＡＤ`, `Bád` and `bad` are one word, and `ﬁ` is `fi`. Terms match whole
//! words (neighbours that are not alphanumeric); a term may be several words.
//! Lookalikes from other scripts (Cyrillic `а` for Latin `a`) are not folded.
//!
//! JSON payloads are checked in every string value (keys are not); other
//! UTF-8 payloads as one text; anything else passes. A blocked publish is
//! refused with `block_code`; masked words get `mask_char` per letter.
//!
//! The cooldown counts blocks per user in `kv` (`blocks:{user}`, expiring
//! after `window_secs`); at `max_blocks` the user is refused with
//! `rate_limit.code` for `cooldown_secs`. Imports: `kv`.
//!
//! ```toml
//! config = { block = ["badword", "very bad phrase"], mask = ["darn"], mask_char = "*",
//!            block_code = 403, block_reason = "message contains a blocked word",
//!            rate_limit = { max_blocks = 3, window_secs = 60, cooldown_secs = 300, code = 429 } }
//! ```

use serde::Deserialize;
use serde_json::Value;
use switchboard_plugin_sdk::{Message, Plugin, PublishHook, PublishResult, kv};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// The plugin config (the TOML `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Terms that refuse the publish. Default none.
    pub block: Vec<String>,
    /// Terms replaced with `mask_char`. Default none.
    pub mask: Vec<String>,
    /// Default `*`.
    pub mask_char: char,
    /// Code of a blocked publish (400..=499). Default 403.
    pub block_code: u32,
    /// Default "message contains a blocked word".
    pub block_reason: String,
    /// Default on: 3 blocks within 60 s give a 300 s cooldown, code 429.
    pub rate_limit: RateLimit,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block: Vec::new(),
            mask: Vec::new(),
            mask_char: '*',
            block_code: 403,
            block_reason: "message contains a blocked word".to_owned(),
            rate_limit: RateLimit::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Blocks within the window that start a cooldown; 0 turns it off.
    /// Default 3.
    pub max_blocks: u32,
    /// Default 60.
    pub window_secs: u64,
    /// Default 300.
    pub cooldown_secs: u64,
    /// Code while cooling down (400..=499). Default 429.
    pub code: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { max_blocks: 3, window_secs: 60, cooldown_secs: 300, code: 429 }
    }
}

/// A folded term: its characters, each already folded.
type Term = Vec<char>;

/// What a text check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// A mask term matched: the rewritten text.
    Masked(String),
    /// A block term matched (its configured spelling).
    Blocked(String),
}

#[derive(Debug)]
pub struct Moderation {
    config: Config,
    block: Vec<(Term, String)>,
    mask: Vec<Term>,
    /// The shortcut for ASCII payloads.
    ascii: AsciiScan,
}

/// The block and mask terms that fold to ASCII, for a pass over raw ASCII
/// payloads that proves no term occurs in them, even as a substring and
/// ignoring ASCII case (what folding is on ASCII). Built once in `init`.
#[derive(Debug)]
struct AsciiScan {
    /// Folded (lowercase) terms.
    terms: Vec<Vec<u8>>,
    /// Per byte with `0x20` set: whether a term starts with it.
    starts: [bool; 256],
    /// The distinct first bytes, `0x20` set: what the chunk test stops at.
    firsts: Vec<u8>,
    /// A term holds a character JSON may escape (`"`, `\\`, `/`, controls):
    /// then any backslash sends the payload to the slow path, not just `\\u`.
    escapable: bool,
}

/// Bytes the scan tests at once (see [`AsciiScan::stops`]).
const CHUNK: usize = 16;

impl AsciiScan {
    fn new<'a>(terms: impl Iterator<Item = &'a Term>) -> AsciiScan {
        let mut scan = AsciiScan { terms: Vec::new(), starts: [false; 256], firsts: Vec::new(), escapable: false };
        for term in terms {
            let Some(bytes) =
                term.iter().map(|&c| u8::try_from(c).ok().filter(u8::is_ascii)).collect::<Option<Vec<u8>>>()
            else {
                // A term with non-ASCII characters cannot match ASCII text.
                continue;
            };
            let first = bytes[0] | 0x20;
            if !scan.starts[usize::from(first)] {
                scan.starts[usize::from(first)] = true;
                scan.firsts.push(first);
            }
            scan.escapable |= bytes.iter().any(|&b| b == b'"' || b == b'\\' || b == b'/' || b.is_ascii_control());
            scan.terms.push(bytes);
        }
        scan
    }

    /// Whether the payload surely holds no term: it is ASCII without `\\u`
    /// escapes (so folding is lowercasing) and no term occurs in it. Each
    /// chunk yields the positions of its bytes that are non-ASCII, a
    /// backslash or maybe the first of a term, and only those are looked at.
    fn clean(&self, data: &[u8]) -> bool {
        let mut chunks = data.chunks_exact(CHUNK);
        let mut base = 0;
        for chunk in &mut chunks {
            let mut stops = self.stops(chunk.try_into().expect("a whole chunk"));
            while stops != 0 {
                let at = base + stops.trailing_zeros() as usize;
                stops &= stops - 1;
                if !self.byte_clean(data, at) {
                    return false;
                }
            }
            base += CHUNK;
        }
        (base..data.len()).all(|at| self.byte_clean(data, at))
    }

    /// A bit per byte of `chunk` that is non-ASCII, a backslash or maybe the
    /// first of a term. Fixed-size, branch-free passes over the chunk, one
    /// compare of all sixteen bytes per first byte: SIMD where the compiler
    /// vectorizes them (SSE2 natively); wasm gets them spelled out in
    /// simd128 (see the wasm `stops`), as LLVM scalarizes the bitmask there.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline]
    fn stops(&self, chunk: &[u8; CHUNK]) -> u16 {
        let mut hit = chunk.map(|b| u8::from(b >= 0x80) | u8::from(b == b'\\'));
        for &first in &self.firsts {
            for (hit, &b) in hit.iter_mut().zip(chunk) {
                *hit |= u8::from((b | 0x20) == first);
            }
        }
        hit.iter().enumerate().fold(0, |stops, (i, &hit)| stops | (u16::from(hit) << i))
    }

    /// The portable `stops` in simd128 intrinsics.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline]
    fn stops(&self, chunk: &[u8; CHUNK]) -> u16 {
        use core::arch::wasm32::{i8x16_bitmask, i8x16_eq, i8x16_lt, i8x16_splat, u8x16, u8x16_splat, v128_or};
        let bytes = u8x16(
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7], chunk[8], chunk[9],
            chunk[10], chunk[11], chunk[12], chunk[13], chunk[14], chunk[15],
        );
        let folded = v128_or(bytes, u8x16_splat(0x20));
        let mut hit = v128_or(i8x16_lt(bytes, i8x16_splat(0)), i8x16_eq(bytes, u8x16_splat(b'\\')));
        for &first in &self.firsts {
            hit = v128_or(hit, i8x16_eq(folded, u8x16_splat(first)));
        }
        i8x16_bitmask(hit)
    }

    /// The exact check of the byte at `at` (a term starting there may run
    /// to the end of `data`).
    #[inline]
    fn byte_clean(&self, data: &[u8], at: usize) -> bool {
        match data[at] {
            0x80.. => false,
            b'\\' => !self.escapable && data.get(at + 1) != Some(&b'u'),
            b if self.starts[usize::from(b | 0x20)] => {
                let rest = &data[at..];
                !self.terms.iter().any(|t| {
                    (t[0] | 0x20) == (b | 0x20) && rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t)
                })
            }
            _ => true,
        }
    }
}

/// Substring search that looks at the first item before comparing the rest.
fn position<T: PartialEq>(hay: &[T], needle: &[T], from: usize) -> Option<usize> {
    let (first, rest) = needle.split_first()?;
    (from..hay.len()).find(|&i| hay[i] == *first && hay[i + 1..].starts_with(rest))
}

/// Folds one character: NFKD, combining marks dropped, lowercased. May be
/// empty (a lone combining mark) or several characters (`ﬁ`).
fn fold_char(c: char, out: &mut Vec<char>) {
    // ASCII folds to itself lowercased; skipping NFKD there is most of the
    // speed on ordinary text.
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for d in std::iter::once(c).nfkd() {
        if !is_combining_mark(d) {
            out.extend(d.to_lowercase());
        }
    }
}

fn fold_term(term: &str) -> Term {
    let mut out = Vec::new();
    for c in term.trim().chars() {
        fold_char(c, &mut out);
    }
    out
}

/// A text folded, remembering for each folded character the original
/// character it came from.
struct Folded {
    chars: Vec<char>,
    origin: Vec<usize>,
}

fn fold_text(text: &[char]) -> Folded {
    let mut folded = Folded { chars: Vec::with_capacity(text.len()), origin: Vec::with_capacity(text.len()) };
    let mut buf = Vec::new();
    for (i, &c) in text.iter().enumerate() {
        buf.clear();
        fold_char(c, &mut buf);
        folded.origin.extend(std::iter::repeat_n(i, buf.len()));
        folded.chars.extend_from_slice(&buf);
    }
    folded
}

/// Folded-character ranges where `term` occurs as whole words.
fn find_words(folded: &[char], term: &[char]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if term.is_empty() || term.len() > folded.len() {
        return found;
    }
    let mut from = 0;
    while let Some(i) = position(folded, term, from) {
        let end = i + term.len();
        let bounded =
            (i == 0 || !folded[i - 1].is_alphanumeric()) && (end == folded.len() || !folded[end].is_alphanumeric());
        if bounded {
            found.push((i, end));
            from = end;
        } else {
            from = i + 1;
        }
    }
    found
}

impl Moderation {
    pub fn from_config(json: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("moderation config: {e}"))?;
        for (key, code) in [("block_code", config.block_code), ("rate_limit.code", config.rate_limit.code)] {
            if !(400..=499).contains(&code) {
                return Err(format!("moderation config: {key} {code} out of range (400..=499)"));
            }
        }
        let mut block = Vec::new();
        for (i, term) in config.block.iter().enumerate() {
            let folded = fold_term(term);
            if folded.is_empty() {
                return Err(format!("moderation config: block[{i}] is empty"));
            }
            block.push((folded, term.clone()));
        }
        let mut mask = Vec::new();
        for (i, term) in config.mask.iter().enumerate() {
            let folded = fold_term(term);
            if folded.is_empty() {
                return Err(format!("moderation config: mask[{i}] is empty"));
            }
            mask.push(folded);
        }
        let ascii = AsciiScan::new(block.iter().map(|(term, _)| term).chain(&mask));
        Ok(Moderation { config, block, mask, ascii })
    }

    /// Checks one text: a block term wins over masking.
    pub fn check_text(&self, text: &str) -> Outcome {
        if self.block.is_empty() && self.mask.is_empty() {
            return Outcome::Clean;
        }
        let original: Vec<char> = text.chars().collect();
        let folded = fold_text(&original);
        for (term, spelling) in &self.block {
            if !find_words(&folded.chars, term).is_empty() {
                return Outcome::Blocked(spelling.clone());
            }
        }
        let mut hidden = vec![false; original.len()];
        let mut any = false;
        for term in &self.mask {
            for (start, end) in find_words(&folded.chars, term) {
                any = true;
                for &o in &folded.origin[start..end] {
                    hidden[o] = true;
                }
            }
        }
        if !any {
            return Outcome::Clean;
        }
        let masked = original
            .iter()
            .zip(&hidden)
            .map(|(&c, &hide)| if hide && c.is_alphanumeric() { self.config.mask_char } else { c })
            .collect();
        Outcome::Masked(masked)
    }

    /// Whether the payload cannot contain any term (see [`AsciiScan`]).
    /// Saves parsing JSON for most messages.
    fn surely_clean(&self, data: &[u8]) -> bool {
        self.ascii.clean(data)
    }

    /// Checks a payload: every string of a JSON document, or the whole text.
    /// `Ok(Some(bytes))` is the masked payload; `Err` the blocked term.
    pub fn check_payload(&self, msg: &Message) -> Result<Option<Vec<u8>>, String> {
        if self.surely_clean(&msg.data) {
            return Ok(None);
        }
        self.check_payload_exactly(msg)
    }

    /// [`Moderation::check_payload`] without the shortcut.
    fn check_payload_exactly(&self, msg: &Message) -> Result<Option<Vec<u8>>, String> {
        if msg.is_json()
            && let Ok(mut value) = serde_json::from_slice::<Value>(&msg.data)
        {
            let mut changed = false;
            self.check_value(&mut value, &mut changed)?;
            return Ok(changed.then(|| value.to_string().into_bytes()));
        }
        let Ok(text) = std::str::from_utf8(&msg.data) else {
            return Ok(None);
        };
        match self.check_text(text) {
            Outcome::Clean => Ok(None),
            Outcome::Masked(text) => Ok(Some(text.into_bytes())),
            Outcome::Blocked(term) => Err(term),
        }
    }

    fn check_value(&self, value: &mut Value, changed: &mut bool) -> Result<(), String> {
        match value {
            Value::String(s) => match self.check_text(s) {
                Outcome::Clean => {}
                Outcome::Masked(text) => {
                    *s = text;
                    *changed = true;
                }
                Outcome::Blocked(term) => return Err(term),
            },
            Value::Array(items) => {
                for item in items {
                    self.check_value(item, changed)?;
                }
            }
            Value::Object(map) => {
                for item in map.values_mut() {
                    self.check_value(item, changed)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn cooling_down(&self, user: &str) -> bool {
        self.config.rate_limit.max_blocks > 0 && !user.is_empty() && kv::get(&cooldown_key(user)).is_some()
    }

    /// Counts a block; starts the cooldown at the limit.
    fn record_block(&self, user: &str) {
        let limit = &self.config.rate_limit;
        if limit.max_blocks == 0 || user.is_empty() {
            return;
        }
        let count = kv::incr(&blocks_key(user), 1, Some(limit.window_secs.saturating_mul(1000)));
        if count >= i64::from(limit.max_blocks) {
            // The count is left to expire with its window: the counter's
            // encoding belongs to the host, so it is only ever incremented.
            kv::set(&cooldown_key(user), b"1", Some(limit.cooldown_secs.saturating_mul(1000)));
        }
    }
}

fn blocks_key(user: &str) -> String {
    format!("blocks:{user}")
}

fn cooldown_key(user: &str) -> String {
    format!("cooldown:{user}")
}

impl Plugin for Moderation {
    fn init(config: &str) -> Result<Self, String> {
        Moderation::from_config(config)
    }
}

impl PublishHook for Moderation {
    fn on_publish(&mut self, mut msg: Message) -> PublishResult {
        if self.cooling_down(msg.user()) {
            return PublishResult::deny(self.config.rate_limit.code, "too many blocked messages, try again later");
        }
        match self.check_payload(&msg) {
            Ok(None) => PublishResult::Pass,
            Ok(Some(data)) => {
                msg.data = data;
                PublishResult::Replace(msg)
            }
            Err(_term) => {
                self.record_block(msg.user());
                PublishResult::deny(self.config.block_code, self.config.block_reason.clone())
            }
        }
    }
}

switchboard_plugin_sdk::export_plugin!(Moderation, hooks: [publish]);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use switchboard_plugin_sdk::testing;

    use super::*;

    fn moderation() -> Moderation {
        Moderation::from_config(r#"{ "block": ["Badword", "très mal"], "mask": ["darn", "heck"] }"#).unwrap()
    }

    #[test]
    fn text_table() {
        let m = moderation();
        let blocked = |term: &str| Outcome::Blocked(term.to_owned());
        let masked = |text: &str| Outcome::Masked(text.to_owned());
        let cases: &[(&str, Outcome)] = &[
            ("hello world", Outcome::Clean),
            ("a badword here", blocked("Badword")),
            ("BADWORD!", blocked("Badword")),
            ("ＢＡＤＷＯＲＤ", blocked("Badword")),
            ("bádwörd", blocked("Badword")),
            // Decomposed accents (combining marks as separate characters).
            ("ba\u{301}dword", blocked("Badword")),
            ("C'est TRES MAL.", blocked("très mal")),
            ("c'est très    mal", Outcome::Clean),
            // Whole words only: no Scunthorpe problem.
            ("badwords", Outcome::Clean),
            ("notbadword", Outcome::Clean),
            ("badword_x", blocked("Badword")),
            ("darn it", masked("**** it")),
            ("Darn, DARN!", masked("****, ****!")),
            ("ｄａｒｎ", masked("****")),
            ("dárn", masked("****")),
            ("darnation", Outcome::Clean),
            ("heck and darn", masked("**** and ****")),
            // Block wins over mask.
            ("darn badword", blocked("Badword")),
            ("", Outcome::Clean),
        ];
        for (text, want) in cases {
            assert_eq!(&m.check_text(text), want, "{text:?}");
        }
    }

    #[test]
    fn masks_keep_combining_marks_and_length() {
        let m = moderation();
        // The mark after the `a` is masked away with its letter's span, but
        // is not alphanumeric, so it stays; the text keeps its characters.
        assert_eq!(m.check_text("da\u{301}rn"), Outcome::Masked("**\u{301}**".to_owned()));
        assert_eq!(m.check_text("ﬁne darn"), Outcome::Masked("ﬁne ****".to_owned()));
    }

    #[test]
    fn json_strings_are_checked_everywhere() {
        let m = moderation();
        let msg = |data: &str| Message::new("chat", data.as_bytes().to_vec());
        let masked = m.check_payload(&msg(r#"{"text":"darn","n":1,"list":["ok","heck"],"darn":true}"#)).unwrap();
        let value: Value = serde_json::from_slice(&masked.unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({"text":"****","n":1,"list":["ok","****"],"darn":true}));
        assert_eq!(m.check_payload(&msg(r#"{"a":{"b":"badword"}}"#)), Err("Badword".to_owned()));
        assert_eq!(m.check_payload(&msg(r#"{"a":"fine"}"#)), Ok(None));
        let mut text = msg("darn");
        text.content_type = "text/plain".into();
        assert_eq!(m.check_payload(&text), Ok(Some(b"****".to_vec())));
        text.data = vec![0xff, 0xfe];
        assert_eq!(m.check_payload(&text), Ok(None));
    }

    #[test]
    fn publish_denies_masks_and_cools_down() {
        testing::reset();
        let mut m = moderation();
        let from = |user: &str, text: &str| {
            Message::new("chat", format!(r#"{{"text":"{text}"}}"#).into_bytes()).with_publisher(user, "c1")
        };
        assert_eq!(m.on_publish(from("eve", "hi")), PublishResult::Pass);
        let PublishResult::Replace(out) = m.on_publish(from("eve", "darn")) else { panic!("expected replace") };
        assert_eq!(out.data, br#"{"text":"****"}"#);
        let blocked = PublishResult::deny(403, "message contains a blocked word");
        let cooling = PublishResult::deny(429, "too many blocked messages, try again later");
        assert_eq!(m.on_publish(from("eve", "badword")), blocked);
        assert_eq!(m.on_publish(from("eve", "badword")), blocked);
        // Other users are not affected.
        assert_eq!(m.on_publish(from("bob", "badword")), blocked);
        assert_eq!(m.on_publish(from("eve", "badword")), blocked, "third block starts the cooldown");
        assert_eq!(m.on_publish(from("eve", "hi")), cooling);
        assert_eq!(m.on_publish(from("bob", "hi")), PublishResult::Pass);
        testing::advance_ms(299_000);
        assert_eq!(m.on_publish(from("eve", "hi")), cooling);
        testing::advance_ms(1_000);
        assert_eq!(m.on_publish(from("eve", "hi")), PublishResult::Pass);
        // The window (60 s) ended during the cooldown: one block is not enough.
        assert_eq!(m.on_publish(from("eve", "badword")), blocked);
        assert_eq!(m.on_publish(from("eve", "hi")), PublishResult::Pass);
    }

    #[test]
    fn blocks_outside_the_window_do_not_add_up() {
        testing::reset();
        let mut m = moderation();
        let bad = || Message::new("c", br#""badword""#.to_vec()).with_publisher("eve", "c1");
        for _ in 0..5 {
            assert!(matches!(m.on_publish(bad()), PublishResult::Deny(r) if r.code == 403));
            testing::advance_ms(31_000);
            testing::advance_ms(30_000);
        }
    }

    #[test]
    fn escapes_and_non_ascii_skip_the_fast_path() {
        let m = moderation();
        let msg = |data: &[u8]| Message::new("c", data.to_vec());
        assert_eq!(m.check_payload(&msg(br#"{"t":"bad\u0077ord"}"#)), Err("Badword".to_owned()));
        assert_eq!(m.check_payload(&msg(r#"{"t":"ｂａｄｗｏｒｄ"}"#.as_bytes())), Err("Badword".to_owned()));
        assert_eq!(m.check_payload(&msg(br#"{"t":"BADWORD"}"#)), Err("Badword".to_owned()));
        assert_eq!(m.check_payload(&msg(br#"{"t":"fine words"}"#)), Ok(None));
    }

    /// Text made of terms in several spellings, near misses, JSON escapes,
    /// non-ASCII and the bytes around them.
    fn texts() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            proptest::sample::select(vec![
                "badword",
                "BadWord",
                "bad word",
                "badwords",
                "darn",
                "DARN!",
                "heck",
                "tres mal",
                "TRÈS mal",
                "say \"hi\"",
                "x/y",
                "\\u0062",
                "\\",
                "\"",
                "\n",
                "\t",
                "é",
                "ｄａｒｎ",
                "d\u{301}arn",
                "\u{0}",
            ])
            .prop_map(str::to_owned),
            proptest::string::string_regex("[a-zA-Z .,!\"/\\\\-]{1,8}").unwrap(),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The ASCII shortcut never calls clean what the exact check would
        /// block or mask, in text or in JSON strings (with their escapes).
        #[test]
        fn the_shortcut_never_hides_a_term(text in texts()) {
            let configs = [
                r#"{ "block": ["Badword", "très mal"], "mask": ["darn", "heck"] }"#,
                r#"{ "block": ["say \"hi\""], "mask": ["x/y", "a\u0000b"] }"#,
            ];
            for config in configs {
                let m = Moderation::from_config(config).unwrap();
                let json = Message::new("c", serde_json::to_vec(&serde_json::json!({ "t": text, "l": [text] })).unwrap());
                let mut plain = Message::new("c", text.clone().into_bytes());
                plain.content_type = "text/plain".into();
                for msg in [json, plain] {
                    if m.surely_clean(&msg.data) {
                        prop_assert_eq!(m.check_payload_exactly(&msg), Ok(None), "{} on {:?}", config, String::from_utf8_lossy(&msg.data));
                    }
                }
            }
        }
    }

    #[test]
    fn the_bench_message_takes_the_shortcut() {
        let m = Moderation::from_config(r#"{ "block": ["badword", "very bad phrase"], "mask": ["darn"] }"#).unwrap();
        assert!(m.surely_clean(&testing::chat_message_1kib()));
        // Stopping at each `b` or `d` (and at the tail) finds nothing.
        assert!(m.surely_clean(br#"{"t":"bring bad words, dart dad: b"}"#));
        assert!(!m.surely_clean(br#"{"t":"bring bad words, dart dad: Darn"}"#));
        assert!(!m.surely_clean(br#"{"t":"a\"b","u":"x BADWORD"}"#));
    }

    #[test]
    fn config_is_validated() {
        for (json, want) in [
            (r#"{ "block_code": 500 }"#, "block_code 500 out of range"),
            (r#"{ "rate_limit": { "code": 200 } }"#, "rate_limit.code 200 out of range"),
            (r#"{ "block": ["  "] }"#, "block[0] is empty"),
            (r#"{ "blok": [] }"#, "unknown field `blok`"),
        ] {
            let error = Moderation::from_config(json).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
    }
}
