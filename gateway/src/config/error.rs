//! The config layer's error type.
//!
//! Every problem is a [`FieldError`] naming the dotted key path it concerns
//! and, for parse problems, where the key came from (a file position or an
//! environment variable). [`ConfigError`] carries all of them so an operator
//! fixes a file in one pass instead of one error per restart.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in the TOML text, both 1-based.
    File { line: usize, column: usize },
    /// An environment override such as `SWITCHBOARD_API__KEY`.
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { line, column } => write!(f, "line {line}, column {column}"),
            Self::Env { var } => write!(f, "set by {var}"),
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted key path such as `channels.namespaces[1].name`; empty when the
    /// problem is not tied to a key (a TOML syntax error).
    pub path: String,
    /// What is wrong, lowercase, stating the limit that was broken.
    pub message: String,
    /// Where the offending key was written, when known.
    pub origin: Option<Origin>,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), origin: None }
    }

    pub(crate) fn with_origin(mut self, origin: Option<Origin>) -> Self {
        self.origin = origin;
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " ({origin})")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded or was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    /// The text is not valid TOML, or a key is unknown or holds the wrong type.
    #[error("config does not parse ({} {}){}", .0.len(), plural(.0.len()), list(.0))]
    Parse(Vec<FieldError>),
    /// Every key is known and well typed, but values break the rules.
    #[error("config is invalid ({} {}){}", .0.len(), plural(.0.len()), list(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Returns every individual problem; empty for [`ConfigError::Read`].
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Self::Read { .. } => &[],
            Self::Parse(errors) | Self::Invalid(errors) => errors,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "error" } else { "errors" }
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_error_with_its_origin() {
        let err = ConfigError::Parse(vec![
            FieldError::new("server.foo", "unknown key").with_origin(Some(Origin::File { line: 3, column: 1 })),
            FieldError::new("api.kee", "unknown key")
                .with_origin(Some(Origin::Env { var: "SWITCHBOARD_API__KEE".into() })),
        ]);
        assert_eq!(
            err.to_string(),
            "config does not parse (2 errors)\n  server.foo: unknown key (line 3, column 1)\n  \
             api.kee: unknown key (set by SWITCHBOARD_API__KEE)"
        );
    }

    #[test]
    fn display_without_path_shows_message_only() {
        let err = ConfigError::Invalid(vec![FieldError::new("", "boom")]);
        assert_eq!(err.to_string(), "config is invalid (1 error)\n  boom");
        assert_eq!(err.errors().len(), 1);
    }
}
