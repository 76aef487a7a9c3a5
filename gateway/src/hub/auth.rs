//! Verification of connection and subscription JWTs.
//!
//! This module owns turning a token string into trusted claims: choosing the
//! key from the configured algorithm allowlist, checking the signature, the
//! time claims (`exp`, `nbf`) and, when configured, `aud`/`iss`, and decoding
//! the Centrifugo claims (`sub`, `info`/`b64info`, `channels`, `channel`).
//!
//! It does not own sessions: what to do with an expired or invalid token
//! (protocol error 109, disconnect 3500, error 103), token refresh timers and
//! the anonymous-connection policy belong to the hub.
//!
//! Keys are parsed once in [`TokenVerifier::from_config`]; verification never
//! parses PEM. The algorithm always comes from the configuration: a token's
//! header only selects among the configured algorithms, and each algorithm is
//! bound to the key of its own family, which rules out `alg: none` and
//! HMAC/RSA key confusion.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::AuthConfig;
use crate::protocol::Payload;

/// Largest `auth.leeway_secs` accepted. Anything larger is a configuration
/// mistake (it would make expiry meaningless) and, near `u64::MAX`, would
/// overflow the library's time arithmetic.
const MAX_LEEWAY_SECS: u64 = 86_400;

/// Claims of a verified connection token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectClaims {
    /// The `sub` claim; `""` (claim empty or absent) is the anonymous user.
    pub user: String,
    /// The `exp` claim in unix seconds; `None`: the token never expires.
    pub expires_at: Option<u64>,
    /// Connection info from `b64info` (preferred) or `info`, as compact JSON.
    pub info: Option<Payload>,
    /// Server-side subscriptions (`channels`), not permissions.
    pub channels: Vec<String>,
    /// Names of the other top-level claims whose value is `true`, sorted
    /// (a namespace's `chat_admin_claim` is looked up here).
    pub true_claims: Vec<String>,
    /// Every other claim (`iat`, `role`, `team`, ...), for connect plugins
    /// that decide from token claims.
    pub other: serde_json::Map<String, Value>,
}

/// Claims of a verified subscription token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeClaims {
    /// The `channel` claim; always equal to the channel that was requested.
    pub channel: String,
    /// The `exp` claim in unix seconds; `None`: the token never expires.
    pub expires_at: Option<u64>,
    /// Channel info from `b64info` (preferred) or `info`, as compact JSON.
    pub info: Option<Payload>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signature and format are fine but `exp` is past (beyond the leeway).
    /// The client is expected to fetch a fresh token.
    #[error("token expired")]
    Expired,
    /// Anything else: forged, malformed, wrong algorithm, wrong audience, …
    /// The message is for logs; it never contains key material.
    #[error("invalid token: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> TokenError {
    TokenError::Invalid(message.into())
}

/// A configuration error found while building a [`TokenVerifier`]. The
/// message starts with the offending config key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AuthSetupError {
    key: &'static str,
    message: String,
}

impl AuthSetupError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }

    /// The config key at fault, e.g. `auth.token_rsa_public_key_pem`.
    pub fn key(&self) -> &'static str {
        self.key
    }
}

/// The algorithms Switchboard can verify, each bound to one key family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// What one algorithm can do under the current configuration.
#[allow(
    clippy::large_enum_variant,
    reason = "three slots per process, behind one Arc; boxing would only add a hop per verify"
)]
enum Slot {
    /// Not listed in `auth.algorithms`.
    NotAllowed,
    /// Allowed, but its key is not configured.
    NoKey,
    /// Allowed and keyed; the validation accepts exactly this algorithm.
    Ready { key: DecodingKey, validation: Validation },
}

impl Slot {
    fn state(&self) -> &'static str {
        match self {
            Self::NotAllowed => "not allowed",
            Self::NoKey => "no key",
            Self::Ready { .. } => "ready",
        }
    }
}

struct Inner {
    hs256: Slot,
    rs256: Slot,
    es256: Slot,
}

/// Verifies connection and subscription tokens. Built once at startup;
/// cloning shares the parsed keys.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenVerifier {
    // Shows which algorithms are usable, never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("HS256", &self.inner.hs256.state())
            .field("RS256", &self.inner.rs256.state())
            .field("ES256", &self.inner.es256.state())
            .finish()
    }
}

