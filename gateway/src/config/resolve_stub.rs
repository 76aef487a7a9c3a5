//! TEMP: replaced by the config branch.
use super::{ChannelOptions, ChannelsConfig};
impl ChannelsConfig {
    pub fn resolve(&self, channel: &str) -> Option<ChannelOptions> {
        match channel.split_once(':') {
            None => Some(self.options()),
            Some((ns, _)) => self.namespaces.iter().find(|n| n.name == ns).map(|n| n.options()),
        }
    }
}
