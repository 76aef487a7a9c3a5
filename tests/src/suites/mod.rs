//! The end-to-end suites: one test binary, one module per capability.

mod client;
mod history;
mod ordering;
mod presence;
mod recovery;
mod smoke;
