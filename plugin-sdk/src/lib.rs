//! Guest-side SDK for Switchboard plugins.
//!
//! Empty until the plugin platform lands: it will own the WIT contract in
//! `plugin-sdk/wit/` and wrap the single `wit_bindgen::generate!`.
