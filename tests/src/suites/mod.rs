//! The end-to-end suites: one test binary, one module per capability.

mod api;
mod auth;
mod catalogue;
mod client;
mod curl;
mod history;
mod lifecycle;
mod ordering;
mod origin;
mod presence;
mod protobuf;
mod protocol_errors;
mod recovery;
mod sdk_js;
mod sdk_js_fallback;
mod sdk_js_protobuf;
mod sdk_python;
mod server_side;
mod slow;
mod slowloris;
mod smoke;
mod timers;
mod tls;
mod transports;
