//! The resume-chaos checker: pure functions over what publishers and
//! subscribers recorded, naming every anomaly (Jepsen's vocabulary) that no
//! explicit gap signal covers.
//!
//! Gap signals: a (re)subscribe answered `recovered: false` (or a fresh
//! subscribe), and a new epoch in a subscribe reply (a Redis restart without
//! persistence loses its streams: that loss is declared, so acked
//! publications of an earlier epoch are not counted as lost). A subscriber's position restarts from the
//! subscribe reply's top after one. A disconnect alone (3008, 3010, a dropped
//! socket, a gateway restart) is not a gap: the subscriber must resume with
//! `recovered: true` or be told it cannot.

use std::collections::{BTreeMap, HashMap, HashSet};

/// How a publish ended, as its publisher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acked {
        epoch: String,
        offset: u64,
    },
    /// An error reply: it must never appear.
    Failed,
    /// No answer (connection lost): it may or may not have happened.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Publish {
    pub channel: String,
    /// Unique per publish.
    pub payload: String,
    pub outcome: Outcome,
}

/// One thing a subscriber saw, in the order it saw them.
#[derive(Debug, Clone)]
pub enum Event {
    /// A subscribe reply. `top` is its offset; `recovered` false on a
    /// fresh subscribe.
    Subscribed { channel: String, epoch: String, top: u64, recovered: bool, publications: Vec<(u64, String)> },
    /// A live publication.
    Publication { channel: String, offset: u64, payload: String },
    /// The connection ended (close code or disconnect push code when there
    /// was one; reported, not a gap signal).
    Disconnected { code: Option<u16> },
}

/// A channel after quiesce: its history as the gateway reports it.
#[derive(Debug, Clone)]
pub struct FinalChannel {
    pub epoch: String,
    pub top: u64,
    pub history: Vec<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    LostAcked { channel: String, offset: u64, payload: String },
    Duplicate { subscriber: usize, channel: String, offset: u64 },
    NonMonotonic { subscriber: usize, channel: String, after: u64, got: u64 },
    Skipped { subscriber: usize, channel: String, after: u64, got: u64 },
    Divergent { channel: String, epoch: String, offset: u64, payloads: (String, String) },
    FailedAppeared { channel: String, payload: String },
    Behind { subscriber: usize, channel: String, at: Option<(String, u64)>, top: (String, u64) },
}