impl TokenVerifier {
    /// Parses the PEM keys once. Errors if a PEM is set but invalid, if
    /// `auth.algorithms` names an unsupported algorithm, or if
    /// `auth.leeway_secs` is absurd. Keys are parsed even when their algorithm
    /// is not allowed, so a broken key is reported before anyone enables it.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        let mut allowed = Vec::with_capacity(3);
        for name in &cfg.algorithms {
            let alg = Alg::parse(name).ok_or_else(|| {
                AuthSetupError::new(
                    "auth.algorithms",
                    format!("unsupported algorithm {name:?} (expected HS256, RS256 or ES256)"),
                )
            })?;
            allowed.push(alg);
        }
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthSetupError::new(
                "auth.leeway_secs",
                format!("{} is too large (at most {MAX_LEEWAY_SECS})", cfg.leeway_secs),
            ));
        }

        let hmac =
            (!cfg.token_hmac_secret.is_empty()).then(|| DecodingKey::from_secret(cfg.token_hmac_secret.as_bytes()));
        let rsa = parse_rsa_key(&cfg.token_rsa_public_key_pem)?;
        let ecdsa = parse_ecdsa_key(&cfg.token_ecdsa_public_key_pem)?;

        let slot = |alg: Alg, key: Option<DecodingKey>| {
            if !allowed.contains(&alg) {
                Slot::NotAllowed
            } else if let Some(key) = key {
                Slot::Ready { key, validation: validation_for(alg, cfg) }
            } else {
                Slot::NoKey
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                hs256: slot(Alg::Hs256, hmac),
                rs256: slot(Alg::Rs256, rsa),
                es256: slot(Alg::Es256, ecdsa),
            }),
        })
    }

    /// Verifies a connection token and returns its claims.
    ///
    /// A connection token must not carry a `channel` claim: that marks a
    /// subscription token, which must not be usable to log in.
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, TokenError> {
        let raw: RawConnectClaims = self.decode(token)?;
        if raw.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(invalid("channel claim not allowed in a connection token"));
        }
        Ok(ConnectClaims {
            user: raw.sub.unwrap_or_default(),
            expires_at: numeric_date(raw.exp)?,
            info: info_payload(raw.info, raw.b64info)?,
            channels: raw.channels.unwrap_or_default(),
            true_claims: {
                let mut names: Vec<String> =
                    raw.other.iter().filter(|(_, v)| **v == Value::Bool(true)).map(|(k, _)| k.clone()).collect();
                names.sort();
                names
            },
            other: raw.other,
        })
    }

    /// Verifies a subscription token for `channel` on a connection whose user
    /// is `expected_user`. The token's `channel` claim is required and must
    /// equal `channel`; its `sub` (absent means `""`) must equal
    /// `expected_user`.
    pub fn verify_subscribe(
        &self,
        token: &str,
        channel: &str,
        expected_user: &str,
    ) -> Result<SubscribeClaims, TokenError> {
        let raw: RawSubscribeClaims = self.decode(token)?;
        let token_channel = match raw.channel {
            Some(c) if !c.is_empty() => c,
            _ => return Err(invalid("missing channel claim")),
        };
        if token_channel != channel {
            return Err(invalid("channel claim does not match the channel"));
        }
        if raw.sub.as_deref().unwrap_or_default() != expected_user {
            return Err(invalid("sub claim does not match the connection user"));
        }
        Ok(SubscribeClaims {
            channel: token_channel,
            expires_at: numeric_date(raw.exp)?,
            info: info_payload(raw.info, raw.b64info)?,
        })
    }

    /// Picks the configured key for the token's algorithm, then lets
    /// jsonwebtoken check signature and standard claims under a validation
    /// that accepts only that algorithm.
    fn decode<T: DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let alg = header_alg(token)?;
        let slot = match alg {
            Alg::Hs256 => &self.inner.hs256,
            Alg::Rs256 => &self.inner.rs256,
            Alg::Es256 => &self.inner.es256,
        };
        let (key, validation) = match slot {
            Slot::Ready { key, validation } => (key, validation),
            Slot::NotAllowed => {
                return Err(invalid(format!("algorithm {} not allowed", alg.name())));
            }
            Slot::NoKey => return Err(invalid(format!("no key configured for {}", alg.name()))),
        };
        jsonwebtoken::decode::<T>(token, key, validation).map(|data| data.claims).map_err(map_jwt_error)
    }
}

/// Signs `claims` as an HS256 token. For dev tooling and tests.
pub fn mint_hs256(secret: &str, claims: &Value) -> Result<String, TokenError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| invalid(format!("signing failed: {}", e.to_string().to_lowercase())))
}

