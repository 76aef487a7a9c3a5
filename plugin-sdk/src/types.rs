//! The contract's types as plugins see them: the generated records and
//! variants of `switchboard:plugin/types`, plus constructors so plugin code
//! and tests don't spell out every field.

pub use crate::bindings::switchboard::plugin::types::{
    ConnectAttempt, ConnectDecision, ConnectRequest, ConnectResult, Connection, Event, EventKind, Message, Principal,
    PublishAttempt, PublishDecision, PublishResult, PublishRewrite, Publisher, RefreshDecision, RefreshGrant,
    RefreshRequest, Reject, RpcError, Session, SubRefreshRequest, SubscribeAttempt, SubscribeDecision,
    SubscribeRequest, Subscription, TraceContext, Verdict,
};

impl Reject {
    /// A refusal with an application code (400..=1999) and a reason the
    /// client sees.
    pub fn new(code: u32, reason: impl Into<String>) -> Self {
        Reject { code, reason: reason.into() }
    }
}

#[allow(clippy::derivable_impls, reason = "generated type, no derive possible")]
impl Default for TraceContext {
    fn default() -> Self {
        TraceContext { traceparent: String::new(), tracestate: String::new() }
    }
}

impl Verdict {
    /// Refuses the subscription.
    pub fn deny(code: u32, reason: impl Into<String>) -> Self {
        Verdict::Deny(Reject::new(code, reason))
    }
}

impl ConnectResult {
    /// Refuses the connection.
    pub fn deny(code: u32, reason: impl Into<String>) -> Self {
        ConnectResult::Deny(Reject::new(code, reason))
    }
}

impl PublishResult {
    /// Refuses the publish.
    pub fn deny(code: u32, reason: impl Into<String>) -> Self {
        PublishResult::Deny(Reject::new(code, reason))
    }
}

impl Principal {
    /// A principal for `user` with no info, no server-side channels and no
    /// expiry.
    pub fn new(user: impl Into<String>) -> Self {
        Principal { user: user.into(), info: None, channels: Vec::new(), expires_at: None }
    }
}

impl Session {
    /// A session for `user` with nothing else set.
    pub fn new(user: impl Into<String>) -> Self {
        Session { user: user.into(), info: None, data: None, channels: Vec::new(), expires_at: None, meta: None }
    }
}

#[allow(clippy::derivable_impls, reason = "generated type, no derive possible")]
impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            info: None,
            data: None,
            expires_at: None,
            presence: None,
            join_leave: None,
            force_recovery: None,
        }
    }
}

impl ConnectAttempt {
    /// The plain [`ConnectRequest`] view of this attempt.
    pub fn to_request(&self) -> ConnectRequest {
        ConnectRequest {
            client: self.client.clone(),
            transport: self.transport.clone(),
            user: self.user.clone(),
            claims: self.claims.clone(),
            data: self.data.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            trace: self.trace.clone(),
        }
    }

    /// The first forwarded header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl From<ConnectResult> for ConnectDecision {
    fn from(result: ConnectResult) -> Self {
        match result {
            ConnectResult::Pass => ConnectDecision::Pass,
            ConnectResult::Allow(p) => ConnectDecision::Allow(Session {
                user: p.user,
                info: p.info,
                data: None,
                channels: p.channels,
                expires_at: p.expires_at,
                meta: None,
            }),
            ConnectResult::Deny(r) => ConnectDecision::Deny(r),
        }
    }
}

impl From<Verdict> for SubscribeDecision {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Allow => SubscribeDecision::Allow(Subscription::default()),
            Verdict::Deny(r) => SubscribeDecision::Deny(r),
        }
    }
}

impl From<PublishResult> for PublishDecision {
    fn from(result: PublishResult) -> Self {
        match result {
            PublishResult::Pass => PublishDecision::Pass,
            PublishResult::Replace(msg) => PublishDecision::Replace(PublishRewrite { msg, skip_history: false }),
            PublishResult::Drop => PublishDecision::Drop,
            PublishResult::Deny(r) => PublishDecision::Deny(r),
        }
    }
}

