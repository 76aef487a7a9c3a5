//! HTTP pass-through (`[[routes]]`): a request that is not a Switchboard
//! endpoint goes to the upstream of the best matching route, so the gateway
//! can be an application's one public port.
//!
//! Bodies stream both ways (nothing is buffered); each route has its own
//! pooled hyper client, so its connect timeout applies to its connector.
//! Hop-by-hop headers are dropped both ways and the upstream learns the
//! client through `X-Forwarded-For`, `-Proto` and `-Host`. WebSocket
//! upgrades are not passed through: the upstream sees a plain request.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::debug;

use crate::config::{Config, RouteConfig};

/// A body error, boxed: the upstream may fail mid-stream.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the listener sends.
pub(super) type AnyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Route {
    prefix: String,
    /// Lowercase; `None` matches any host.
    host: Option<String>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without its trailing `/`.
    base_path: String,
    response_timeout: Duration,
    client: Client<HttpConnector, Incoming>,
}

/// The configured routes, best match first.
pub(super) struct PassThrough {
    routes: Vec<Route>,
}

impl PassThrough {
    /// Builds one pooled client per route. Validation has checked every
    /// upstream URL; a route whose URL still does not parse is skipped.
    pub fn from_config(config: &Config) -> Self {
        let mut routes: Vec<Route> = config.routes.iter().filter_map(|r| Route::new(r, config)).collect();
        // Host-specific routes first, then the longest prefix.
        routes.sort_by(|a, b| b.host.is_some().cmp(&a.host.is_some()).then(b.prefix.len().cmp(&a.prefix.len())));
        Self { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            path.starts_with(r.prefix.as_str()) && r.host.as_deref().is_none_or(|h| host.is_some_and(|x| x == h))
        })
    }

    /// Passes `req` to its route's upstream; `Err(req)` when no route matches.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<Response<AnyBody>, Request<Incoming>> {
        let host = request_host(&req);
        let Some(route) = self.find(host.as_deref(), req.uri().path()) else { return Err(req) };
        Ok(route.forward(req, peer, tls, host).await)
    }
}

impl Route {
    fn new(config: &RouteConfig, all: &Config) -> Option<Self> {
        let upstream: Uri = config.upstream.parse().ok()?;
        let parts = upstream.into_parts();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(all.server.upstream_idle_timeout_secs))
            .pool_max_idle_per_host(all.server.upstream_max_idle_per_host)
            .build(connector);
        Some(Self {
            prefix: config.path_prefix.clone(),
            host: (!config.host.is_empty()).then(|| config.host.to_ascii_lowercase()),
            scheme: parts.scheme?,
            authority: parts.authority?,
            base_path: parts.path_and_query.map(|p| p.path().trim_end_matches('/').to_owned()).unwrap_or_default(),
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            client,
        })
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
        host: Option<String>,
    ) -> Response<AnyBody> {
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{}", self.base_path, path_and_query);
        let uri =
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(target).build();
        let Ok(uri) = uri else { return error(StatusCode::BAD_REQUEST, "bad request target") };
        let original_host = parts.headers.get(header::HOST).cloned();
        strip_hop_by_hop(&mut parts.headers);
        // The upstream gets its own authority as Host (set by the client
        // from the URI); the client's is in X-Forwarded-Host.
        parts.headers.remove(header::HOST);
        add_forwarded(&mut parts.headers, peer, tls, original_host.or_else(|| host.and_then(|h| h.parse().ok())));
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let request = Request::from_parts(parts, body);
        let response = match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                debug!(upstream = %self.authority, error = %e, "pass-through upstream failed");
                return error(StatusCode::BAD_GATEWAY, "upstream unavailable");
            }
            Err(_) => {
                debug!(upstream = %self.authority, "pass-through upstream timed out");
                return error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out");
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
    }
}

/// The request's host without port, lowercase: the URI's (HTTP/2, absolute
/// form) or the `Host` header's.
fn request_host(req: &Request<Incoming>) -> Option<String> {
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        let value = req.headers().get(header::HOST)?.to_str().ok()?;
        value.parse::<Authority>().ok().map(|a| a.host().to_owned())
    })?;
    Some(host.to_ascii_lowercase())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, tls: bool, host: Option<HeaderValue>) {
    const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    let ip = peer.ip().to_string();
    // Append to a chain set by proxies in front of this one.
    let chain = match headers.get(&FOR).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => format!("{before}, {ip}"),
        _ => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(FOR, value);
    }
    headers.insert(PROTO, HeaderValue::from_static(if tls { "https" } else { "http" }));
    match host {
        Some(host) => {
            headers.insert(HOST, host);
        }
        None => {
            headers.remove(HOST);
        }
    }
}

fn error(status: StatusCode, message: &'static str) -> Response<AnyBody> {
    let body = format!(r#"{{"error":"{message}"}}"#);
    let mut resp =
        Response::new(http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn forwarded_headers_append_to_an_existing_chain() {
        let peer: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        add_forwarded(&mut headers, peer, true, Some(HeaderValue::from_static("app.example.com")));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
    }

    #[tokio::test]
    async fn host_routes_win_then_the_longest_prefix() {
        let mut config = Config::default();
        for (prefix, host, upstream) in [
            ("/", "", "http://127.0.0.1:1"),
            ("/app/", "", "http://127.0.0.1:2/base/"),
            ("/", "shop.example.com", "http://127.0.0.1:3"),
        ] {
            config.routes.push(RouteConfig {
                path_prefix: prefix.into(),
                host: host.into(),
                upstream: upstream.into(),
                ..RouteConfig::default()
            });
        }
        let pass = PassThrough::from_config(&config);
        let port = |host: Option<&str>, path: &str| pass.find(host, path).map(|r| r.authority.port_u16().unwrap());
        assert_eq!(port(Some("shop.example.com"), "/app/x"), Some(3));
        assert_eq!(port(Some("other.example.com"), "/app/x"), Some(2));
        assert_eq!(port(None, "/elsewhere"), Some(1));
        assert_eq!(pass.find(None, "/app/x").unwrap().base_path, "/base");
    }
}
