//! The WebSocket `Origin` check.

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

    #[test]
    fn empty_list_allows_all() {
        assert!(origin_allowed("https://anything", &[]));
    }
}
