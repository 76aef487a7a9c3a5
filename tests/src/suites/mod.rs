//! The end-to-end suites: one test binary, one module per capability.

mod client;
mod history;
mod ordering;
mod presence;
mod protocol_errors;
mod recovery;
mod smoke;
mod timers;
