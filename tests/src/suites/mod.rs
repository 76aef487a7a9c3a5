//! The end-to-end suites: one test binary, one module per capability.

mod sdk_js;
mod sdk_python;
mod smoke;
