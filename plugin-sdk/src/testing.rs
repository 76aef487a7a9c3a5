//! In-memory doubles for the host imports, for native unit tests of plugin
//! logic (this module does not exist on wasm32).
//!
//! State is per thread, and each test runs on its own thread, so tests do
//! not see each other's keys or logs. The clock starts at
//! [`START_MS`] and moves only when a test moves it; `http::fetch` fails
//! until a test installs a handler.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::http::{Request, Response};
use crate::log::Level;

/// Where the test clock starts: 2026-01-01T00:00:00Z.
pub const START_MS: u64 = 1_767_225_600_000;

type Handler = Box<dyn FnMut(&Request) -> Result<Response, String>>;

struct Host {
    now_ms: u64,
    kv: HashMap<String, (Vec<u8>, Option<u64>)>,
    logs: Vec<(Level, String)>,
    counters: HashMap<String, u64>,
    histograms: HashMap<String, Vec<f64>>,
    http: Option<Handler>,
    requests: Vec<Request>,
    rng: u64,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            now_ms: START_MS,
            kv: HashMap::new(),
            logs: Vec::new(),
            counters: HashMap::new(),
            histograms: HashMap::new(),
            http: None,
            requests: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

fn with<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    HOST.with_borrow_mut(f)
}

/// Forgets every key, log line, metric, request and handler, and puts the
/// clock back to [`START_MS`].
pub fn reset() {
    with(|h| *h = Host::default());
}

/// Sets the clock (Unix milliseconds).
pub fn set_now_ms(now_ms: u64) {
    with(|h| h.now_ms = now_ms);
}

/// Moves the clock forward.
pub fn advance_ms(delta_ms: u64) {
    with(|h| h.now_ms += delta_ms);
}

/// Every line logged so far, oldest first.
pub fn logs() -> Vec<(Level, String)> {
    with(|h| h.logs.clone())
}

/// The live value of a key, ignoring expired ones.
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv::get(key)
}

/// The sum of a counter over all label sets.
pub fn counter(name: &str) -> u64 {
    with(|h| h.counters.get(name).copied().unwrap_or(0))
}

/// Every value recorded into a histogram.
pub fn histogram(name: &str) -> Vec<f64> {
    with(|h| h.histograms.get(name).cloned().unwrap_or_default())
}

/// Answers every following `http::fetch` with `handler`.
pub fn set_http_handler(handler: impl FnMut(&Request) -> Result<Response, String> + 'static) {
    with(|h| h.http = Some(Box::new(handler)));
}

/// Every request passed to `http::fetch`, oldest first.
pub fn requests() -> Vec<Request> {
    with(|h| h.requests.clone())
}

/// A response with `status`, no headers and an empty body.
pub fn response(status: u16) -> Response {
    Response { status, headers: Vec::new(), body: Vec::new() }
}

/// Same shapes as the generated import modules, so `host.rs` switches with
/// one `use`.
pub(crate) mod imp {
    pub mod log {
        use crate::log::Level;

        pub fn log(level: Level, message: &str) {
            super::super::with(|h| h.logs.push((level, message.to_owned())));
        }
    }

    pub mod kv {
        use super::super::{Host, with};

