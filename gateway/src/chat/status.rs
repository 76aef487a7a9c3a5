//! User status: what a user set (`online`, `away`, `busy` and a text), how
//! long ago they were last active, and when they were last seen.
//!
//! "Away" after inactivity is derived when the status is read, from the
//! last activity and `status.away_after_secs`, so no timer runs per user and
//! paused tokio time drives it in tests.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// What a user may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Online,
    Away,
    Busy,
}

impl State {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "online" => Some(Self::Online),
            "away" => Some(Self::Away),
            "busy" => Some(Self::Busy),
            _ => None,
        }
    }
}

/// One user's record on this node.
#[derive(Debug, Clone)]
pub struct Record {
    pub state: State,
    pub text: String,
    /// Live connections of the user on this node.
    pub connections: usize,
    pub last_active: Instant,
    /// Unix seconds when the last connection closed; `None` while connected.
    pub last_seen: Option<u64>,
}

impl Record {
    pub fn new(now: Instant) -> Self {
        Self { state: State::Online, text: String::new(), connections: 0, last_active: now, last_seen: None }
    }

    /// The status as others see it at `now`.
    pub fn view(&self, user: &str, now: Instant, away_after: Duration) -> StatusView {
        let online = self.connections > 0;
        let state = if !online {
            "offline"
        } else {
            match self.state {
                State::Online if now.saturating_duration_since(self.last_active) >= away_after => "away",
                State::Online => "online",
                State::Away => "away",
                State::Busy => "busy",
            }
        };
        StatusView {
            user: user.to_owned(),
            state,
            text: self.text.clone(),
            online,
            last_seen: if online { None } else { self.last_seen },
        }
    }
}

/// What `/api/status` and presence `conn_info` show of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    pub user: String,
    /// `online`, `away`, `busy`, or `offline` when no connection is open.
    pub state: &'static str,
    pub text: String,
    pub online: bool,
    /// Unix seconds the user's last connection closed, when offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_online_user_turns_away_after_inactivity_and_back_on_activity() {
        let away_after = Duration::from_secs(300);
        let mut record = Record::new(Instant::now());
        record.connections = 1;
        assert_eq!(record.view("u", Instant::now(), away_after).state, "online");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(record.view("u", Instant::now(), away_after).state, "online");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(record.view("u", Instant::now(), away_after).state, "away");
        record.last_active = Instant::now();
        assert_eq!(record.view("u", Instant::now(), away_after).state, "online");
        record.state = State::Busy;
        tokio::time::advance(Duration::from_secs(1000)).await;
        assert_eq!(record.view("u", Instant::now(), away_after).state, "busy", "busy is kept while idle");
    }

    #[tokio::test(start_paused = true)]
    async fn a_disconnected_user_is_offline_with_a_last_seen_time() {
        let mut record = Record::new(Instant::now());
        record.last_seen = Some(1_700_000_000);
        let view = record.view("u", Instant::now(), Duration::from_secs(1));
        assert_eq!((view.state, view.online, view.last_seen), ("offline", false, Some(1_700_000_000)));
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            serde_json::json!({"user": "u", "state": "offline", "text": "", "online": false, "last_seen": 1_700_000_000u64})
        );
    }

    #[test]
    fn states_parse_from_their_names() {
        assert_eq!(State::parse("busy"), Some(State::Busy));
        assert_eq!(State::parse("offline"), None, "offline is derived, never set");
    }
}
