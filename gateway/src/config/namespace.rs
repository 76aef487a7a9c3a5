//! Resolving a channel name to the options of its namespace.
//!
//! A channel's namespace is the part of its name before the first `:`
//! (`chat:lobby` is in `chat`). A name without `:` uses the `[channels]`
//! options; a namespace that is not configured resolves to nothing, and
//! callers reject the channel (Centrifugo's "unknown channel", code 102).

use std::collections::HashMap;

use super::schema::{ChannelOptions, ChannelsConfig};

/// Returns the namespace part of `channel`, or `None` when it has no `:`.
pub fn channel_namespace(channel: &str) -> Option<&str> {
    channel.split_once(':').map(|(namespace, _)| namespace)
}

/// The options of every namespace, precomputed for lookups on the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceTable {
    top_level: ChannelOptions,
    namespaces: HashMap<String, ChannelOptions>,
}

impl NamespaceTable {
    /// Builds the table. With duplicate names (which validation rejects) the
    /// first definition wins.
    pub fn new(channels: &ChannelsConfig) -> Self {
        let mut namespaces = HashMap::with_capacity(channels.namespaces.len());
        for namespace in &channels.namespaces {
            namespaces.entry(namespace.name.clone()).or_insert_with(|| namespace.options());
        }
        Self { top_level: channels.options(), namespaces }
    }

    /// Returns the options for `channel`, or `None` when its namespace is not
    /// configured.
    pub fn resolve(&self, channel: &str) -> Option<&ChannelOptions> {
        match channel_namespace(channel) {
            None => Some(&self.top_level),
            Some(namespace) => self.namespaces.get(namespace),
        }
    }
}

impl ChannelsConfig {
    /// Returns the options for `channel`, or `None` when its namespace is not
    /// configured. Scans the namespace list; build a [`NamespaceTable`] once
    /// for repeated lookups.
    pub fn resolve(&self, channel: &str) -> Option<ChannelOptions> {
        match channel_namespace(channel) {
            None => Some(self.options()),
            Some(namespace) => self.namespaces.iter().find(|ns| ns.name == namespace).map(|ns| ns.options()),
        }
    }

    /// Returns a precomputed lookup table over these options.
    pub fn namespace_table(&self) -> NamespaceTable {
        NamespaceTable::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::NamespaceConfig;
    use super::*;

    fn channels() -> ChannelsConfig {
        ChannelsConfig {
            presence: true,
            namespaces: vec![
                NamespaceConfig {
                    name: "chat".into(),
                    history_size: 10,
                    history_ttl_secs: 60,
                    ..NamespaceConfig::default()
                },
                NamespaceConfig { name: "chat".into(), join_leave: true, ..Default::default() },
            ],
            ..ChannelsConfig::default()
        }
    }

    #[test]
    fn namespace_is_the_prefix_before_the_first_colon() {
        assert_eq!(channel_namespace("chat:lobby:1"), Some("chat"));
        assert_eq!(channel_namespace("lobby"), None);
        assert_eq!(channel_namespace(":x"), Some(""));
    }

    #[test]
    fn names_without_colon_use_the_channels_table() {
        let channels = channels();
        let options = channels.resolve("lobby").unwrap();
        assert!(options.presence);
        assert_eq!(options, channels.options());
        assert_eq!(channels.namespace_table().resolve("lobby"), Some(&options));
    }

    #[test]
    fn known_namespace_resolves_to_its_options_first_definition_wins() {
        let channels = channels();
        let options = channels.resolve("chat:lobby").unwrap();
        assert_eq!(options.history_size, 10);
        assert!(!options.presence, "namespaces do not inherit [channels] options");
        assert!(!options.join_leave);
        assert_eq!(channels.namespace_table().resolve("chat:lobby"), Some(&options));
    }

    #[test]
    fn unknown_namespace_resolves_to_none() {
        let channels = channels();
        assert_eq!(channels.resolve("news:1"), None);
        assert_eq!(channels.resolve(":1"), None);
        assert_eq!(channels.namespace_table().resolve("news:1"), None);
    }
}
