//! Presence: which clients are in which channel, on this node.
//!
//! Owns the concurrent channel → client → [`ClientInfo`] table and the
//! per-channel counts behind `presence_stats`. Many session tasks call it at
//! once; it is sharded ([`DashMap`]), never awaits, and never holds a shard
//! guard while running code other than its own map updates.
//!
//! It does not send anything: [`Presence::add`] and [`Presence::remove`] report
//! whether a client joined or left, and the hub decides whether to publish
//! join/leave pushes. It does not own connection lifecycle (the hub removes a
//! disconnecting client from each channel it was in), expire stale entries,
//! or know about other nodes.

use std::collections::HashMap;

use dashmap::DashMap;

use crate::protocol::ClientInfo;

/// Counts for a `presence_stats` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Connections present in the channel.
    pub num_clients: u32,
    /// Distinct user ids among them. All anonymous clients (empty user id)
    /// count as one user, as in Centrifugo.
    pub num_users: u32,
}

/// One channel's presence. Never left empty in the table: the entry that
/// removes the last client removes the channel.
#[derive(Debug, Default)]
struct ChannelPresence {
    /// Client id → info.
    clients: HashMap<String, ClientInfo>,
    /// User id → how many of `clients` belong to it; always > 0. Kept in
    /// step with `clients` so that stats are O(1) on large channels.
    users: HashMap<String, u32>,
}

impl ChannelPresence {
    /// Inserts or replaces `info` under `info.client`; returns true if the
    /// client was not present.
    fn insert(&mut self, info: ClientInfo) -> bool {
        use std::collections::hash_map::Entry;
        match self.clients.entry(info.client.clone()) {
            Entry::Vacant(slot) => {
                increment(&mut self.users, &info.user);
                slot.insert(info);
                true
            }
            Entry::Occupied(mut slot) => {
                let old = slot.insert(info);
                let new_user = &slot.get().user;
                if old.user != *new_user {
                    decrement(&mut self.users, &old.user);
                    increment(&mut self.users, new_user);
                }
                false
            }
        }
    }

    fn remove(&mut self, client: &str) -> Option<ClientInfo> {
        let info = self.clients.remove(client)?;
        decrement(&mut self.users, &info.user);
        Some(info)
    }

    fn stats(&self) -> PresenceStats {
        PresenceStats { num_clients: saturate(self.clients.len()), num_users: saturate(self.users.len()) }
    }
}

fn increment(users: &mut HashMap<String, u32>, user: &str) {
    match users.get_mut(user) {
        Some(n) => *n += 1,
        None => {
            users.insert(user.to_owned(), 1);
        }
    }
}

fn decrement(users: &mut HashMap<String, u32>, user: &str) {
    if let Some(n) = users.get_mut(user) {
        *n -= 1;
        if *n == 0 {
            users.remove(user);
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The node's presence table: channel → client id → [`ClientInfo`].
///
/// Entries are keyed by `ClientInfo::client` (the connection id), so one user
/// with several connections has several entries.
#[derive(Debug, Default)]
pub struct Presence {
    channels: DashMap<String, ChannelPresence>,
}

impl Presence {
    /// Returns an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `info` to `channel` under `info.client`, replacing any previous
    /// entry of that client (for example after a refresh changed its info).
    ///
    /// Returns true if the client was not present before: the caller sends
    /// a join only then.
    pub fn add(&self, channel: &str, info: ClientInfo) -> bool {
        // Common case first: the channel exists, so no key allocation.
        if let Some(mut presence) = self.channels.get_mut(channel) {
            return presence.insert(info);
        }
        self.channels.entry(channel.to_owned()).or_default().insert(info)
    }

    /// Removes `client` from `channel` and returns its entry, or `None` if it
    /// was not there (the caller sends a leave only for `Some`).
    ///
    /// Removing the last client drops the channel from the table; the check
    /// and the drop happen under the same shard lock, so a concurrent
    /// [`add`](Self::add) is never lost.
    pub fn remove(&self, channel: &str, client: &str) -> Option<ClientInfo> {
        let mut removed = None;
        self.channels.remove_if_mut(channel, |_, presence| {
            removed = presence.remove(client);
            presence.clients.is_empty()
        });
        removed
    }

    /// Returns a snapshot of `channel`'s clients (client id → info); empty for
    /// an unknown channel.
    pub fn get(&self, channel: &str) -> HashMap<String, ClientInfo> {
        self.channels.get(channel).map(|p| p.clients.clone()).unwrap_or_default()
    }

    /// Returns `channel`'s client and distinct-user counts in O(1); zero for
    /// an unknown channel.
    pub fn stats(&self, channel: &str) -> PresenceStats {
        self.channels.get(channel).map(|p| p.stats()).unwrap_or_default()
    }

    /// Returns every (channel, entry) pair; for refreshing a shared store.
    pub fn entries(&self) -> Vec<(String, ClientInfo)> {
        self.channels
            .iter()
            .flat_map(|e| e.value().clients.values().map(|i| (e.key().clone(), i.clone())).collect::<Vec<_>>())
            .collect()
    }

    /// Returns how many channels have at least one client. Visits every
    /// shard, so it is meant for metrics and the `info` API, not hot paths.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests;