        fn live<'a>(h: &'a mut Host, key: &str) -> Option<&'a mut (Vec<u8>, Option<u64>)> {
            let now = h.now_ms;
            if h.kv.get(key).is_some_and(|(_, expires)| expires.is_some_and(|at| at <= now)) {
                h.kv.remove(key);
            }
            h.kv.get_mut(key)
        }

        pub fn get(key: &str) -> Option<Vec<u8>> {
            with(|h| live(h, key).map(|(value, _)| value.clone()))
        }

        pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
            with(|h| {
                let expires = ttl_ms.map(|ttl| h.now_ms + ttl);
                h.kv.insert(key.to_owned(), (value.to_vec(), expires));
            });
        }

        pub fn incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
            with(|h| {
                let current = live(h, key)
                    .and_then(|(value, _)| std::str::from_utf8(value).ok()?.parse::<i64>().ok())
                    .unwrap_or(0);
                let next = current.saturating_add(delta);
                let previous_expiry = live(h, key).and_then(|(_, expires)| *expires);
                let expires = ttl_ms.map(|ttl| h.now_ms + ttl).or(previous_expiry);
                h.kv.insert(key.to_owned(), (next.to_string().into_bytes(), expires));
                next
            })
        }
    }

    pub mod metrics {
        use super::super::with;

        pub fn counter_add(name: &str, value: u64, _labels: &[(String, String)]) {
            with(|h| *h.counters.entry(name.to_owned()).or_default() += value);
        }

        pub fn histogram_record(name: &str, value: f64, _labels: &[(String, String)]) {
            with(|h| h.histograms.entry(name.to_owned()).or_default().push(value));
        }
    }

    pub mod http {
        use super::super::with;
        use crate::http::{Request, Response};

        pub fn fetch(req: &Request) -> Result<Response, String> {
            // The handler runs outside the borrow so it may use the other
            // doubles (the clock, kv) itself.
            let mut handler = with(|h| {
                h.requests.push(req.clone());
                h.http.take()
            });
            let result = match handler.as_mut() {
                Some(handler) => handler(req),
                None => Err("no http handler installed (testing::set_http_handler)".to_owned()),
            };
            with(|h| {
                if h.http.is_none() {
                    h.http = handler;
                }
            });
            result
        }
    }

    pub mod clock {
        use super::super::with;

        pub fn now_ms() -> u64 {
            with(|h| h.now_ms)
        }

        pub fn monotonic_ns() -> u64 {
            with(|h| h.now_ms.saturating_mul(1_000_000))
        }
    }

    pub mod random {
        use super::super::with;

        /// splitmix64: deterministic, so tests that use jitter repeat.
        pub fn next_u64() -> u64 {
            with(|h| {
                h.rng = h.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = h.rng;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
        }

        pub fn fill(len: u32) -> Vec<u8> {
            (0..len).map(|_| next_u64() as u8).collect()
        }
    }
}

/// The 1 KiB JSON chat message of the gateway's `plugin_call` bench
/// (`gateway/benches/plugin_call.rs`, `chat_message`): text with digits,
/// dots and `@`, so content detectors look at it and find nothing. For
/// native benches of plugin hot paths.
pub fn chat_message_1kib() -> Vec<u8> {
    let words = ["meet", "at", "10.30", "tomorrow", "near", "gate", "42", "bring", "the", "@team", "notes"];
    let frame = r#"{"msg":"","room":"lobby","n":7}"#.len();
    let mut text = String::new();
    for word in words.iter().cycle() {
        if text.len() + frame >= 1024 {
            break;
        }
        text.push_str(word);
        text.push(' ');
    }
    text.truncate(1024 - frame);
    format!(r#"{{"msg":"{text}","room":"lobby","n":7}}"#).into_bytes()
}

/// The median over `samples` runs of the mean time of one `call` in a batch
/// of `batch`, in nanoseconds. Each call gets its own input from `input`,
/// made before the batch is timed, so building it is not counted.
pub fn median_ns<I, R>(
    samples: usize,
    batch: usize,
    mut input: impl FnMut() -> I,
    mut call: impl FnMut(I) -> R,
) -> f64 {
    let mut means: Vec<f64> = (0..samples)
        .map(|_| {
            let inputs: Vec<I> = (0..batch).map(|_| input()).collect();
            let start = std::time::Instant::now();
            for item in inputs {
                std::hint::black_box(call(std::hint::black_box(item)));
            }
            start.elapsed().as_secs_f64() * 1e9 / batch as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    means[means.len() / 2]
}

/// The body of each example plugin's native `hot_path` bench: `on_publish`
/// of [`chat_message_1kib`] on `plugin`, whose first result must satisfy
/// `expected`, printed as a median next to the floor (taking the message
/// and dropping it, as a pass-through does).
pub fn print_publish_hot_path<P: crate::PublishHook>(
    name: &str,
    plugin: &mut P,
    expected: impl FnOnce(&crate::PublishResult) -> bool,
) {
    let msg = crate::Message::new("chat", chat_message_1kib());
    let result = plugin.on_publish(msg.clone());
    assert!(expected(&result), "unexpected result {result:?}");
    let ns = median_ns(51, 2000, || msg.clone(), |m| plugin.on_publish(m));
    let floor = median_ns(51, 2000, || msg.clone(), drop);
    println!("{name} on_publish 1 KiB chat message: {ns:.0} ns median (drop only: {floor:.0} ns)");
}

#[cfg(test)]
mod tests {
    use crate::{clock, http, kv, log, random};

    #[test]
    fn kv_expires_with_the_clock() {
        super::reset();
        kv::set("a", b"1", Some(100));
        assert_eq!(kv::get("a"), Some(b"1".to_vec()));
        super::advance_ms(100);
        assert_eq!(kv::get("a"), None);
        assert_eq!(kv::incr("n", 2, Some(50)), 2);
        assert_eq!(kv::incr("n", 3, None), 5);
        super::advance_ms(50);
        assert_eq!(kv::incr("n", 1, None), 1, "ttl kept from the first incr, then expired");
    }

    #[test]
    fn logs_metrics_clock_random_and_http() {
        super::reset();
        log::warn!("x = {}", 1);
        assert_eq!(super::logs(), vec![(log::Level::Warn, "x = 1".to_owned())]);
        crate::metrics::counter("c", 2, &[("k", "v")]);
        crate::metrics::counter("c", 3, &[]);
        assert_eq!(super::counter("c"), 5);
        assert_eq!(clock::now_ms(), super::START_MS);
        assert_ne!(random::next_u64(), random::next_u64());
        assert_eq!(random::fill(3).len(), 3);
        let req = http::Request::new("POST", "http://h/x").body(b"b".to_vec());
        assert!(http::fetch(&req).is_err());
        super::set_http_handler(|r| Ok(super::response(if r.body == b"b" { 204 } else { 400 })));
        assert!(http::fetch(&req).unwrap().is_success());
        assert_eq!(super::requests().len(), 2);
    }
}
