//! Observability end to end: one trace across API, plugins, broker, delivery
//! and the webhook it triggers (exported over real OTLP/HTTP to a receiver
//! in this test), and `/metrics` scraped and parsed after a scripted
//! workload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard::config::{NamespaceConfig, PluginConfig, TelemetryConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::*;

/// One exported span, flattened for assertions.
#[derive(Debug, Clone)]
struct SpanRecord {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
    /// Names of the attributes exported as OTLP integers.
    ints: std::collections::HashSet<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any_value_text(value: Option<&any_value::Value>) -> String {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// What the OTLP receiver got.
#[derive(Clone, Default)]
struct Collected {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    metric_exports: Arc<Mutex<usize>>,
    arrived: Arc<Notify>,
}

impl Collected {
    fn record(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), any_value_text(kv.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect();
                    let ints = span
                        .attributes
                        .iter()
                        .filter(|kv| {
                            matches!(
                                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                Some(any_value::Value::IntValue(_))
                            )
                        })
                        .map(|kv| kv.key.clone())
                        .collect();
                    spans.push(SpanRecord {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        attributes,
                        ints,
                    });
                }
            }
        }
        drop(spans);
        self.arrived.notify_waiters();
    }

    fn of_trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        self.spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    /// Waits until the trace holds a span named each of `names`.
    async fn wait_for(&self, trace_id: &str, names: &[&str]) -> Result<Vec<SpanRecord>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let arrived = self.arrived.notified();
            let spans = self.of_trace(trace_id);
            let missing: Vec<&&str> = names.iter().filter(|n| !spans.iter().any(|s| s.name == **n)).collect();
            if missing.is_empty() {
                return Ok(spans);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                bail!("trace {trace_id} lacks {missing:?}; has {seen:?}");
            }
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

/// Serves OTLP/HTTP (protobuf): `/v1/traces` decoded with the
/// `opentelemetry-proto` types, `/v1/metrics` counted.
async fn serve_otlp(listener: TcpListener, collected: Collected) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let collected = collected.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let collected = collected.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let status = match path.as_str() {
                        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
                            Ok(request) => {
                                collected.record(request);
                                200
                            }
                            Err(_) => 400,
                        },
                        "/v1/metrics" => {
                            *collected.metric_exports.lock().unwrap() += 1;
                            200
                        }
                        _ => 404,
                    };
                    let body = ExportTraceServiceResponse::default().encode_to_vec();
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    resp.headers_mut().insert("content-type", "application/x-protobuf".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The process-wide OTLP receiver and the `[telemetry]` pointing at it.
/// Span export is process-wide (like `main.rs` sets it up), so the receiver
/// and the exporter live on a runtime of their own that outlives every test.
fn receiver() -> &'static (Collected, TelemetryConfig) {
    static RECEIVER: OnceLock<(Collected, TelemetryConfig)> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let telemetry = TelemetryConfig {
                    endpoint: format!("http://{addr}"),
                    trace_export_interval_ms: 100,
                    metrics_export_interval_ms: 500,
                    ..TelemetryConfig::default()
                };
                let mut settings = switchboard::transport::telemetry_settings(&telemetry);
                // Other suites share this process: keep their logs quiet.
                settings.log_filter = Some("warn".into());
                let installed = switchboard::telemetry::init(&settings).expect("install telemetry");
                // Exports for the rest of the process.
                std::mem::forget(installed);
                let collected = Collected::default();
                tx.send((collected.clone(), telemetry)).unwrap();
                serve_otlp(listener, collected).await;
            });
        });
        rx.recv().expect("otlp receiver started")
    })
}

/// A backend for the webhook plugin: answers 200 and hands over each
/// request's headers and body.
async fn webhook_backend() -> Result<(SocketAddr, mpsc::UnboundedReceiver<(HashMap<String, String>, Value)>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let headers: HashMap<String, String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = tx.send((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((addr, rx))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand_byte())).collect()
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.finish() as u8
}

