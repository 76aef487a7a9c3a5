//! Setup shared by the benches that publish through a real [`Hub`]: local
//! sessions subscribed over the JSON protocol, whose outboxes the bench
//! empties outside its timed section. Included with `mod common;`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use switchboard::channel::Outbox;
use switchboard::config::Config;
use switchboard::hub::{Hub, Inbound, Session};
use switchboard::plugin::PluginHost;
use switchboard::protocol::Encoding;
use tokio_util::sync::CancellationToken;

/// A hub on `config` (anonymous connect and subscribe allowed, pings out of
/// the way) with `subscribers` JSON sessions subscribed to `channel`, and
/// their outboxes.
pub fn subscribed_hub(
    rt: &tokio::runtime::Runtime,
    mut config: Config,
    plugins: Option<PluginHost>,
    subscribers: usize,
    channel: &str,
) -> (Arc<Hub>, Vec<Arc<Outbox>>) {
    config.client.allow_anonymous = true;
    config.channels.allow_subscribe_for_anonymous = true;
    config.server.max_connections = config.server.max_connections.max(subscribers + 1);
    config.client.ping_interval_secs = 3000;
    let hub = Hub::with_plugins(Arc::new(config), CancellationToken::new(), plugins).expect("hub");
    let outboxes = rt.block_on(async {
        let mut outboxes = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let session = Session::new(hub.clone(), hub.try_acquire_connection().expect("slot"), Encoding::Json);
            outboxes.push(session.outbox());
            let frame =
                format!("{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}");
            let inbound =
                futures_util::stream::iter([Inbound::Text(Bytes::from(frame))]).chain(futures_util::stream::pending());
            tokio::spawn(session.run(inbound));
        }
        // Each session has subscribed once its two replies (connect,
        // subscribe) are out; waiting on the outboxes, not polling the hub,
        // keeps the setup's instruction count fixed for callgrind runs.
        let mut batch = Vec::new();
        for outbox in &outboxes {
            let mut replies = 0;
            while replies < 2 {
                batch.clear();
                outbox.next_batch(&mut batch, usize::MAX).await;
                replies += batch.len();
            }
        }
        assert_eq!(hub.channels().first().map_or(0, |(_, n)| *n), subscribers, "every session subscribed");
        outboxes
    });
    drain(rt, &outboxes);
    (hub, outboxes)
}

/// Empties every outbox; the number of frames taken.
pub fn drain(rt: &tokio::runtime::Runtime, outboxes: &[Arc<Outbox>]) -> usize {
    rt.block_on(async {
        let mut batch = Vec::new();
        let mut frames = 0;
        for outbox in outboxes {
            if outbox.queued_bytes() == 0 {
                continue;
            }
            batch.clear();
            outbox.next_batch(&mut batch, usize::MAX).await;
            frames += batch.len();
        }
        frames
    })
}
