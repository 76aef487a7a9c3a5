//! Engines: where publications are ordered, stored and delivered.
//!
//! An engine assigns each publication its place in the channel stream and
//! hands it to the node's [`Delivery`] in that order. The memory engine does
//! both under one per-channel lock, which is what makes every subscriber see
//! the same order and lets a subscribe read history and join the live flow
//! with no gap and no duplicate. The Redis engine keeps the same contract
//! across nodes (see [`redis`]); [`Engine`] is what the hub holds.

mod durable;
mod memory;
pub mod redis;

pub use durable::DiskOptions;
pub use memory::{MemoryBroker, RecoveredKey, SubscribeView};
pub use redis::{RedisBroker, RedisOptions};

use std::collections::HashMap;
use std::sync::Arc;

use crate::history::{HistoryError, StreamOptions};
use crate::presence::PresenceStats;
use crate::protocol::{ClientInfo, ErrorCode, Publication, StreamPosition};

/// What the node does with messages an engine delivers. Called while the
/// engine holds the channel's lock: implementations must not block or call
/// back into the engine for the same channel.
pub trait Delivery: Send + Sync + 'static {
    /// A publication, with its offset set when the channel keeps history.
    /// `exclude` names a client that must not receive it (the publisher,
    /// with `exclude_publisher`).
    fn publication(&self, channel: &str, publication: &Publication, exclude: Option<&str>);
    fn join(&self, channel: &str, info: &ClientInfo);
    fn leave(&self, channel: &str, info: &ClientInfo);
    /// Live publications of `channel` were lost (a multi-node engine saw a
    /// position jump): its local subscribers must recover from history.
    fn gap(&self, channel: &str);
}

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Redis is unreachable, slow past the timeout, or answered unexpectedly.
    #[error("redis: {0}")]
    Redis(String),
    /// The disk history store cannot take the write (disk full, read-only,
    /// I/O error, queue full); nothing of the publish was stored or delivered.
    #[error("{0}")]
    Storage(String),
}

impl From<EngineError> for ErrorCode {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::History(h) => h.into(),
            // The client sees only "internal server error": the cause goes
            // to the log here, the one place every such error passes.
            EngineError::Redis(_) | EngineError::Storage(_) => {
                tracing::warn!(error = %e, "engine operation failed; answering internal error");
                ErrorCode::Internal
            }
        }
    }
}

/// The node's engine.
pub enum Engine {
    Memory(MemoryBroker),
    Redis(Arc<RedisBroker>),
}

impl Engine {
    /// Publishes; `exclude` is the client whose connection must not get the
    /// publication live (it is still stored in history).
    pub async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        history: Option<&StreamOptions>,
        exclude: Option<&str>,
    ) -> Result<StreamPosition, EngineError> {
        match self {
            Self::Memory(m) => m.publish_async(channel, publication, history, None, exclude).await,
            Self::Redis(r) => r.publish(channel, &publication, history, exclude).await,
        }
    }

    pub async fn history(
        &self,
        channel: &str,
        history: &StreamOptions,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), EngineError> {
        match self {
            Self::Memory(m) => {
                m.ensure_stored(channel, history).await?;
                Ok(m.history(channel, history, since, limit, reverse)?)
            }
            Self::Redis(r) => r.history(channel, history, since, limit, reverse).await,
        }
    }

    pub async fn remove_history(&self, channel: &str, history: &StreamOptions) -> Result<(), EngineError> {
        match self {
            Self::Memory(m) => m.remove_history_async(channel, history).await,
            Self::Redis(r) => r.remove_history(channel).await,
        }
    }

    /// Runs `f` at the point where the subscriber joins the ordered flow (see
    /// [`MemoryBroker::subscribe`]). `recover` is the position a resubscribing
    /// client asks to recover from, with the recovery limit; the view answers
    /// [`SubscribeView::recover`] for it.
    pub async fn subscribe<R>(
        &self,
        channel: &str,
        history: Option<&StreamOptions>,
        recover: Option<(&StreamPosition, usize)>,
        f: impl FnOnce(SubscribeView<'_>) -> R,
    ) -> Result<R, EngineError> {
        match self {
            Self::Memory(m) => {
                if let Some(history) = history {
                    m.ensure_stored(channel, history).await?;
                }
                Ok(m.subscribe(channel, history, f))
            }
            Self::Redis(r) => r.subscribe(channel, history, recover, f).await,
        }
    }

    /// Announces a join to every node. Redis: queued, re-sent after an
    /// outage (see `redis::Outbox`).
    pub fn join(&self, channel: &str, info: &ClientInfo) {
        match self {
            Self::Memory(m) => m.join(channel, info),
            Self::Redis(r) => r.join(channel, info),
        }
    }

    /// Announces a leave to every node. Redis: queued like [`join`](Self::join).
    pub fn leave(&self, channel: &str, info: &ClientInfo) {
        match self {
            Self::Memory(m) => m.leave(channel, info),
            Self::Redis(r) => r.leave(channel, info),
        }
    }

    /// The shared presence store, when the engine has one (Redis); the memory
    /// engine's presence is the hub's local table.
    pub fn redis(&self) -> Option<&Arc<RedisBroker>> {
        match self {
            Self::Redis(r) => Some(r),
            Self::Memory(_) => None,
        }
    }

    pub async fn presence(&self, channel: &str) -> Result<Option<HashMap<String, ClientInfo>>, EngineError> {
        match self {
            Self::Memory(_) => Ok(None),
            Self::Redis(r) => r.presence(channel).await.map(Some),
        }
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<Option<PresenceStats>, EngineError> {
        match self {
            Self::Memory(_) => Ok(None),
            Self::Redis(r) => r.presence_stats(channel).await.map(Some),
        }
    }

    /// True when the engine can serve publishes (Redis answers PING, the
    /// disk history store writes).
    pub async fn ready(&self) -> bool {
        match self {
            Self::Memory(m) => m.ready(),
            Self::Redis(r) => r.ping().await,
        }
    }

    pub async fn sweep(&self, is_active: impl Fn(&str) -> bool) {
        match self {
            Self::Memory(m) => m.sweep(is_active),
            Self::Redis(r) => r.sweep(is_active).await,
        }
    }
}
