//! `auth-policy`: allows or denies connect and subscribe from the token's
//! claims and per-channel rules.
//!
//! Channel rules are patterns with `*` (any run of characters, `:`
//! included) and placeholders: `{sub}` (the user) and `{claims.PATH}` (a
//! string or number claim; dots walk nested objects). Placeholder values are
//! matched literally, so a claim holding `*` is no wildcard. The first rule
//! that matches decides; `default` decides when none does.
//!
//! The subscribe hook does not carry the token, so `on-connect` keeps each
//! client's claims in `kv` (when some rule uses `{claims.…}`) for
//! `claims_ttl_secs`. Imports: `kv`.
//!
//! ```toml
//! config = { allow_anonymous = false, required_claims = { role = ["member", "admin"] },
//!            auto_subscribe = ["user:{sub}"],
//!            rules = [ { channel = "user:{sub}" },
//!                      { channel = "team:{claims.team}:*" },
//!                      { channel = "public:*", anonymous = true },
//!                      { channel = "admin:*", effect = "deny" } ],
//!            default = "deny", deny_code = 403 }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use switchboard_plugin_sdk::{
    ConnectHook, ConnectRequest, ConnectResult, Plugin, Principal, SubscribeHook, SubscribeRequest, Verdict, kv,
};

/// The plugin config (the TOML `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Lets connections without a user through connect. Default false.
    pub allow_anonymous: bool,
    /// Claims a token must carry: name (dotted path) to the allowed values;
    /// an empty list only requires presence. Default none.
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// Channel templates (placeholders, no `*`) subscribed server-side on
    /// connect. Default none.
    pub auto_subscribe: Vec<String>,
    /// Channel rules, first match wins. Default none.
    pub rules: Vec<RuleConfig>,
    /// The effect when no rule matches. Default deny.
    pub default: Effect,
    /// Code of every refusal (400..=1999). Default 403.
    pub deny_code: u32,
    /// How long a client's claims are kept for its subscribes, in seconds.
    /// Default 86400.
    pub claims_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_anonymous: false,
            required_claims: BTreeMap::new(),
            auto_subscribe: Vec::new(),
            rules: Vec::new(),
            default: Effect::Deny,
            deny_code: 403,
            claims_ttl_secs: 86_400,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Channel pattern.
    pub channel: String,
    /// Default allow.
    #[serde(default)]
    pub effect: Effect,
    /// Whether the rule also applies to anonymous users. Default false.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// One piece of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(String),
    Star,
    Sub,
    Claim(Vec<String>),
}

/// A pattern after its placeholders got values: literals and stars.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Star,
}

#[derive(Debug)]
struct Rule {
    pattern: Vec<Token>,
    effect: Effect,
    anonymous: bool,
}

/// What a subscribe is checked against: the user and their token claims.
pub struct Who<'a> {
    pub user: &'a str,
    pub claims: &'a Value,
}

#[derive(Debug)]
pub struct AuthPolicy {
    config: Config,
    rules: Vec<Rule>,
    auto_subscribe: Vec<Vec<Token>>,
    /// Whether any pattern reads claims, so connect must store them.
    needs_claims: bool,
}