/// Checks everything; an empty result is a passing run.
pub fn check(
    publishes: &[Publish],
    subscribers: &[Vec<Event>],
    finals: &BTreeMap<String, FinalChannel>,
) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let failed: HashSet<(&str, &str)> = publishes
        .iter()
        .filter(|p| p.outcome == Outcome::Failed)
        .map(|p| (p.channel.as_str(), p.payload.as_str()))
        .collect();
    // (channel, epoch, offset) -> payload, over every observation.
    let mut seen: HashMap<(String, String, u64), String> = HashMap::new();
    let mut observe = |anomalies: &mut Vec<Anomaly>, channel: &str, epoch: &str, offset: u64, payload: &str| {
        if failed.contains(&(channel, payload)) {
            anomalies.push(Anomaly::FailedAppeared { channel: channel.into(), payload: payload.into() });
        }
        let key = (channel.to_owned(), epoch.to_owned(), offset);
        match seen.get(&key) {
            Some(other) if other != payload => anomalies.push(Anomaly::Divergent {
                channel: channel.into(),
                epoch: epoch.into(),
                offset,
                payloads: (other.clone(), payload.into()),
            }),
            Some(_) => {}
            None => {
                seen.insert(key, payload.to_owned());
            }
        }
    };

    for (subscriber, events) in subscribers.iter().enumerate() {
        // channel -> (epoch, position)
        let mut at: HashMap<String, (String, u64)> = HashMap::new();
        let mut deliver = |anomalies: &mut Vec<Anomaly>,
                           at: &mut HashMap<String, (String, u64)>,
                           channel: &str,
                           offset: u64,
                           payload: &str| {
            let Some((epoch, position)) = at.get_mut(channel) else { return };
            observe(anomalies, channel, epoch, offset, payload);
            let after = *position;
            if offset == after + 1 {
                *position = offset;
            } else if offset == after {
                anomalies.push(Anomaly::Duplicate { subscriber, channel: channel.into(), offset });
            } else if offset < after {
                anomalies.push(Anomaly::NonMonotonic { subscriber, channel: channel.into(), after, got: offset });
            } else {
                anomalies.push(Anomaly::Skipped { subscriber, channel: channel.into(), after, got: offset });
                *position = offset;
            }
        };
        for event in events {
            match event {
                Event::Subscribed { channel, epoch, top, recovered, publications } => {
                    let continuous = *recovered && at.get(channel).is_some_and(|(e, _)| e == epoch);
                    if !continuous {
                        // A gap signal: start over from the reply's top.
                        at.insert(channel.clone(), (epoch.clone(), *top));
                        continue;
                    }
                    for (offset, payload) in publications {
                        deliver(&mut anomalies, &mut at, channel, *offset, payload);
                    }
                    let after = at[channel].1;
                    if after != *top {
                        let anomaly = Anomaly::Skipped { subscriber, channel: channel.clone(), after, got: *top };
                        anomalies.push(anomaly);
                        at.insert(channel.clone(), (epoch.clone(), *top));
                    }
                }
                Event::Publication { channel, offset, payload } => {
                    deliver(&mut anomalies, &mut at, channel, *offset, payload);
                }
                Event::Disconnected { .. } => {}
            }
        }
        for (channel, last) in finals {
            let position = at.get(channel).cloned();
            if position.as_ref() != Some(&(last.epoch.clone(), last.top)) {
                let top = (last.epoch.clone(), last.top);
                anomalies.push(Anomaly::Behind { subscriber, channel: channel.clone(), at: position, top });
            }
        }
    }

    for (channel, last) in finals {
        for (offset, payload) in &last.history {
            observe(&mut anomalies, channel, &last.epoch, *offset, payload);
        }
        let first_held = last.history.first().map_or(last.top + 1, |(o, _)| *o);
        for p in publishes.iter().filter(|p| &p.channel == channel) {
            let Outcome::Acked { epoch, offset } = &p.outcome else { continue };
            // Another epoch: the stream was lost, which is a gap signal.
            if *epoch != last.epoch {
                continue;
            }
            let held = last.history.iter().find(|(o, _)| o == offset);
            let lost = match held {
                Some((_, payload)) => payload != &p.payload,
                None => *offset > last.top || *offset >= first_held,
            };
            if lost {
                anomalies.push(Anomaly::LostAcked {
                    channel: channel.clone(),
                    offset: *offset,
                    payload: p.payload.clone(),
                });
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(ch: &str, payload: &str, offset: u64) -> Publish {
        Publish { channel: ch.into(), payload: payload.into(), outcome: Outcome::Acked { epoch: "E".into(), offset } }
    }

    fn sub(top: u64, recovered: bool, publications: &[(u64, &str)]) -> Event {
        Event::Subscribed {
            channel: "c".into(),
            epoch: "E".into(),
            top,
            recovered,
            publications: publications.iter().map(|(o, p)| (*o, (*p).to_owned())).collect(),
        }
    }

    fn live(offset: u64, payload: &str) -> Event {
        Event::Publication { channel: "c".into(), offset, payload: payload.into() }
    }

    fn finals(top: u64, history: &[(u64, &str)]) -> BTreeMap<String, FinalChannel> {
        let history = history.iter().map(|(o, p)| (*o, (*p).to_owned())).collect();
        BTreeMap::from([("c".to_owned(), FinalChannel { epoch: "E".into(), top, history })])
    }

    fn publishes() -> Vec<Publish> {
        vec![acked("c", "a", 1), acked("c", "b", 2), acked("c", "c", 3)]
    }

    const HISTORY: [(u64, &str); 3] = [(1, "a"), (2, "b"), (3, "c")];

    #[test]
    fn a_clean_run_with_a_recovered_reconnect_passes() {
        let events = vec![
            sub(0, false, &[]),
            live(1, "a"),
            Event::Disconnected { code: Some(3008) },
            sub(3, true, &[(2, "b"), (3, "c")]),
        ];
        assert_eq!(check(&publishes(), &[events], &finals(3, &HISTORY)), []);
    }

    #[test]
    fn a_gap_covered_by_recovered_false_passes() {
        let events = vec![sub(0, false, &[]), live(1, "a"), sub(3, false, &[])];
        assert_eq!(check(&publishes(), &[events], &finals(3, &HISTORY)), []);
    }

    #[test]
    fn catches_a_skipped_offset() {
        let events = vec![sub(0, false, &[]), live(1, "a"), live(3, "c")];
        let found = check(&publishes(), &[events], &finals(3, &HISTORY));
        assert_eq!(found, [Anomaly::Skipped { subscriber: 0, channel: "c".into(), after: 1, got: 3 }]);
    }

    #[test]
    fn catches_a_partial_recovery() {
        let events = vec![sub(0, false, &[]), live(1, "a"), sub(3, true, &[(3, "c")])];
        let found = check(&publishes(), &[events], &finals(3, &HISTORY));
        assert_eq!(found, [Anomaly::Skipped { subscriber: 0, channel: "c".into(), after: 1, got: 3 }]);
    }

    #[test]
    fn catches_a_duplicate_and_a_step_back() {
        let events = vec![sub(0, false, &[]), live(1, "a"), live(2, "b"), live(2, "b"), live(1, "a"), live(3, "c")];
        let found = check(&publishes(), &[events], &finals(3, &HISTORY));
        assert_eq!(
            found,
            [
                Anomaly::Duplicate { subscriber: 0, channel: "c".into(), offset: 2 },
                Anomaly::NonMonotonic { subscriber: 0, channel: "c".into(), after: 2, got: 1 },
            ]
        );
    }

    #[test]
    fn catches_divergent_payloads_between_subscribers() {
        let one = vec![sub(0, false, &[]), live(1, "a"), live(2, "b"), live(3, "c")];
        let two = vec![sub(0, false, &[]), live(1, "a"), live(2, "X"), live(3, "c")];
        let found = check(&publishes(), &[one, two], &finals(3, &HISTORY));
        assert_eq!(
            found,
            [Anomaly::Divergent {
                channel: "c".into(),
                epoch: "E".into(),
                offset: 2,
                payloads: ("b".into(), "X".into())
            }]
        );
    }

    #[test]
    fn catches_a_failed_publish_appearing() {
        let mut pubs = publishes();
        pubs.push(Publish { channel: "c".into(), payload: "failed".into(), outcome: Outcome::Failed });
        let events = vec![sub(0, false, &[]), live(1, "a"), live(2, "b"), live(3, "c"), live(4, "failed")];
        let history = [(1, "a"), (2, "b"), (3, "c"), (4, "failed")];
        let found = check(&pubs, &[events], &finals(4, &history));
        assert_eq!(
            found,
            [
                Anomaly::FailedAppeared { channel: "c".into(), payload: "failed".into() },
                Anomaly::FailedAppeared { channel: "c".into(), payload: "failed".into() },
            ],
            "seen live and in history"
        );
    }

    #[test]
    fn catches_a_lost_acked_publication() {
        let events = vec![sub(0, false, &[]), live(1, "a"), live(2, "b")];
        // The gateway came back with top 2: acked offset 3 is gone.
        let found = check(&publishes(), &[events], &finals(2, &HISTORY[..2]));
        assert_eq!(found, [Anomaly::LostAcked { channel: "c".into(), offset: 3, payload: "c".into() }]);
    }

    #[test]
    fn catches_a_subscriber_behind_after_quiesce() {
        let events = vec![sub(0, false, &[]), live(1, "a")];
        let found = check(&publishes(), &[events], &finals(3, &HISTORY));
        assert_eq!(
            found,
            [Anomaly::Behind { subscriber: 0, channel: "c".into(), at: Some(("E".into(), 1)), top: ("E".into(), 3) }]
        );
    }

    #[test]
    fn an_epoch_change_at_resubscribe_is_a_declared_gap() {
        // Redis restarted without persistence: epoch E is gone with its
        // offset 3, the stream goes on in epoch F.
        let mut pubs = publishes();
        pubs.push(Publish {
            channel: "c".into(),
            payload: "d".into(),
            outcome: Outcome::Acked { epoch: "F".into(), offset: 1 },
        });
        let resubscribe = Event::Subscribed {
            channel: "c".into(),
            epoch: "F".into(),
            top: 1,
            recovered: false,
            publications: vec![],
        };
        let events =
            vec![sub(0, false, &[]), live(1, "a"), live(2, "b"), Event::Disconnected { code: Some(3010) }, resubscribe];
        let history = vec![(1, "d".to_owned())];
        let finals = BTreeMap::from([("c".to_owned(), FinalChannel { epoch: "F".into(), top: 1, history })]);
        assert_eq!(check(&pubs, &[events], &finals), []);
    }

    #[test]
    fn catches_a_silent_epoch_switch() {
        // The new epoch's first publication delivered live, with no gap signal.
        let events = vec![sub(0, false, &[]), live(1, "a"), live(2, "b"), live(1, "d")];
        let history = vec![(1, "d".to_owned())];
        let finals = BTreeMap::from([("c".to_owned(), FinalChannel { epoch: "F".into(), top: 1, history })]);
        let found = check(&publishes(), &[events], &finals);
        assert!(
            found.contains(&Anomaly::NonMonotonic { subscriber: 0, channel: "c".into(), after: 2, got: 1 }),
            "{found:?}"
        );
        assert!(found.iter().any(|a| matches!(a, Anomaly::Behind { .. })), "{found:?}");
    }
}
