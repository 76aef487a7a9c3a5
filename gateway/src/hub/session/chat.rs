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