impl AuthPolicy {
    pub fn from_config(json: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("auth-policy config: {e}"))?;
        if !(400..=1999).contains(&config.deny_code) {
            return Err(format!("auth-policy config: deny_code {} out of range (400..=1999)", config.deny_code));
        }
        let mut rules = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let pattern = parse(&rule.channel).map_err(|e| format!("auth-policy config: rules[{i}].channel: {e}"))?;
            rules.push(Rule { pattern, effect: rule.effect, anonymous: rule.anonymous });
        }
        let mut auto_subscribe = Vec::new();
        for (i, template) in config.auto_subscribe.iter().enumerate() {
            let pattern = parse(template).map_err(|e| format!("auth-policy config: auto_subscribe[{i}]: {e}"))?;
            if pattern.contains(&Token::Star) {
                return Err(format!("auth-policy config: auto_subscribe[{i}]: `*` is not allowed in a channel name"));
            }
            auto_subscribe.push(pattern);
        }
        let needs_claims =
            rules.iter().map(|r| &r.pattern).chain(&auto_subscribe).flatten().any(|t| matches!(t, Token::Claim(_)));
        Ok(AuthPolicy { config, rules, auto_subscribe, needs_claims })
    }

    /// The connect decision for a user with these claims.
    pub fn decide_connect(&self, user: &str, claims: &Value) -> ConnectResult {
        if user.is_empty() {
            return if self.config.allow_anonymous {
                ConnectResult::Pass
            } else {
                ConnectResult::deny(self.config.deny_code, "anonymous connections are not allowed")
            };
        }
        for (name, allowed) in &self.config.required_claims {
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            let ok = match lookup(claims, &path) {
                None | Some(Value::Null) => false,
                Some(_) if allowed.is_empty() => true,
                Some(Value::Array(values)) => {
                    values.iter().any(|v| claim_text(v).is_some_and(|t| allowed.contains(&t)))
                }
                Some(value) => claim_text(value).is_some_and(|t| allowed.contains(&t)),
            };
            if !ok {
                return ConnectResult::deny(self.config.deny_code, format!("claim {name} is missing or not allowed"));
            }
        }
        if self.auto_subscribe.is_empty() {
            return ConnectResult::Pass;
        }
        let who = Who { user, claims };
        let mut principal = Principal::new(user);
        principal.channels = self
            .auto_subscribe
            .iter()
            .filter_map(|template| expand(template, &who))
            .map(|pieces| pieces.into_iter().map(|p| if let Piece::Lit(s) = p { s } else { String::new() }).collect())
            .collect();
        ConnectResult::Allow(principal)
    }

    /// The subscribe decision: the first matching rule, else the default.
    pub fn decide_subscribe(&self, channel: &str, who: &Who<'_>) -> Verdict {
        let effect = self
            .rules
            .iter()
            .filter(|rule| rule.anonymous || !who.user.is_empty())
            .find(|rule| expand(&rule.pattern, who).is_some_and(|pieces| glob(&pieces, channel)))
            .map_or(self.config.default, |rule| rule.effect);
        match effect {
            Effect::Allow => Verdict::Allow,
            Effect::Deny => Verdict::deny(self.config.deny_code, format!("not allowed to subscribe to {channel}")),
        }
    }
}

fn claims_key(client: &str) -> String {
    format!("claims:{client}")
}

/// Parses `team:{claims.team}:*` into tokens.
fn parse(pattern: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut lit = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        match c {
            '*' => {
                if !lit.is_empty() {
                    tokens.push(Token::Lit(std::mem::take(&mut lit)));
                }
                tokens.push(Token::Star);
                rest = &rest[1..];
            }
            '{' => {
                let end = rest.find('}').ok_or_else(|| format!("unclosed `{{` in {pattern:?}"))?;
                let name = &rest[1..end];
                let token = match name {
                    "sub" | "user" => Token::Sub,
                    _ => match name.strip_prefix("claims.") {
                        Some(path) if !path.is_empty() && path.split('.').all(|s| !s.is_empty()) => {
                            Token::Claim(path.split('.').map(str::to_owned).collect())
                        }
                        _ => {
                            return Err(format!(
                                "unknown placeholder {{{name}}} (expected {{sub}} or {{claims.NAME}})"
                            ));
                        }
                    },
                };
                if !lit.is_empty() {
                    tokens.push(Token::Lit(std::mem::take(&mut lit)));
                }
                tokens.push(token);
                rest = &rest[end + 1..];
            }
            '}' => return Err(format!("unmatched `}}` in {pattern:?}")),
            c => {
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !lit.is_empty() {
        tokens.push(Token::Lit(lit));
    }
    Ok(tokens)
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// A claim usable in a channel name: a non-empty string or a number.
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Fills the placeholders; `None` when one has no usable value.
fn expand(tokens: &[Token], who: &Who<'_>) -> Option<Vec<Piece>> {
    tokens
        .iter()
        .map(|token| match token {
            Token::Lit(s) => Some(Piece::Lit(s.clone())),
            Token::Star => Some(Piece::Star),
            Token::Sub => (!who.user.is_empty()).then(|| Piece::Lit(who.user.to_owned())),
            Token::Claim(path) => lookup(who.claims, path).and_then(claim_text).map(Piece::Lit),
        })
        .collect()
}

/// Matches `text` against literals and stars (a star matches any run,
/// empty included).
fn glob(pieces: &[Piece], text: &str) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Lit(lit), rest)) => text.strip_prefix(lit.as_str()).is_some_and(|t| glob(rest, t)),
        Some((Piece::Star, rest)) => {
            text.char_indices().map(|(i, _)| i).chain([text.len()]).any(|i| glob(rest, &text[i..]))
        }
    }
}

