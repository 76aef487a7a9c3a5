//! TEMP stub: replaced by the history branch.
use std::collections::HashMap;
use dashmap::DashMap;
use crate::protocol::ClientInfo;
#[derive(Default)]
pub struct Presence { m: DashMap<String, HashMap<String, ClientInfo>> }
pub struct PresenceStats { pub num_clients: u32, pub num_users: u32 }
impl Presence {
    pub fn new() -> Self { Self::default() }
    pub fn add(&self, channel: &str, info: ClientInfo) -> bool { self.m.entry(channel.into()).or_default().insert(info.client.clone(), info).is_none() }
    pub fn remove(&self, channel: &str, client: &str) -> Option<ClientInfo> { self.m.get_mut(channel).and_then(|mut m| m.remove(client)) }
    pub fn get(&self, channel: &str) -> HashMap<String, ClientInfo> { self.m.get(channel).map(|m| m.clone()).unwrap_or_default() }
    pub fn stats(&self, channel: &str) -> PresenceStats { let g = self.get(channel); let users: std::collections::HashSet<_> = g.values().map(|c| c.user.clone()).collect(); PresenceStats { num_clients: g.len() as u32, num_users: users.len() as u32 } }
    pub fn channel_count(&self) -> usize { self.m.len() }
}
