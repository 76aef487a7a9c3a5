//! hub
pub mod auth;
