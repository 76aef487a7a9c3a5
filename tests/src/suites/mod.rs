//! The end-to-end suites: one test binary, one module per capability.

mod client;
mod smoke;