fn span<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_an_api_publish_through_plugins_broker_delivery_and_the_webhook() -> Result<()> {
    let (collected, telemetry) = receiver();
    let (hook_addr, mut hooks) = webhook_backend().await?;

    let mut config = test_config();
    config.telemetry = telemetry.clone();
    config.plugin_runtime.cache_dir = std::env::temp_dir().join("switchboard-test-plugin-cache").display().to_string();
    let mut upper = toml::Table::new();
    upper.insert("mode".into(), "upper".into());
    let mut webhook = toml::Table::new();
    webhook.insert("url".into(), format!("http://{hook_addr}/hook").into());
    webhook.insert("secret".into(), "s3cret".into());
    webhook.insert("kinds".into(), toml::Value::Array(vec!["publish".into()]));
    config.plugins = vec![
        PluginConfig {
            name: "upper".into(),
            path: test_guest("transform")?.display().to_string(),
            config: upper,
            timeout_ms: 1000,
            ..PluginConfig::default()
        },
        PluginConfig {
            name: "webhook".into(),
            path: example_plugin("webhook")?.display().to_string(),
            config: webhook,
            grants: ["http", "kv", "log", "clock", "random"].map(String::from).to_vec(),
            allowed_hosts: vec![hook_addr.to_string()],
            pool_size: 1,
            timeout_ms: 5000,
            ..PluginConfig::default()
        },
    ];
    config.pipelines.events = vec!["webhook".into()];
    config.channels.namespaces.push(NamespaceConfig {
        name: "traced".into(),
        allow_subscribe_for_client: true,
        publish_pipeline: Some(vec!["upper".into()]),
        ..NamespaceConfig::default()
    });
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = ws.call(json!({"subscribe": {"channel": "traced:room"}})).await?;
    ensure!(reply.get("subscribe").is_some(), "subscribe: {reply}");

    let (trace_id, parent) = (random_hex(16), random_hex(8));
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let body = json!({"channel": "traced:room", "data": {"msg": "hi"}}).to_string();
    let resp = gw.api().raw("publish", &body, &[("x-api-key", API_KEY), ("traceparent", &traceparent)]).await?;
    assert_eq!(resp.status, 200);
    assert!(resp.body.get("result").is_some(), "{}", resp.body);
    let push = ws.next_push().await?;
    assert_eq!(push["pub"]["data"], json!({"MSG": "HI"}), "the plugin pipeline ran: {push}");

    // The webhook the publication triggered joins the same trace.
    let (headers, batch) = tokio::time::timeout(WAIT, hooks.recv()).await?.context("webhook backend gone")?;
    assert_eq!(batch["events"][0]["kind"], "publish");
    assert_eq!(batch["events"][0]["channel"], "traced:room");
    let hook_traceparent = headers.get("traceparent").context("webhook request without traceparent")?;
    assert_eq!(hook_traceparent.split('-').nth(1), Some(trace_id.as_str()), "{hook_traceparent}");
    assert_eq!(batch["events"][0]["traceparent"], json!(hook_traceparent));

    let fetch_name = format!("POST http://{hook_addr}/hook");
    let spans = collected
        .wait_for(
            &trace_id,
            &[
                "POST /api/publish",
                "plugin upper on-publish",
                "broker publish",
                "delivery",
                "plugin webhook on-events",
                &fetch_name,
            ],
        )
        .await?;

    let api = span(&spans, "POST /api/publish");
    assert_eq!(api.parent_span_id, parent, "the API span's parent is the caller's span");
    assert_eq!(api.attributes["api.method"], "publish");
    assert_eq!(api.attributes["http.response.status_code"], "200");
    let upper = span(&spans, "plugin upper on-publish");
    assert_eq!(upper.attributes["plugin.name"], "upper");
    assert_eq!(upper.attributes["plugin.hook"], "on-publish");
    assert_eq!(upper.attributes["plugin.outcome"], "ok");
    let broker = span(&spans, "broker publish");
    assert_eq!(broker.attributes["messaging.destination.name"], "traced:room");
    assert_eq!(broker.attributes["engine"], "memory");
    let delivery = span(&spans, "delivery");
    assert_eq!(delivery.attributes["subscribers"], "1");
    assert_eq!(delivery.attributes["delivered"], "1");
    assert!(delivery.attributes["bytes"].parse::<u64>()? > 0);
    // Numbers go out as OTLP integers, as the semantic conventions type
    // them, not as their decimal text.
    for (span, key) in [
        (api, "http.response.status_code"),
        (broker, "offset"),
        (delivery, "subscribers"),
        (delivery, "delivered"),
        (delivery, "bytes"),
    ] {
        assert!(span.ints.contains(key), "{} {key} is not an integer: {:?}", span.name, span.attributes[key]);
    }
    assert_eq!(delivery.parent_span_id, broker.span_id, "delivery happens inside the broker publish");
    let hook = span(&spans, "plugin webhook on-events");
    assert_eq!(hook.attributes["plugin.name"], "webhook");
    assert_eq!(hook.attributes["plugin.hook"], "on-events");
    let fetch = span(&spans, &fetch_name);
    assert_eq!(fetch.attributes["http.response.status_code"], "200");
    assert!(fetch.ints.contains("http.response.status_code"), "the fetch status is an integer");

    // Everything in the trace descends from the API span, which hangs off
    // the caller's parent.
    let by_id: HashMap<&str, &SpanRecord> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for s in &spans {
        let mut at = s;
        while at.span_id != api.span_id {
            at = by_id
                .get(at.parent_span_id.as_str())
                .unwrap_or_else(|| panic!("span {} does not descend from the API span", s.name));
        }
    }
    gw.shutdown().await
}

