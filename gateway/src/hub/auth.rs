//! TEMP stub: replaced by the auth branch.
use crate::config::AuthConfig;
use crate::protocol::Payload;
pub struct TokenVerifier { secret: String }
pub struct ConnectClaims { pub user: String, pub expires_at: Option<u64>, pub info: Option<Payload>, pub channels: Vec<String> }
pub struct SubscribeClaims { pub channel: String, pub expires_at: Option<u64>, pub info: Option<Payload> }
#[derive(Debug, thiserror::Error)]
pub enum TokenError { #[error("token expired")] Expired, #[error("invalid token: {0}")] Invalid(String) }
#[derive(Debug, thiserror::Error)]
#[error("auth setup")]
pub struct AuthSetupError;
impl TokenVerifier {
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> { Ok(Self { secret: cfg.token_hmac_secret.clone() }) }
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, TokenError> {
        let _ = &self.secret;
        if token.is_empty() { return Err(TokenError::Invalid("empty".into())) }
        Ok(ConnectClaims { user: token.into(), expires_at: None, info: None, channels: vec![] })
    }
    pub fn verify_subscribe(&self, _token: &str, channel: &str, _u: &str) -> Result<SubscribeClaims, TokenError> { Ok(SubscribeClaims { channel: channel.into(), expires_at: None, info: None }) }
}
