//! Configuration: the TOML schema, its single set of defaults, environment
//! overrides and validation.
//!
//! Owns parsing and checking only. It binds no sockets, reads no key files and
//! holds no runtime state; every other module receives a validated [`Config`].
//! Each struct denies unknown keys, and each `Default` impl is the only place a
//! default value is written down. `config/gateway.toml` mirrors these defaults
//! and a test keeps the two equal.
//!
//! Loading is two steps: [`Config::from_toml_str`] (or [`Config::load`])
//! checks the shape and applies `SWITCHBOARD_<SECTION>__<KEY>` overrides, then
//! [`Config::validate`] checks the rules between values. Both report every
//! problem at once, each under its dotted key path.

mod env;
mod error;
mod load;
mod namespace;
mod path;
mod schema;
mod telemetry;
mod validate;

pub use env::{ENV_PREFIX, ENV_SEPARATOR, EnvSource, MapEnv, ProcessEnv};
pub use error::{ConfigError, FieldError, Origin};
pub use namespace::{NamespaceTable, channel_namespace};
pub use schema::*;
pub use telemetry::{LogFormat, OtlpProtocol, TelemetryConfig};
pub use validate::{
    CONFIG_VERSION, MAX_CHANNEL_NAME_BYTES, MIN_FRAME_BYTES, MIN_HEADER_BYTES, NAMESPACE_NAME_PATTERN,
    SUPPORTED_ALGORITHMS,
};

#[cfg(test)]
mod tests;