/// Parses a `/metrics` scrape.
async fn scrape(gw: &TestGateway) -> Result<prometheus_parse::Scrape> {
    let resp = http_request_text(gw.addr, "GET", "/metrics", &[], b"").await?;
    ensure!(resp.status == 200, "GET /metrics answered {}", resp.status);
    ensure!(resp.head.contains("content-type: text/plain; version=0.0.4"), "{}", resp.head);
    Ok(prometheus_parse::Scrape::parse(resp.body.lines().map(|l| Ok(l.to_owned())))?)
}

/// The value of `metric` with exactly these labels (0 when absent); for a
/// histogram, its observation count.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.len() == labels.len())
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(0.0, |s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().find(|b| b.less_than.is_infinite()).map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// Scrapes until `metric{labels}` equals `want` (the server applies a
/// client's close asynchronously).
async fn wait_value(gw: &TestGateway, metric: &str, labels: &[(&str, &str)], want: f64) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = value(&scrape(gw).await?, metric, labels);
        if got == want {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{metric}{labels:?} stayed {got}, want {want}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn metrics_endpoint_counts_a_scripted_workload_exactly() -> Result<()> {
    let mut config = test_config();
    // History for recovery; no join/leave pushes interleaving with publications.
    config.channels.namespaces.push(NamespaceConfig {
        name: "feed".into(),
        history_size: 10,
        history_ttl_secs: 60,
        force_recovery: true,
        allow_subscribe_for_client: true,
        ..NamespaceConfig::default()
    });
    let gw = TestGateway::start_with(config).await?;
    let before = scrape(&gw).await?;
    let diff = |after: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]| {
        value(after, metric, labels) - value(&before, metric, labels)
    };

    let (mut alice, _) = gw.connect("alice").await?;
    let (mut bob, _) = gw.connect("bob").await?;
    let sub = alice.call(json!({"subscribe": {"channel": "feed:m"}})).await?;
    let epoch = sub["subscribe"]["epoch"].as_str().context("chat is recoverable")?.to_owned();
    bob.call(json!({"subscribe": {"channel": "feed:m"}})).await?;
    for n in 0..3 {
        gw.api().result("publish", json!({"channel": "feed:m", "data": {"n": n}})).await?;
        for ws in [&mut alice, &mut bob] {
            assert_eq!(ws.next_push().await?["pub"]["data"], json!({"n": n}));
        }
    }
    // One recovery that succeeds and one from an epoch that never existed.
    let (mut carol, _) = gw.connect("carol").await?;
    let recovered =
        carol.call(json!({"subscribe": {"channel": "feed:m", "recover": true, "offset": 1, "epoch": epoch}})).await?;
    assert_eq!(recovered["subscribe"]["recovered"], json!(true), "{recovered}");
    let (mut dave, _) = gw.connect("dave").await?;
    let lost =
        dave.call(json!({"subscribe": {"channel": "feed:m", "recover": true, "offset": 1, "epoch": "gone"}})).await?;
    assert_ne!(lost["subscribe"]["recovered"], json!(true), "{lost}");
    drop(bob);
    wait_value(&gw, "switchboard_connections", &[("transport", "websocket")], 3.0).await?;

    let after = scrape(&gw).await?;
    assert_eq!(diff(&after, "switchboard_connections", &[("transport", "websocket")]), 3.0);
    assert_eq!(diff(&after, "switchboard_subscriptions", &[]), 3.0, "4 subscribed, bob's ended");
    assert_eq!(value(&after, "switchboard_channels", &[]), 1.0);
    assert_eq!(diff(&after, "switchboard_messages_published_total", &[]), 3.0);
    assert_eq!(diff(&after, "switchboard_messages_delivered_total", &[]), 6.0);
    assert_eq!(diff(&after, "switchboard_disconnects_total", &[("code", "3000")]), 1.0);
    assert_eq!(diff(&after, "switchboard_recoveries_total", &[("outcome", "recovered")]), 1.0);
    assert_eq!(diff(&after, "switchboard_recoveries_total", &[("outcome", "not_recovered")]), 1.0);
    let commands = "switchboard_command_duration_seconds";
    assert_eq!(diff(&after, commands, &[("method", "connect"), ("result", "ok")]), 4.0);
    assert_eq!(diff(&after, commands, &[("method", "subscribe"), ("result", "ok")]), 4.0);
    let api = "http_server_request_duration_seconds";
    let publish = [("http_request_method", "POST"), ("http_route", "publish"), ("http_response_status_code", "200")];
    assert_eq!(diff(&after, api, &publish), 3.0);
    assert!(diff(&after, "switchboard_network_io_bytes_total", &[("network_io_direction", "receive")]) > 0.0);
    assert!(diff(&after, "switchboard_network_io_bytes_total", &[("network_io_direction", "transmit")]) > 0.0);
    gw.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_crosses_nodes_through_redis() -> Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let hostport = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    if tokio::net::TcpStream::connect(&hostport).await.is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but Redis at {url} is unreachable");
        eprintln!("skipped: Redis at {url} is unreachable");
        return Ok(());
    }
    let (collected, telemetry) = receiver();
    let prefix = format!("sbtest-otel-{}-{}", std::process::id(), random_hex(6));
    let node = || {
        let mut config = test_config();
        config.telemetry = telemetry.clone();
        config.engine.kind = switchboard::config::EngineKind::Redis;
        config.engine.redis_url = url.clone();
        config.engine.redis_prefix = prefix.clone();
        config.channels.namespaces.push(NamespaceConfig {
            name: "feed".into(),
            history_size: 10,
            history_ttl_secs: 60,
            allow_subscribe_for_client: true,
            ..NamespaceConfig::default()
        });
        config
    };
    let a = TestGateway::start_with(node()).await?;
    let b = TestGateway::start_with(node()).await?;
    let (mut bob, _) = b.connect("bob").await?;
    let reply = bob.call(json!({"subscribe": {"channel": "feed:x"}})).await?;
    ensure!(reply.get("subscribe").is_some(), "subscribe: {reply}");

    let (trace_id, parent) = (random_hex(16), random_hex(8));
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let body = json!({"channel": "feed:x", "data": {"n": 1}}).to_string();
    let resp = a.api().raw("publish", &body, &[("x-api-key", API_KEY), ("traceparent", &traceparent)]).await?;
    assert!(resp.body.get("result").is_some(), "{}", resp.body);
    assert_eq!(bob.next_push().await?["pub"]["data"], json!({"n": 1}));

    let spans = collected.wait_for(&trace_id, &["POST /api/publish", "broker publish", "delivery"]).await?;
    let api = span(&spans, "POST /api/publish");
    assert_eq!(api.parent_span_id, parent);
    let broker = span(&spans, "broker publish");
    assert_eq!(broker.attributes["engine"], "redis");
    // Only node B has a subscriber, so the one delivery span is B's, under
    // a `broker receive` that continues A's publish.
    let delivery = span(&spans, "delivery");
    assert_eq!(delivery.attributes["delivered"], "1");
    let receive = spans.iter().find(|s| s.span_id == delivery.parent_span_id).context("delivery without parent")?;
    assert_eq!(receive.name, "broker receive");
    assert_eq!(receive.parent_span_id, broker.span_id, "the context travelled through Redis");
    a.shutdown().await?;
    b.shutdown().await
}
