//! The WebSocket `Origin` check, and what a request forwards to connect
//! plugins (allow-listed headers; cookies only behind the origin check).

use crate::config::Config;

/// The headers connect plugins get from a client's request: those named in
/// `client.forward_headers` (names lowercase), plus one `cookie` header with
/// only the cookies named in `client.forward_cookies`. Cookies are honoured
/// only when the request carries an `Origin` that matched an entry of
/// `server.allowed_origins`: a browser attaches cookies to a WebSocket that
/// any page opens, so neither a missing Origin nor the allow-all empty list
/// may vouch for them.
pub fn forwarded_headers(headers: &http::HeaderMap, config: &Config) -> Vec<(String, String)> {
    let client = &config.client;
    let mut out = Vec::new();
    for name in &client.forward_headers {
        for value in headers.get_all(name.as_str()) {
            if let Ok(value) = value.to_str() {
                out.push((name.to_ascii_lowercase(), value.to_owned()));
            }
        }
    }
    if client.forward_cookies.is_empty() {
        return out;
    }
    let allowed = &config.server.allowed_origins;
    let origin_ok = headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| !allowed.is_empty() && origin_allowed(o, allowed));
    if !origin_ok {
        return out;
    }
    let mut kept = Vec::new();
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in cookie::Cookie::split_parse(value).flatten() {
            if client.forward_cookies.iter().any(|n| n == cookie.name()) {
                kept.push(format!("{}={}", cookie.name(), cookie.value()));
            }
        }
    }
    if !kept.is_empty() {
        out.push(("cookie".to_owned(), kept.join("; ")));
    }
    out
}

/// Whether `origin` may open a WebSocket given `server.allowed_origins`.
/// An empty list allows every origin. Patterns are exact
/// (`https://app.example.com`) or have one leading wildcard label
/// (`https://*.example.com`, which matches subdomains but not the apex).
/// Comparison ignores ASCII case, as origins are case-insensitive.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let origin = origin.to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.split_once("://*.") {
            Some((scheme, suffix)) => origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .and_then(|host| host.strip_suffix(suffix))
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1 && !sub[..sub.len() - 1].contains('/')),
            None => origin == pattern,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_and_wildcard_patterns() {
        let allowed = list(&["https://app.example.com", "https://*.example.org"]);
        assert!(origin_allowed("https://app.example.com", &allowed));
        assert!(origin_allowed("HTTPS://APP.example.com", &allowed));
        assert!(!origin_allowed("http://app.example.com", &allowed));
        assert!(!origin_allowed("https://evil.com", &allowed));
        assert!(origin_allowed("https://a.example.org", &allowed));
        assert!(origin_allowed("https://a.b.example.org", &allowed));
        assert!(!origin_allowed("https://example.org", &allowed));
        assert!(!origin_allowed("https://evilexample.org", &allowed));
        assert!(!origin_allowed("http://a.example.org", &allowed));
    }

    fn request(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (k, v) in pairs {
            headers.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_headers_keep_the_allow_list_and_cookies_only_behind_a_matched_origin() {
        let mut config = Config::default();
        config.client.forward_headers = vec!["X-Request-Id".into()];
        config.client.forward_cookies = vec!["session".into()];
        config.server.allowed_origins = list(&["https://app.example.com"]);
        let cookies = ("cookie", "theme=dark; session=abc123; other=1");
        let with = |config: &Config, origin: Option<&str>| {
            let mut pairs = vec![("x-request-id", "r1"), ("authorization", "Bearer x"), cookies];
            pairs.extend(origin.map(|o| ("origin", o)));
            forwarded_headers(&request(&pairs), config)
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            with(&config, Some("https://app.example.com")),
            vec![pair("x-request-id", "r1"), pair("cookie", "session=abc123")]
        );
        assert_eq!(with(&config, Some("https://evil.example.com")), vec![pair("x-request-id", "r1")]);
        assert_eq!(with(&config, None), vec![pair("x-request-id", "r1")], "no Origin: no cookies");
        config.server.allowed_origins.clear();
        let allow_all = with(&config, Some("https://app.example.com"));
        assert_eq!(allow_all, vec![pair("x-request-id", "r1")], "allow-all vouches for none");
    }

    #[test]
    fn empty_list_allows_all() {
        assert!(origin_allowed("https://anything", &[]));
    }
}
