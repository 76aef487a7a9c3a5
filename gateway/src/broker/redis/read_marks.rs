//! Chat read marks in Redis: one hash per channel, user → `offset:epoch`,
//! shared by every node. Kept apart from the stream so that marking as read
//! stays out of history (read receipts are ephemeral) and costs one small
//! write, not a publication.

use super::{EngineError, RedisBroker};

/// Raises a user's mark (never lowers it within one epoch; a new epoch
/// replaces it) and refreshes the hash's expiry.
/// KEYS[1] hash; ARGV: user, offset, epoch, ttl secs.
const STORE_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep and string.sub(cur, sep + 1) == ARGV[3] and tonumber(string.sub(cur, 1, sep - 1)) >= tonumber(ARGV[2]) then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

impl RedisBroker {
    /// Stores `user`'s read mark in `channel`; the hash expires `ttl_secs`
    /// after the last mark (the stream's meta TTL: a mark is worthless once
    /// the epoch is gone).
    pub async fn read_mark_store(
        &self,
        channel: &str,
        user: &str,
        epoch: &str,
        offset: u64,
        ttl_secs: u64,
    ) -> Result<(), EngineError> {
        let script = redis::Script::new(STORE_SCRIPT);
        let mut inv = script.prepare_invoke();
        inv.key(self.key("read", channel)).arg(user).arg(offset).arg(epoch).arg(ttl_secs.max(1));
        self.shard(channel).script(inv).await.map(|_| ())
    }

    /// `user`'s mark in `channel` as (epoch, offset).
    pub async fn read_mark_load(&self, channel: &str, user: &str) -> Result<Option<(String, u64)>, EngineError> {
        let stored: Option<String> =
            self.shard(channel).query(redis::cmd("HGET").arg(self.key("read", channel)).arg(user)).await?;
        Ok(stored.and_then(|s| {
            let (offset, epoch) = s.split_once(':')?;
            Some((epoch.to_owned(), offset.parse().ok()?))
        }))
    }
}