/// The validation for one algorithm: only that algorithm, `exp` optional,
/// `nbf` checked when present, `aud`/`iss` required and checked only when
/// configured.
fn validation_for(alg: Alg, cfg: &AuthConfig) -> Validation {
    let mut v = Validation::new(alg.jwt());
    v.algorithms = vec![alg.jwt()];
    v.required_spec_claims.clear();
    v.leeway = cfg.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    if cfg.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&[&cfg.audience]);
        v.required_spec_claims.insert("aud".to_owned());
    }
    if !cfg.issuer.is_empty() {
        v.set_issuer(&[&cfg.issuer]);
        v.required_spec_claims.insert("iss".to_owned());
    }
    v
}

/// Parses `auth.token_rsa_public_key_pem`; empty disables RS256.
fn parse_rsa_key(pem: &str) -> Result<Option<DecodingKey>, AuthSetupError> {
    const KEY: &str = "auth.token_rsa_public_key_pem";
    let pem = pem.trim();
    if pem.is_empty() {
        return Ok(None);
    }
    let fail = |why: &str| AuthSetupError::new(KEY, format!("invalid rsa public key: {why}"));
    // jsonwebtoken would also take a private key or certificate here and then
    // fail every verification; insist on a public key block.
    if !(pem.starts_with("-----BEGIN PUBLIC KEY-----") || pem.starts_with("-----BEGIN RSA PUBLIC KEY-----")) {
        return Err(fail(not_public_key_reason(pem)));
    }
    DecodingKey::from_rsa_pem(pem.as_bytes()).map(Some).map_err(|e| fail(&key_error_reason(&e)))
}

/// Parses `auth.token_ecdsa_public_key_pem`; empty disables ES256.
fn parse_ecdsa_key(pem: &str) -> Result<Option<DecodingKey>, AuthSetupError> {
    const KEY: &str = "auth.token_ecdsa_public_key_pem";
    let pem = pem.trim();
    if pem.is_empty() {
        return Ok(None);
    }
    let fail = |why: &str| AuthSetupError::new(KEY, format!("invalid ecdsa public key: {why}"));
    if !pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        return Err(fail(not_public_key_reason(pem)));
    }
    let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| fail(&key_error_reason(&e)))?;
    // The PEM parser accepts any EC curve; only using the key shows whether it
    // is a P-256 point. Verify a dummy token: a usable key gets as far as
    // rejecting the (all-zero) signature.
    if !ecdsa_key_usable(&key) {
        return Err(fail("not a p-256 public key"));
    }
    Ok(Some(key))
}

fn not_public_key_reason(pem: &str) -> &'static str {
    if pem.contains("PRIVATE KEY") {
        "this is a private key; configure the public key only"
    } else {
        "expected a pem block starting with -----BEGIN PUBLIC KEY-----"
    }
}

fn key_error_reason(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidKeyFormat => "malformed pem or wrong key type".to_owned(),
        ErrorKind::InvalidEcdsaKey => "not a p-256 public key".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn ecdsa_key_usable(key: &DecodingKey) -> bool {
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
        URL_SAFE_NO_PAD.encode(b"{}"),
        URL_SAFE_NO_PAD.encode([0u8; 64]),
    );
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    match jsonwebtoken::decode::<Value>(&token, key, &v) {
        Err(e) => matches!(e.kind(), ErrorKind::InvalidSignature),
        // Unreachable with a zero signature; treat as usable rather than lie.
        Ok(_) => true,
    }
}

/// Reads the header's `alg` and maps it to a supported algorithm. Also checks
/// the compact shape (three segments) so that garbage gets a clear message.
fn header_alg(token: &str) -> Result<Alg, TokenError> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
        // We implement no JWS extensions, so any critical one is unsupported
        // (RFC 7515 §4.1.11).
        crit: Option<Value>,
    }

    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(invalid("malformed token: expected three dot-separated segments"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| invalid("malformed token: header is not base64url"))?;
    let header: RawHeader = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("malformed token: header is not a json object with an alg"))?;
    if header.crit.is_some() {
        return Err(invalid("unsupported critical header"));
    }
    Alg::parse(&header.alg).ok_or_else(|| invalid(format!("algorithm {:?} not allowed", header.alg)))
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => invalid("token not yet valid (nbf)"),
        ErrorKind::InvalidSignature => invalid("bad signature"),
        ErrorKind::InvalidAudience => invalid("aud claim does not match"),
        ErrorKind::InvalidIssuer => invalid("iss claim does not match"),
        ErrorKind::MissingRequiredClaim(claim) => invalid(format!("missing {claim} claim")),
        ErrorKind::InvalidClaimFormat(claim) => invalid(format!("malformed {claim} claim")),
        ErrorKind::Base64(_) => invalid("malformed token: bad base64url"),
        ErrorKind::Json(err) => invalid(format!("malformed claims: {err}")),
        ErrorKind::Utf8(_) => invalid("malformed claims: not utf-8"),
        ErrorKind::InvalidAlgorithm => invalid("algorithm does not match the key"),
        other => invalid(format!("verification failed: {other:?}").to_lowercase()),
    }
}

