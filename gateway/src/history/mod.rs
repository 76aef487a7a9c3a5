//! TEMP stub: replaced by the history branch.
use std::time::Duration;
use tokio::time::Instant;
use crate::protocol::{Publication, StreamPosition};

pub struct StreamOptions { pub size: usize, pub ttl: Duration, pub meta_ttl: Duration }
impl StreamOptions {
    pub fn from_channel_options(o: &crate::config::ChannelOptions) -> Option<Self> {
        o.history_enabled().then(|| Self { size: o.history_size, ttl: Duration::from_secs(o.history_ttl_secs), meta_ttl: Duration::from_secs(o.history_meta_ttl_secs) })
    }
}
pub struct Stream { epoch: String, top: u64, items: Vec<Publication>, }
pub enum Recovery { Recovered(Vec<Publication>), NotRecovered }
#[derive(Debug, thiserror::Error)]
pub enum HistoryError { #[error("unrecoverable position")] UnrecoverablePosition }
impl Stream {
    pub fn new(_now: Instant) -> Self { Self { epoch: "stub".into(), top: 0, items: vec![] } }
    pub fn epoch(&self) -> &str { &self.epoch }
    pub fn top_offset(&self) -> u64 { self.top }
    pub fn position(&self) -> StreamPosition { StreamPosition { offset: self.top, epoch: self.epoch.clone() } }
    pub fn append(&mut self, mut p: Publication, _o: &StreamOptions, _now: Instant) -> u64 { self.top += 1; p.offset = self.top; self.items.push(p); self.top }
    pub fn read(&mut self, _s: Option<&StreamPosition>, limit: usize, _r: bool, _now: Instant) -> Result<Vec<Publication>, HistoryError> { Ok(self.items.iter().take(limit).cloned().collect()) }
    pub fn recover(&mut self, since: &StreamPosition, _m: usize, _now: Instant) -> Recovery { Recovery::Recovered(self.items.iter().filter(|p| p.offset > since.offset).cloned().collect()) }
    pub fn clear(&mut self) { self.items.clear() }
    pub fn is_meta_expired(&self, _now: Instant) -> bool { false }
}
