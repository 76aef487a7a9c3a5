//! Safe wrappers around the host imports. Each module is one grantable
//! capability: a component imports an interface only if the plugin calls
//! into that module, and the host refuses a component that imports an
//! interface its operator did not grant.
//!
//! On wasm32 they call the host; on other targets they use the in-memory
//! doubles of [`crate::testing`], so plugin logic runs in native unit tests.

#[cfg(target_arch = "wasm32")]
use crate::bindings::switchboard::plugin as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::imp;

/// Logging through the host's structured log, tagged with the plugin name.
///
/// The macros format like `format!`:
/// `switchboard_plugin_sdk::log::warn!("user {user} blocked")`.
pub mod log {
    pub use crate::bindings::switchboard::plugin::log::Level;

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        super::imp::log::log(level, message);
    }

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    pub fn error(message: &str) {
        log(Level::Error, message);
    }

    #[doc(inline)]
    pub use crate::{
        __log_debug as debug, __log_error as error, __log_info as info, __log_trace as trace, __log_warn as warn,
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}

/// Key-value storage, namespaced per plugin by the host. TTLs are in
/// milliseconds; `None` keeps the key until the host evicts it.
pub mod kv {
    pub fn get(key: &str) -> Option<Vec<u8>> {
        super::imp::kv::get(key)
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
        super::imp::kv::set(key, value, ttl_ms);
    }

    /// Adds `delta` and returns the new value; a missing (or expired) key
    /// counts as 0. The TTL applies to the key after the update.
    pub fn incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
        super::imp::kv::incr(key, delta, ttl_ms)
    }

    /// The value as UTF-8 text; `None` when missing or not UTF-8.
    pub fn get_string(key: &str) -> Option<String> {
        get(key).and_then(|bytes| String::from_utf8(bytes).ok())
    }
}

/// Counters and histograms, exported by the gateway's metrics endpoint with
/// the plugin's name as a label.
pub mod metrics {
    pub fn counter(name: &str, value: u64, labels: &[(&str, &str)]) {
        super::imp::metrics::counter_add(name, value, &owned(labels));
    }

    pub fn histogram(name: &str, value: f64, labels: &[(&str, &str)]) {
        super::imp::metrics::histogram_record(name, value, &owned(labels));
    }

    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }
}

/// Outbound HTTP, limited by the host to the plugin's `allowed_hosts`.
///
/// The call blocks the guest while the host does the request
/// asynchronously; the time spent waiting is bounded by `timeout_ms` and
/// the host decides whether it counts against the hook's budget.
pub mod http {
    pub use crate::bindings::switchboard::plugin::http::{Request, Response};

    /// Timeout of a request built with [`Request::new`], in milliseconds.
    pub const DEFAULT_TIMEOUT_MS: u32 = 2_000;

    impl Request {
        /// A request with no headers, an empty body and
        /// [`DEFAULT_TIMEOUT_MS`].
        pub fn new(method: &str, url: &str) -> Self {
            Request {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: DEFAULT_TIMEOUT_MS,
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
            self.timeout_ms = timeout_ms;
            self
        }
    }

    impl Response {
        /// True for 2xx.
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }

        /// The first header named `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// Sends the request. `Err` is a transport failure (refused host,
    /// timeout, connection error); any HTTP status is an `Ok`.
    pub fn fetch(req: &Request) -> Result<Response, String> {
        super::imp::http::fetch(req)
    }
}

/// Time as the host sees it.
pub mod clock {
    /// Unix time in milliseconds.
    pub fn now_ms() -> u64 {
        super::imp::clock::now_ms()
    }

    /// Monotonic nanoseconds, for measuring durations.
    pub fn monotonic_ns() -> u64 {
        super::imp::clock::monotonic_ns()
    }
}

/// Randomness from the host.
pub mod random {
    pub fn fill(len: u32) -> Vec<u8> {
        super::imp::random::fill(len)
    }

    pub fn next_u64() -> u64 {
        super::imp::random::next_u64()
    }

    /// A uniform-enough value in `0..bound` (0 when `bound` is 0); the
    /// modulo bias is below 2^-32 for bounds under 2^32.
    pub fn below(bound: u64) -> u64 {
        if bound == 0 { 0 } else { next_u64() % bound }
    }
}
