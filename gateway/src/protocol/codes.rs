//! Error, unsubscribe and disconnect codes, with Centrifugo's numbers and
//! meanings so that the SDKs' retry and reconnect logic behaves.

/// Codes in a reply's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    Internal = 100,
    Unauthorized = 101,
    UnknownChannel = 102,
    PermissionDenied = 103,
    MethodNotFound = 104,
    AlreadySubscribed = 105,
    LimitExceeded = 106,
    BadRequest = 107,
    NotAvailable = 108,
    TokenExpired = 109,
    Expired = 110,
    TooManyRequests = 111,
    UnrecoverablePosition = 112,
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The canonical message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::Internal => "internal server error",
            Self::Unauthorized => "unauthorized",
            Self::UnknownChannel => "unknown channel",
            Self::PermissionDenied => "permission denied",
            Self::MethodNotFound => "method not found",
            Self::AlreadySubscribed => "already subscribed",
            Self::LimitExceeded => "limit exceeded",
            Self::BadRequest => "bad request",
            Self::NotAvailable => "not available",
            Self::TokenExpired => "token expired",
            Self::Expired => "expired",
            Self::TooManyRequests => "too many requests",
            Self::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Whether the SDK may retry the same call.
    pub fn temporary(self) -> bool {
        matches!(self, Self::Internal | Self::TooManyRequests)
    }
}

/// Unsubscribe push code: terminal server unsubscribe.
pub const UNSUBSCRIBE_SERVER: u32 = 2000;
/// Unsubscribe push code: resubscribe (>= 2500 means "resubscribe").
pub const UNSUBSCRIBE_INSUFFICIENT_STATE: u32 = 2500;
/// Unsubscribe push code: the subscription expired (resubscribe).
pub const UNSUBSCRIBE_SUBSCRIPTION_EXPIRED: u32 = 2501;

/// Disconnect codes, sent in the WebSocket close frame (or a `disconnect`
/// push on one-way transports). 3000–3499 ask the SDK to reconnect; 3500+
/// are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisconnectCode {
    pub code: u16,
    pub reason: &'static str,
}

impl DisconnectCode {
    /// Normal close after the client went away (never sent as advice).
    pub const CONNECTION_CLOSED: Self = Self { code: 3000, reason: "connection closed" };
    /// WebSocket 1009: an inbound message exceeded `client.max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: Self = Self { code: 1009, reason: "message too big" };
    /// WebSocket 1002: the client broke RFC 6455 framing (unmasked frame,
    /// reserved bits or opcode, fragmented or oversized control frame).
    pub const PROTOCOL_ERROR: Self = Self { code: 1002, reason: "protocol error" };
    /// WebSocket 1007: a text message that is not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self { code: 1007, reason: "invalid utf-8" };
    pub const SHUTDOWN: Self = Self { code: 3001, reason: "shutdown" };
    pub const INTERNAL: Self = Self { code: 3004, reason: "internal server error" };
    pub const EXPIRED: Self = Self { code: 3005, reason: "connection expired" };
    pub const SUBSCRIPTION_EXPIRED: Self = Self { code: 3006, reason: "subscription expired" };
    pub const SLOW: Self = Self { code: 3008, reason: "slow" };
    pub const WRITE_ERROR: Self = Self { code: 3009, reason: "write error" };
    pub const INSUFFICIENT_STATE: Self = Self { code: 3010, reason: "insufficient state" };
    pub const FORCE_RECONNECT: Self = Self { code: 3011, reason: "force reconnect" };
    pub const NO_PONG: Self = Self { code: 3012, reason: "no pong" };
    pub const TOO_MANY_REQUESTS: Self = Self { code: 3013, reason: "too many requests" };
    pub const INVALID_TOKEN: Self = Self { code: 3500, reason: "invalid token" };
    pub const BAD_REQUEST: Self = Self { code: 3501, reason: "bad request" };
    pub const STALE: Self = Self { code: 3502, reason: "stale" };
    pub const FORCE_DISCONNECT: Self = Self { code: 3503, reason: "force disconnect" };
    pub const CONNECTION_LIMIT: Self = Self { code: 3504, reason: "connection limit" };
    pub const CHANNEL_LIMIT: Self = Self { code: 3505, reason: "channel limit" };
    pub const INAPPROPRIATE_PROTOCOL: Self = Self { code: 3506, reason: "inappropriate protocol" };
    pub const PERMISSION_DENIED: Self = Self { code: 3507, reason: "permission denied" };

    /// Whether the SDK should reconnect after this code.
    pub fn reconnect(self) -> bool {
        (3000..3500).contains(&self.code) || (4000..4500).contains(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_ranges_match_the_sdk_contract() {
        assert!(DisconnectCode::SHUTDOWN.reconnect());
        assert!(DisconnectCode::NO_PONG.reconnect());
        assert!(DisconnectCode::SLOW.reconnect());
        assert!(!DisconnectCode::INVALID_TOKEN.reconnect());
        assert!(!DisconnectCode::BAD_REQUEST.reconnect());
        assert!(!DisconnectCode::CONNECTION_LIMIT.reconnect());
    }

    #[test]
    fn only_internal_and_rate_limit_are_temporary() {
        assert!(ErrorCode::Internal.temporary());
        assert!(ErrorCode::TooManyRequests.temporary());
        assert!(!ErrorCode::PermissionDenied.temporary());
        assert_eq!(ErrorCode::UnrecoverablePosition.code(), 112);
    }
}
