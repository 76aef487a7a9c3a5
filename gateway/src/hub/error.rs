//! Errors raised while building the hub.

use super::auth::AuthSetupError;

/// Why the hub could not start. Always an operator (configuration) fault.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The engine's settings are unusable (for example a malformed Redis URL).
    #[error("engine: {0}")]
    Engine(String),
}
