//! The end-to-end suites: one test binary, one module per capability.

mod server_side;
mod slowloris;
mod smoke;
