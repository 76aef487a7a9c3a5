//! Configuration: the TOML schema, its single set of defaults, and validation.
//!
//! Owns parsing and checking only. It binds no sockets, reads no key files and
//! holds no runtime state; every other module receives a validated [`Config`].
//! Each struct denies unknown keys, and each `Default` impl is the only place a
//! default value is written down. `config/gateway.toml` mirrors these defaults
//! and a test keeps the two equal.

mod resolve_stub;
mod schema;

pub use schema::*;
