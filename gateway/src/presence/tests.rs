use std::collections::HashSet;

use super::*;
use crate::protocol::Payload;

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo { user: user.to_owned(), client: client.to_owned(), ..ClientInfo::default() }
}

fn stats(num_clients: u32, num_users: u32) -> PresenceStats {
    PresenceStats { num_clients, num_users }
}

#[test]
fn add_remove_replace() {
    let p = Presence::new();
    assert!(p.add("chat", info("u1", "c1")));
    assert!(p.add("chat", info("u2", "c2")));

    // Same client again: replaced, not a new join.
    let refreshed =
        ClientInfo { chan_info: Some(Payload::from_json(r#"{"role":"mod"}"#).unwrap()), ..info("u1", "c1") };
    assert!(!p.add("chat", refreshed.clone()));
    let all = p.get("chat");
    assert_eq!(all.len(), 2);
    assert_eq!(all["c1"], refreshed);
    assert_eq!(all["c2"], info("u2", "c2"));

    assert_eq!(p.remove("chat", "c1"), Some(refreshed));
    assert_eq!(p.remove("chat", "c1"), None);
    assert_eq!(p.remove("elsewhere", "c2"), None);
    assert_eq!(p.get("chat").keys().collect::<Vec<_>>(), ["c2"]);
}

#[test]
fn same_client_in_several_channels_is_independent() {
    let p = Presence::new();
    assert!(p.add("a", info("u1", "c1")));
    assert!(p.add("b", info("u1", "c1")));
    assert_eq!(p.remove("a", "c1"), Some(info("u1", "c1")));
    assert_eq!(p.get("b").len(), 1);
    assert_eq!(p.channel_count(), 1);
}

#[test]
fn stats_count_distinct_users() {
    let p = Presence::new();
    for c in ["c1", "c2", "c3"] {
        p.add("chat", info("u1", c));
    }
    p.add("chat", info("u2", "c4"));
    // Anonymous clients share the empty user id: one user.
    p.add("chat", info("", "c5"));
    p.add("chat", info("", "c6"));
    assert_eq!(p.stats("chat"), stats(6, 3));

    // Replacing an entry with another user moves the count.
    p.add("chat", info("u3", "c1"));
    assert_eq!(p.stats("chat"), stats(6, 4));

    p.remove("chat", "c2");
    assert_eq!(p.stats("chat"), stats(5, 4));
    p.remove("chat", "c3");
    assert_eq!(p.stats("chat"), stats(4, 3));
    p.remove("chat", "c5");
    p.remove("chat", "c6");
    assert_eq!(p.stats("chat"), stats(2, 2));

    assert_eq!(p.stats("nobody-here"), stats(0, 0));
}

#[test]
fn empty_channel_is_dropped() {
    let p = Presence::new();
    assert_eq!(p.channel_count(), 0);
    p.add("a", info("u1", "c1"));
    p.add("a", info("u2", "c2"));
    p.add("b", info("u1", "c1"));
    assert_eq!(p.channel_count(), 2);

    p.remove("a", "c1");
    assert_eq!(p.channel_count(), 2);
    p.remove("a", "c2");
    assert_eq!(p.channel_count(), 1);
    assert!(p.get("a").is_empty());
    assert_eq!(p.stats("a"), stats(0, 0));

    // Removing from a channel that is not there creates nothing.
    assert_eq!(p.remove("a", "c1"), None);
    assert_eq!(p.channel_count(), 1);

    p.remove("b", "c1");
    assert_eq!(p.channel_count(), 0);
}

/// Several threads add, replace and remove at once; the end state matches
/// what each thread left behind, and the O(1) stats agree with the entries.
#[test]
fn concurrent_adds_and_removes_end_consistent() {
    const THREADS: usize = 8;
    const CLIENTS: usize = 200;
    const CHANNELS: usize = 4;
    let p = Presence::new();

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let p = &p;
            s.spawn(move || {
                for i in 0..CLIENTS {
                    let ch = format!("ch{}", i % CHANNELS);
                    let client = format!("t{t}-c{i}");
                    // Users shared across threads: user i % 10.
                    assert!(p.add(&ch, info(&format!("u{}", i % 10), &client)));
                    assert!(!p.add(&ch, info(&format!("u{}", i % 10), &client)));
                    // Churn a shared channel that keeps emptying, racing the
                    // other threads' adds against its removal.
                    assert!(p.add("churn", info("x", &client)));
                    assert_eq!(p.remove("churn", &client).map(|e| e.client), Some(client.clone()));
                    if i % 2 == 1 {
                        assert!(p.remove(&ch, &client).is_some());
                    }
                }
                // One client per thread stays in the churned channel: none of
                // them may be lost to a concurrent "channel became empty".
                assert!(p.add("churn", info("stay", &format!("t{t}-stay"))));
            });
        }
    });

    // Odd clients sit in ch1 and ch3 only (CHANNELS is even) and were all
    // removed, so those two channels must have been dropped.
    assert_eq!(p.channel_count(), CHANNELS / 2 + 1);
    let churn = p.get("churn");
    assert_eq!(churn.len(), THREADS);
    assert_eq!(p.stats("churn"), stats(THREADS as u32, 1));

    let mut total = 0;
    for c in 0..CHANNELS {
        let ch = format!("ch{c}");
        let entries = p.get(&ch);
        for (id, e) in &entries {
            assert_eq!(id, &e.client);
            let i: usize = id.rsplit_once("-c").unwrap().1.parse().unwrap();
            assert_eq!(i % 2, 0, "odd clients were removed: {id}");
            assert_eq!(i % CHANNELS, c);
        }
        assert_eq!(entries.len(), if c % 2 == 0 { THREADS * CLIENTS / CHANNELS } else { 0 });
        let users: HashSet<&str> = entries.values().map(|e| e.user.as_str()).collect();
        assert_eq!(p.stats(&ch), stats(entries.len() as u32, users.len() as u32));
        total += entries.len();
    }
    assert_eq!(total, THREADS * CLIENTS / 2);
}