/// Claims read from a connection token. Unknown claims are ignored.
#[derive(Deserialize)]
struct RawConnectClaims {
    sub: Option<String>,
    /// Kept loose: jsonwebtoken has already checked it is a numeric date.
    exp: Option<Value>,
    info: Option<Value>,
    b64info: Option<String>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// Claims read from a subscription token. Unknown claims are ignored.
#[derive(Deserialize)]
struct RawSubscribeClaims {
    sub: Option<String>,
    exp: Option<Value>,
    info: Option<Value>,
    b64info: Option<String>,
    channel: Option<String>,
}

/// Converts `exp` the way jsonwebtoken reads it (integer, or float rounded).
fn numeric_date(value: Option<Value>) -> Result<Option<u64>, TokenError> {
    let Some(value) = value else { return Ok(None) };
    let secs = value.as_u64().or_else(|| {
        value.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64).map(|f| f.round() as u64)
    });
    secs.map(Some).ok_or_else(|| invalid("malformed exp claim"))
}

/// `b64info` (base64 of JSON bytes) wins over `info` (a JSON value); an empty
/// `b64info` counts as absent.
fn info_payload(info: Option<Value>, b64info: Option<String>) -> Result<Option<Payload>, TokenError> {
    if let Some(encoded) = b64info.filter(|s| !s.is_empty()) {
        let bytes = STANDARD.decode(encoded).map_err(|_| invalid("malformed b64info claim: not base64"))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("malformed b64info claim: not utf-8"))?;
        return Payload::from_json(text).map(Some).map_err(|_| invalid("malformed b64info claim: not json"));
    }
    match info {
        None => Ok(None),
        // A serde_json value always prints as compact, valid JSON.
        Some(value) => Payload::from_json(&value.to_string()).map(Some).map_err(|_| invalid("malformed info claim")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "test-secret";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");
    const EC_P384_PUBLIC: &str = include_str!("testdata/ec_p384_public.pem");

    fn cfg() -> AuthConfig {
        AuthConfig {
            token_hmac_secret: SECRET.to_owned(),
            token_rsa_public_key_pem: RSA_PUBLIC.to_owned(),
            token_ecdsa_public_key_pem: EC_PUBLIC.to_owned(),
            algorithms: vec!["HS256".to_owned(), "RS256".to_owned(), "ES256".to_owned()],
            audience: String::new(),
            issuer: String::new(),
            leeway_secs: 5,
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::from_config(&cfg()).unwrap()
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn hs256(claims: Value) -> String {
        mint_hs256(SECRET, &claims).unwrap()
    }

    fn rs256(claims: Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    }

    fn es256(claims: Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    }

    /// A hand-crafted `header.claims.signature` token, each part base64url
    /// of the given bytes (the signature is not computed).
    fn handmade(header: &str, claims: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// Unwraps `TokenError::Invalid` and returns its message.
    #[track_caller]
    fn invalid_msg<T: fmt::Debug>(r: Result<T, TokenError>) -> String {
        match r {
            Err(TokenError::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn payload(json: &str) -> Option<Payload> {
        Some(Payload::from_json(json).unwrap())
    }

    #[test]
    fn hs256_valid_connect_token() {
        let exp = now() + 600;
        let claims = verifier().verify_connect(&hs256(json!({"sub": "42", "exp": exp}))).unwrap();
        assert_eq!(
            claims,
            ConnectClaims {
                user: "42".into(),
                expires_at: Some(exp),
                info: None,
                channels: vec![],
                true_claims: vec![],
                other: Default::default()
            }
        );
    }

    #[test]
    fn rs256_valid_connect_token() {
        let exp = now() + 600;
        let claims = verifier().verify_connect(&rs256(json!({"sub": "7", "exp": exp}))).unwrap();
        assert_eq!(
            claims,
            ConnectClaims {
                user: "7".into(),
                expires_at: Some(exp),
                info: None,
                channels: vec![],
                true_claims: vec![],
                other: Default::default()
            }
        );
    }

    #[test]
    fn es256_valid_connect_token() {
        let exp = now() + 600;
        let claims = verifier().verify_connect(&es256(json!({"sub": "9", "exp": exp}))).unwrap();
        assert_eq!(
            claims,
            ConnectClaims {
                user: "9".into(),
                expires_at: Some(exp),
                info: None,
                channels: vec![],
                true_claims: vec![],
                other: Default::default()
            }
        );
    }

    #[test]
    fn wrong_secret_is_invalid() {
        let token = mint_hs256("other-secret", &json!({"sub": "42"})).unwrap();
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "bad signature");
    }

    #[test]
    fn tampered_claims_are_invalid() {
        let token = rs256(json!({"sub": "42"}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#), parts[2]);
        assert_eq!(invalid_msg(verifier().verify_connect(&forged)), "bad signature");
    }

    #[test]
    fn alg_none_is_invalid() {
        for alg in ["none", "None", "NONE"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            let token = handmade(&header, r#"{"sub":"42"}"#, b"");
            assert!(token.ends_with('.'));
            assert_eq!(invalid_msg(verifier().verify_connect(&token)), format!("algorithm \"{alg}\" not allowed"));
        }
    }

    #[test]
    fn unsupported_algorithms_are_invalid() {
        // Known to jsonwebtoken, but not offered by Switchboard.
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &json!({"sub": "42"}), &key).unwrap();
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "algorithm \"HS512\" not allowed");
    }

    #[test]
    fn hs_rs_confusion_is_invalid() {
        // The classic attack: HMAC-sign with the (public) RSA key bytes.
        let token = mint_hs256(RSA_PUBLIC, &json!({"sub": "42"})).unwrap();
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "bad signature");

        // Without an HMAC secret HS256 has no key at all; the RSA key is never
        // borrowed for it.
        let v = TokenVerifier::from_config(&AuthConfig { token_hmac_secret: String::new(), ..cfg() }).unwrap();
        assert_eq!(invalid_msg(v.verify_connect(&token)), "no key configured for HS256");
    }

    #[test]
    fn algorithm_not_in_allowlist_is_invalid() {
        let v = TokenVerifier::from_config(&AuthConfig { algorithms: vec!["RS256".into()], ..cfg() }).unwrap();
        assert_eq!(invalid_msg(v.verify_connect(&hs256(json!({"sub": "42"})))), "algorithm HS256 not allowed");
        assert_eq!(invalid_msg(v.verify_connect(&es256(json!({"sub": "42"})))), "algorithm ES256 not allowed");
        assert_eq!(v.verify_connect(&rs256(json!({"sub": "42"}))).unwrap().user, "42");
    }

    #[test]
    fn allowed_algorithm_without_key_is_invalid() {
        let v = TokenVerifier::from_config(&AuthConfig { token_rsa_public_key_pem: String::new(), ..cfg() }).unwrap();
        assert_eq!(invalid_msg(v.verify_connect(&rs256(json!({"sub": "42"})))), "no key configured for RS256");
    }

    #[test]
    fn expired_token_is_expired() {
        let token = hs256(json!({"sub": "42", "exp": now() - 60}));
        assert!(matches!(verifier().verify_connect(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn expired_within_leeway_is_ok() {
        let exp = now() - 2;
        let claims = verifier().verify_connect(&hs256(json!({"sub": "42", "exp": exp}))).unwrap();
        assert_eq!(claims.expires_at, Some(exp));
    }

    #[test]
    fn expired_with_bad_signature_is_invalid_not_expired() {
        let token = mint_hs256("other-secret", &json!({"sub": "42", "exp": now() - 60})).unwrap();
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "bad signature");
    }

    #[test]
    fn token_without_exp_never_expires() {
        let claims = verifier().verify_connect(&hs256(json!({"sub": "42"}))).unwrap();
        assert_eq!(claims.expires_at, None);
    }

    #[test]
    fn exp_formats() {
        let exp = now() + 600;
        let claims = verifier().verify_connect(&hs256(json!({"sub": "42", "exp": exp as f64 + 0.4}))).unwrap();
        assert_eq!(claims.expires_at, Some(exp));
        assert_eq!(
            invalid_msg(verifier().verify_connect(&hs256(json!({"sub": "42", "exp": "soon"})))),
            "malformed exp claim"
        );
        assert_eq!(
            invalid_msg(verifier().verify_connect(&hs256(json!({"sub": "42", "exp": -1})))),
            "malformed exp claim"
        );
    }

    #[test]
    fn nbf_is_checked_with_leeway() {
        let token = hs256(json!({"sub": "42", "nbf": now() + 600}));
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "token not yet valid (nbf)");
        let token = hs256(json!({"sub": "42", "nbf": now() + 2}));
        assert_eq!(verifier().verify_connect(&token).unwrap().user, "42");
        let token = hs256(json!({"sub": "42", "nbf": now() - 600}));
        assert_eq!(verifier().verify_connect(&token).unwrap().user, "42");
    }

    #[test]
    fn audience_checked_only_when_configured() {
        let v = TokenVerifier::from_config(&AuthConfig { audience: "switchboard".into(), ..cfg() }).unwrap();
        let good = hs256(json!({"sub": "42", "aud": "switchboard"}));
        assert_eq!(v.verify_connect(&good).unwrap().user, "42");
        let good_list = hs256(json!({"sub": "42", "aud": ["other", "switchboard"]}));
        assert_eq!(v.verify_connect(&good_list).unwrap().user, "42");
        let wrong = hs256(json!({"sub": "42", "aud": "other"}));
        assert_eq!(invalid_msg(v.verify_connect(&wrong)), "aud claim does not match");
        let missing = hs256(json!({"sub": "42"}));
        assert_eq!(invalid_msg(v.verify_connect(&missing)), "missing aud claim");

        // Not configured: any aud (or none) passes.
        assert_eq!(verifier().verify_connect(&wrong).unwrap().user, "42");
        assert_eq!(verifier().verify_connect(&missing).unwrap().user, "42");
    }

    #[test]
    fn issuer_checked_only_when_configured() {
        let v = TokenVerifier::from_config(&AuthConfig { issuer: "backend".into(), ..cfg() }).unwrap();
        let good = hs256(json!({"sub": "42", "iss": "backend"}));
        assert_eq!(v.verify_connect(&good).unwrap().user, "42");
        let wrong = hs256(json!({"sub": "42", "iss": "evil"}));
        assert_eq!(invalid_msg(v.verify_connect(&wrong)), "iss claim does not match");
        let missing = hs256(json!({"sub": "42"}));
        assert_eq!(invalid_msg(v.verify_connect(&missing)), "missing iss claim");
        let not_a_string = hs256(json!({"sub": "42", "iss": 5}));
        assert_eq!(invalid_msg(v.verify_connect(&not_a_string)), "missing iss claim");

        assert_eq!(verifier().verify_connect(&wrong).unwrap().user, "42");
    }

    #[test]
    fn malformed_strings_are_invalid() {
        let v = verifier();
        let three = "malformed token: expected three dot-separated segments";
        assert_eq!(invalid_msg(v.verify_connect("")), three);
        assert_eq!(invalid_msg(v.verify_connect("a.b")), three);
        assert_eq!(invalid_msg(v.verify_connect("garbage")), three);
        assert_eq!(invalid_msg(v.verify_connect("a.b.c.d")), three);
        assert_eq!(invalid_msg(v.verify_connect("!!!.@@@.###")), "malformed token: header is not base64url");
        assert_eq!(
            invalid_msg(v.verify_connect(&handmade("not json", "{}", b"x"))),
            "malformed token: header is not a json object with an alg"
        );
        assert_eq!(
            invalid_msg(v.verify_connect(&handmade(r#"{"typ":"JWT"}"#, "{}", b"x"))),
            "malformed token: header is not a json object with an alg"
        );
        // Good header and signature, claims segment not base64url.
        let token = hs256(json!({"sub": "42"}));
        let header = token.split('.').next().unwrap();
        let message = format!("{header}.%%%");
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        assert_eq!(invalid_msg(v.verify_connect(&format!("{message}.{sig}"))), "malformed token: bad base64url");
        // Same shape, unsigned garbage: the signature check comes first.
        assert_eq!(invalid_msg(v.verify_connect(&format!("{header}.%%%.sig"))), "bad signature");
        // Valid signature segment missing.
        let unsigned = token.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert_eq!(invalid_msg(v.verify_connect(&unsigned)), "bad signature");
    }

    #[test]
    fn critical_header_is_invalid() {
        let token = handmade(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, "{}", b"x");
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "unsupported critical header");
    }

    #[test]
    fn info_is_compact_json() {
        let token = hs256(json!({"sub": "42", "info": {"name": "Ann", "tags": ["a", "b"]}}));
        let claims = verifier().verify_connect(&token).unwrap();
        assert_eq!(claims.info, payload(r#"{"name":"Ann","tags":["a","b"]}"#));

        let token = hs256(json!({"sub": "42", "info": "plain"}));
        assert_eq!(verifier().verify_connect(&token).unwrap().info, payload(r#""plain""#));
    }

    #[test]
    fn b64info_is_decoded_and_wins_over_info() {
        let encoded = STANDARD.encode(br#"{"role": "admin"}"#);
        let token = hs256(json!({"sub": "42", "b64info": encoded, "info": {"ignored": true}}));
        let claims = verifier().verify_connect(&token).unwrap();
        assert_eq!(claims.info, payload(r#"{"role": "admin"}"#));

        // Empty b64info counts as absent.
        let token = hs256(json!({"sub": "42", "b64info": "", "info": 1}));
        assert_eq!(verifier().verify_connect(&token).unwrap().info, payload("1"));
    }

    #[test]
    fn bad_b64info_is_invalid() {
        let v = verifier();
        let token = hs256(json!({"sub": "42", "b64info": "***"}));
        assert_eq!(invalid_msg(v.verify_connect(&token)), "malformed b64info claim: not base64");
        let token = hs256(json!({"sub": "42", "b64info": STANDARD.encode(b"{nope")}));
        assert_eq!(invalid_msg(v.verify_connect(&token)), "malformed b64info claim: not json");
        let token = hs256(json!({"sub": "42", "b64info": STANDARD.encode([0xff, 0xfe])}));
        assert_eq!(invalid_msg(v.verify_connect(&token)), "malformed b64info claim: not utf-8");
    }

    #[test]
    fn channels_are_parsed() {
        let token = hs256(json!({"sub": "42", "channels": ["news", "chat:1"]}));
        let claims = verifier().verify_connect(&token).unwrap();
        assert_eq!(claims.channels, vec!["news".to_owned(), "chat:1".to_owned()]);

        let token = hs256(json!({"sub": "42", "channels": "news"}));
        assert!(invalid_msg(verifier().verify_connect(&token)).starts_with("malformed claims: "));
    }

    #[test]
    fn sub_claim_forms() {
        let claims = verifier().verify_connect(&hs256(json!({"exp": now() + 60}))).unwrap();
        assert_eq!(claims.user, "");
        let claims = verifier().verify_connect(&hs256(json!({"sub": ""}))).unwrap();
        assert_eq!(claims.user, "");
        let token = hs256(json!({"sub": 42}));
        assert!(invalid_msg(verifier().verify_connect(&token)).starts_with("malformed claims: "));
    }

    #[test]
    fn subscription_token_is_not_a_connection_token() {
        let token = hs256(json!({"sub": "42", "channel": "chat:1"}));
        assert_eq!(invalid_msg(verifier().verify_connect(&token)), "channel claim not allowed in a connection token");
    }

    #[test]
    fn subscribe_valid() {
        let exp = now() + 600;
        let token = rs256(json!({"sub": "42", "channel": "chat:1", "exp": exp, "info": {"a": 1}}));
        let claims = verifier().verify_subscribe(&token, "chat:1", "42").unwrap();
        assert_eq!(
            claims,
            SubscribeClaims { channel: "chat:1".into(), expires_at: Some(exp), info: payload(r#"{"a":1}"#) }
        );

        // Anonymous connection, token without sub.
        let token = hs256(json!({"channel": "chat:1"}));
        let claims = verifier().verify_subscribe(&token, "chat:1", "").unwrap();
        assert_eq!(claims, SubscribeClaims { channel: "chat:1".into(), expires_at: None, info: None });
    }

    #[test]
    fn subscribe_channel_mismatch_is_invalid() {
        let token = hs256(json!({"sub": "42", "channel": "chat:1"}));
        assert_eq!(
            invalid_msg(verifier().verify_subscribe(&token, "chat:2", "42")),
            "channel claim does not match the channel"
        );
    }

    #[test]
    fn subscribe_sub_mismatch_is_invalid() {
        let token = hs256(json!({"sub": "42", "channel": "chat:1"}));
        assert_eq!(
            invalid_msg(verifier().verify_subscribe(&token, "chat:1", "43")),
            "sub claim does not match the connection user"
        );
        assert_eq!(
            invalid_msg(verifier().verify_subscribe(&token, "chat:1", "")),
            "sub claim does not match the connection user"
        );
    }

    #[test]
    fn subscribe_missing_channel_is_invalid() {
        // A connection token offered as a subscription token.
        let token = hs256(json!({"sub": "42", "channels": ["chat:1"]}));
        assert_eq!(invalid_msg(verifier().verify_subscribe(&token, "chat:1", "42")), "missing channel claim");
        let token = hs256(json!({"sub": "42", "channel": ""}));
        assert_eq!(invalid_msg(verifier().verify_subscribe(&token, "", "42")), "missing channel claim");
    }

    #[test]
    fn subscribe_expired_is_expired() {
        let token = es256(json!({"sub": "42", "channel": "chat:1", "exp": now() - 60}));
        assert!(matches!(verifier().verify_subscribe(&token, "chat:1", "42"), Err(TokenError::Expired)));
    }

    #[test]
    fn invalid_rsa_pem_names_the_key() {
        let err = TokenVerifier::from_config(&AuthConfig {
            token_rsa_public_key_pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
            ..cfg()
        })
        .unwrap_err();
        assert_eq!(err.key(), "auth.token_rsa_public_key_pem");
        assert_eq!(
            err.to_string(),
            "auth.token_rsa_public_key_pem: invalid rsa public key: malformed pem or wrong key type"
        );

        let err = TokenVerifier::from_config(&AuthConfig { token_rsa_public_key_pem: "not a pem".into(), ..cfg() })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.token_rsa_public_key_pem: invalid rsa public key: expected a pem block starting with -----BEGIN PUBLIC KEY-----"
        );

        // An EC key where the RSA key belongs.
        let err = TokenVerifier::from_config(&AuthConfig { token_rsa_public_key_pem: EC_PUBLIC.into(), ..cfg() })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.token_rsa_public_key_pem: invalid rsa public key: malformed pem or wrong key type"
        );
    }

    #[test]
    fn private_key_in_config_is_refused() {
        let err = TokenVerifier::from_config(&AuthConfig { token_rsa_public_key_pem: RSA_PRIVATE.into(), ..cfg() })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.token_rsa_public_key_pem: invalid rsa public key: this is a private key; configure the public key only"
        );
        let err = TokenVerifier::from_config(&AuthConfig { token_ecdsa_public_key_pem: EC_PRIVATE.into(), ..cfg() })
            .unwrap_err();
        assert_eq!(err.key(), "auth.token_ecdsa_public_key_pem");
    }

    #[test]
    fn invalid_ecdsa_pem_names_the_key() {
        let err = TokenVerifier::from_config(&AuthConfig { token_ecdsa_public_key_pem: RSA_PUBLIC.into(), ..cfg() })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.token_ecdsa_public_key_pem: invalid ecdsa public key: malformed pem or wrong key type"
        );

        let err =
            TokenVerifier::from_config(&AuthConfig { token_ecdsa_public_key_pem: EC_P384_PUBLIC.into(), ..cfg() })
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.token_ecdsa_public_key_pem: invalid ecdsa public key: not a p-256 public key"
        );
    }

    #[test]
    fn bad_key_is_reported_even_when_its_algorithm_is_off() {
        let err = TokenVerifier::from_config(&AuthConfig {
            algorithms: vec!["HS256".into()],
            token_rsa_public_key_pem: "junk".into(),
            ..cfg()
        })
        .unwrap_err();
        assert_eq!(err.key(), "auth.token_rsa_public_key_pem");
    }

    #[test]
    fn other_setup_errors_name_the_key() {
        let err = TokenVerifier::from_config(&AuthConfig { algorithms: vec!["HS256".into(), "none".into()], ..cfg() })
            .unwrap_err();
        assert_eq!(err.to_string(), "auth.algorithms: unsupported algorithm \"none\" (expected HS256, RS256 or ES256)");
        let err = TokenVerifier::from_config(&AuthConfig { leeway_secs: u64::MAX, ..cfg() }).unwrap_err();
        assert_eq!(err.key(), "auth.leeway_secs");
    }

    #[test]
    fn default_config_builds_and_debug_hides_keys() {
        let v = TokenVerifier::from_config(&AuthConfig::default()).unwrap();
        assert_eq!(format!("{v:?}"), r#"TokenVerifier { HS256: "ready", RS256: "no key", ES256: "no key" }"#);
        let v = verifier();
        assert!(!format!("{v:?}").contains(SECRET));
    }

    #[test]
    fn verifier_is_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<TokenVerifier>();
    }

    #[test]
    fn token_error_messages() {
        assert_eq!(TokenError::Expired.to_string(), "token expired");
        assert_eq!(invalid("bad signature").to_string(), "invalid token: bad signature");
    }
}
