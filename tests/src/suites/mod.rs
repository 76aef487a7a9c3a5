//! The end-to-end suites: one test binary, one module per capability.

mod auth;
mod client;
mod history;
mod ordering;
mod origin;
mod presence;
mod protocol_errors;
mod recovery;
mod smoke;
mod timers;