impl Plugin for AuthPolicy {
    fn init(config: &str) -> Result<Self, String> {
        AuthPolicy::from_config(config)
    }
}

impl ConnectHook for AuthPolicy {
    fn on_connect(&mut self, req: ConnectRequest) -> ConnectResult {
        let claims: Value = serde_json::from_str(&req.claims).unwrap_or(Value::Object(Default::default()));
        let result = self.decide_connect(&req.user, &claims);
        if self.needs_claims && !req.user.is_empty() && !matches!(result, ConnectResult::Deny(_)) {
            let ttl_ms = self.config.claims_ttl_secs.saturating_mul(1000);
            kv::set(&claims_key(&req.client), claims.to_string().as_bytes(), Some(ttl_ms));
        }
        result
    }
}

impl SubscribeHook for AuthPolicy {
    fn on_subscribe(&mut self, req: SubscribeRequest) -> Verdict {
        let claims = if self.needs_claims && !req.user.is_empty() {
            kv::get(&claims_key(&req.client)).and_then(|bytes| serde_json::from_slice(&bytes).ok())
        } else {
            None
        }
        .unwrap_or(Value::Object(Default::default()));
        self.decide_subscribe(&req.channel, &Who { user: &req.user, claims: &claims })
    }
}

switchboard_plugin_sdk::export_plugin!(AuthPolicy, hooks: [connect, subscribe]);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_plugin_sdk::{Reject, testing};

    use super::*;

    const CONFIG: &str = r#"{
        "required_claims": { "role": ["member", "admin"] },
        "auto_subscribe": ["user:{sub}", "team:{claims.team}:news"],
        "rules": [
            { "channel": "admin:*", "effect": "deny" },
            { "channel": "user:{sub}" },
            { "channel": "team:{claims.team}:*" },
            { "channel": "org:{claims.org.id}" },
            { "channel": "public:*", "anonymous": true }
        ]
    }"#;

    fn policy() -> AuthPolicy {
        AuthPolicy::from_config(CONFIG).unwrap()
    }

    #[test]
    fn subscribe_rules_table() {
        let p = policy();
        let claims = json!({ "role": "member", "team": "red", "org": { "id": 7 } });
        let star = json!({ "team": "*" });
        let cases: &[(&str, &Value, &str, bool)] = &[
            ("alice", &claims, "user:alice", true),
            ("alice", &claims, "user:bob", false),
            ("alice", &claims, "user:alice2", false),
            ("alice", &claims, "team:red:general", true),
            ("alice", &claims, "team:red:", true),
            ("alice", &claims, "team:blue:general", false),
            ("alice", &claims, "team:redx:general", false),
            ("alice", &claims, "org:7", true),
            ("alice", &claims, "org:8", false),
            ("alice", &claims, "admin:user:alice", false),
            ("alice", &claims, "public:lobby", true),
            ("alice", &claims, "other", false),
            // A claim's value is literal: `*` in it is no wildcard.
            ("alice", &star, "team:red:general", false),
            ("alice", &star, "team:*:general", true),
            // No claims stored: claim rules cannot match.
            ("alice", &Value::Null, "team:red:general", false),
            ("alice", &Value::Null, "user:alice", true),
            // Anonymous users only get rules marked anonymous.
            ("", &claims, "public:lobby", true),
            ("", &claims, "user:", false),
            ("", &claims, "team:red:x", false),
        ];
        for (user, claims, channel, allowed) in cases {
            let verdict = p.decide_subscribe(channel, &Who { user, claims });
            assert_eq!(verdict == Verdict::Allow, *allowed, "{user:?} {claims} {channel}: {verdict:?}");
            if !allowed {
                assert_eq!(verdict, Verdict::deny(403, format!("not allowed to subscribe to {channel}")));
            }
        }
    }

    #[test]
    fn connect_requires_user_and_claims() {
        let p = policy();
        let deny = |reason: &str| ConnectResult::Deny(Reject::new(403, reason));
        assert_eq!(p.decide_connect("", &json!({})), deny("anonymous connections are not allowed"));
        assert_eq!(p.decide_connect("a", &json!({})), deny("claim role is missing or not allowed"));
        assert_eq!(p.decide_connect("a", &json!({ "role": "guest" })), deny("claim role is missing or not allowed"));
        assert_eq!(p.decide_connect("a", &json!({ "role": null })), deny("claim role is missing or not allowed"));
        let ConnectResult::Allow(principal) = p.decide_connect("a", &json!({ "role": ["x", "admin"], "team": "red" }))
        else {
            panic!("expected allow")
        };
        assert_eq!(principal.user, "a");
        assert_eq!(principal.channels, vec!["user:a".to_owned(), "team:red:news".to_owned()]);
        // A template whose claim is missing is skipped, not sent empty.
        let ConnectResult::Allow(principal) = p.decide_connect("a", &json!({ "role": "member" })) else {
            panic!("expected allow")
        };
        assert_eq!(principal.channels, vec!["user:a".to_owned()]);

        let open = AuthPolicy::from_config(r#"{ "allow_anonymous": true }"#).unwrap();
        assert_eq!(open.decide_connect("", &json!({})), ConnectResult::Pass);
        assert_eq!(open.decide_connect("a", &json!({})), ConnectResult::Pass);
    }

    #[test]
    fn hooks_carry_claims_from_connect_to_subscribe() {
        testing::reset();
        let mut p = policy();
        let connect = ConnectRequest::new("c1", "alice", r#"{"role":"member","team":"red"}"#);
        assert!(matches!(p.on_connect(connect), ConnectResult::Allow(_)));
        assert_eq!(p.on_subscribe(SubscribeRequest::new("c1", "alice", "team:red:x")), Verdict::Allow);
        // Another client of the same user did not present those claims.
        assert!(matches!(p.on_subscribe(SubscribeRequest::new("c2", "alice", "team:red:x")), Verdict::Deny(_)));
        // Claims expire with their TTL.
        testing::advance_ms(86_400_000);
        assert!(matches!(p.on_subscribe(SubscribeRequest::new("c1", "alice", "team:red:x")), Verdict::Deny(_)));
        // A denied connect stores nothing.
        assert!(matches!(p.on_connect(ConnectRequest::new("c3", "eve", r#"{"team":"red"}"#)), ConnectResult::Deny(_)));
        assert_eq!(testing::kv_get("claims:c3"), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        for (json, want) in [
            (r#"{ "rules": [ { "channel": "x:{nope}" } ] }"#, "rules[0].channel: unknown placeholder {nope}"),
            (r#"{ "rules": [ { "channel": "x:{sub" } ] }"#, "rules[0].channel: unclosed"),
            (r#"{ "auto_subscribe": ["a:*"] }"#, "auto_subscribe[0]: `*` is not allowed"),
            (r#"{ "deny_code": 200 }"#, "deny_code 200 out of range"),
            (r#"{ "rulez": [] }"#, "unknown field `rulez`"),
        ] {
            let error = AuthPolicy::from_config(json).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
    }

    #[test]
    fn glob_edges() {
        let lit = |s: &str| Piece::Lit(s.to_owned());
        assert!(glob(&[Piece::Star], ""));
        assert!(glob(&[lit("a"), Piece::Star, lit("b")], "a:x:b"));
        assert!(!glob(&[lit("a"), Piece::Star, lit("b")], "a:x:bc"));
        assert!(glob(&[Piece::Star, lit("é")], "ééé"));
    }
}
