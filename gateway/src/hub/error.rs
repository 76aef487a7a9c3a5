//! Errors raised while building the hub.

use super::auth::AuthSetupError;

/// Why the hub could not start. Always an operator (configuration) fault.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}