impl Message {
    /// A JSON message on `channel` with no publisher, tags or trace.
    pub fn new(channel: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Message {
            channel: channel.into(),
            publisher: None,
            data: data.into(),
            tags: Vec::new(),
            content_type: "application/json".to_owned(),
            trace: None,
        }
    }

    /// Sets the publisher (builder style, mostly for tests).
    pub fn with_publisher(mut self, user: impl Into<String>, client: impl Into<String>) -> Self {
        self.publisher = Some(Publisher { user: user.into(), client: client.into() });
        self
    }

    /// The publishing user, empty for server-side publishes.
    pub fn user(&self) -> &str {
        self.publisher.as_ref().map_or("", |p| p.user.as_str())
    }

    /// True when the content type says JSON (`application/json`, with or
    /// without parameters, or a `+json` suffix) or is empty.
    pub fn is_json(&self) -> bool {
        let essence = self.content_type.split(';').next().unwrap_or("").trim();
        essence.is_empty() || essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
    }

    /// The value of the first tag named `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl ConnectRequest {
    /// A request from `client` for `user` with the given claims JSON; the
    /// other fields are empty (mostly for tests).
    pub fn new(client: impl Into<String>, user: impl Into<String>, claims: impl Into<String>) -> Self {
        ConnectRequest {
            client: client.into(),
            transport: "websocket".to_owned(),
            user: user.into(),
            claims: claims.into(),
            data: Vec::new(),
            name: String::new(),
            version: String::new(),
            trace: None,
        }
    }
}

impl SubscribeRequest {
    /// A request by `user` for `channel` with no data (mostly for tests).
    pub fn new(client: impl Into<String>, user: impl Into<String>, channel: impl Into<String>) -> Self {
        SubscribeRequest {
            client: client.into(),
            user: user.into(),
            channel: channel.into(),
            data: Vec::new(),
            trace: None,
        }
    }
}

impl Event {
    /// An event of `kind` at `at_ms` with the other fields empty (mostly for
    /// tests).
    pub fn new(kind: EventKind, at_ms: u64) -> Self {
        Event {
            kind,
            at_ms,
            client: String::new(),
            user: String::new(),
            channel: String::new(),
            data: Vec::new(),
            code: 0,
            trace: None,
        }
    }
}

impl EventKind {
    /// The kind's name in the WIT contract (`channel-occupied`, ...), which
    /// is also how plugins should spell it in JSON they emit.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Disconnect => "disconnect",
            EventKind::Subscribe => "subscribe",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Publish => "publish",
            EventKind::Join => "join",
            EventKind::Leave => "leave",
            EventKind::ChannelOccupied => "channel-occupied",
            EventKind::ChannelVacated => "channel-vacated",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let mut msg = Message::new("c", b"{}".to_vec());
        for (ct, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/vnd.api+json", true),
            ("", true),
            ("text/plain", false),
            ("application/octet-stream", false),
        ] {
            msg.content_type = ct.to_owned();
            assert_eq!(msg.is_json(), json, "{ct}");
        }
    }

    #[test]
    fn message_accessors() {
        let mut msg = Message::new("chat:1", b"hi".to_vec()).with_publisher("alice", "c1");
        msg.tags.push(("lang".into(), "en".into()));
        assert_eq!(msg.user(), "alice");
        assert_eq!(msg.tag("lang"), Some("en"));
        assert_eq!(msg.tag("nope"), None);
        assert_eq!(Message::new("c", Vec::new()).user(), "");
    }

    #[test]
    fn constructors_fill_rejects() {
        assert_eq!(PublishResult::deny(403, "no"), PublishResult::Deny(Reject { code: 403, reason: "no".into() }));
        assert_eq!(Verdict::deny(403, "no"), Verdict::Deny(Reject::new(403, "no")));
        assert_eq!(ConnectResult::deny(401, "x"), ConnectResult::Deny(Reject::new(401, "x")));
        assert_eq!(EventKind::ChannelOccupied.as_str(), "channel-occupied");
    }
}
