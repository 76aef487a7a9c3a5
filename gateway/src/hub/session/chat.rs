//! The session side of chat rpc: who may make which call, then
//! [`Hub::chat_call`](super::Hub::chat_call) does it.
//!
//! - `message.send` needs publish permission, like `publish`.
//! - Every other call needs subscribe permission on each channel it names:
//!   a current subscription, or the right to subscribe without a token.
//! - Changing anything (all but reads) needs a user; anonymous clients only read.
//! - Edits and deletes are further limited to the author or an admin (the
//!   namespace's `chat_admin_claim` is `true` in the connection token); the
//!   hub checks authorship against the stream.

use bytes::Bytes;

use super::super::{Actor, ChatCall, Hub};
use super::{Failure, Session};
use crate::channel::user_limited_users;
use crate::config::ChannelOptions;
use crate::protocol::{ErrorCode, Payload};

impl Session {
    /// Whether this connection could subscribe to `channel` without a token.
    fn may_subscribe(&self, options: &ChannelOptions, channel: &str) -> bool {
        if self.subs.contains_key(channel) {
            return true;
        }
        let user = self.user();
        if options.allow_user_limited_channels && channel.contains('#') {
            return user_limited_users(channel).is_some_and(|mut users| users.any(|u| u == user));
        }
        options.allow_subscribe_for_client && (!user.is_empty() || options.allow_subscribe_for_anonymous)
    }

    pub(super) async fn chat(&mut self, call: ChatCall) -> Result<Payload, Failure> {
        let reads = matches!(call, ChatCall::Get { .. } | ChatCall::Thread { .. } | ChatCall::Unread { .. });
        if !reads && self.user().is_empty() {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let mut admin = false;
        let mut chan_info = None;
        for channel in call.channels() {
            let options = self.hub.chat_options(channel)?;
            let allowed = match &call {
                ChatCall::Send { .. } => {
                    options.allow_publish_for_client
                        || (options.allow_publish_for_subscriber && self.subs.contains_key(channel))
                }
                _ => self.may_subscribe(&options, channel),
            };
            if !allowed {
                return Err(ErrorCode::PermissionDenied.into());
            }
            let true_claims = self.conn.as_ref().map(|c| c.true_claims.as_slice()).unwrap_or_default();
            admin = Hub::chat_admin(&options, true_claims);
            chan_info = self.subs.get(channel).and_then(|s| s.chan_info.clone());
        }
        let actor = Actor { user: self.user().to_owned(), info: Some(self.client_info(chan_info)), admin };
        let result = self.hub.chat_call(&actor, call).await?;
        Ok(Payload::from_json_unchecked(Bytes::from(result.to_string())))
    }
}

#[cfg(test)]
mod tests {
    //! Status "away" driven by the session's activity, on paused time.

    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::{Hub, Inbound, Session};
    use crate::config::Config;
    use crate::protocol::Encoding;

    #[tokio::test(start_paused = true)]
    async fn a_user_without_commands_turns_away_and_any_command_brings_them_back() {
        let mut config = Config::default();
        config.client.ping_interval_secs = 3600;
        config.status.away_after_secs = 300;
        let token =
            crate::hub::auth::mint_hs256(&config.auth.token_hmac_secret, &serde_json::json!({ "sub": "u" })).unwrap();
        let hub = Hub::new(Arc::new(config), CancellationToken::new()).expect("hub");
        let session = Session::new(hub.clone(), hub.try_acquire_connection().expect("slot"), Encoding::Json);
        let outbox = session.outbox();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(session.run(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))));
        let next = || async {
            let mut batch = Vec::new();
            assert_eq!(outbox.next_batch(&mut batch, 1 << 16).await, None);
            String::from_utf8(batch.concat()).unwrap()
        };
        let state = || hub.statuses(&["u".to_owned()])[0].state;

        tx.send(Inbound::Text(Bytes::from(format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#)))).unwrap();
        assert!(next().await.contains(r#""connect""#));
        assert_eq!(state(), "online");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(state(), "online");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(state(), "away");
        tx.send(Inbound::Text(Bytes::from_static(br#"{"id":2,"ping":{}}"#))).unwrap();
        assert!(next().await.contains(r#""id":2"#));
        assert_eq!(state(), "online");
        tx.send(Inbound::Text(Bytes::from_static(
            br#"{"id":3,"rpc":{"method":"status.set","data":{"state":"busy"}}}"#,
        )))
        .unwrap();
        assert!(next().await.contains(r#""state":"busy""#));
        tokio::time::advance(Duration::from_secs(1000)).await;
        assert_eq!(state(), "busy", "a chosen state is kept while idle");
        drop(tx);
        task.await.unwrap();
        let gone = &hub.statuses(&["u".to_owned()])[0];
        assert_eq!((gone.state, gone.online, gone.last_seen.is_some()), ("offline", false, true));
    }
}
