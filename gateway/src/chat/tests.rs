//! The fold against hand-written streams, and its invariants on random ones.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::protocol::ClientInfo;

const LIMITS: Limits = Limits { max_reactions_per_message: 3 };

/// A stream under construction: offsets are assigned in order.
#[derive(Default)]
struct Stream {
    pubs: Vec<Publication>,
}

impl Stream {
    fn push(&mut self, user: &str, data: &str, tags: HashMap<String, String>) -> u64 {
        let offset = self.pubs.len() as u64 + 1;
        self.pubs.push(Publication {
            data: Payload::from_json(data).unwrap(),
            info: Some(ClientInfo { user: user.into(), client: format!("c-{user}"), ..ClientInfo::default() }),
            offset,
            tags,
        });
        offset
    }

    fn message(&mut self, user: &str, text: &str) -> u64 {
        self.push(user, &format!("{{\"text\":\"{text}\"}}"), HashMap::new())
    }

    fn reply(&mut self, user: &str, text: &str, reply_to: u64, thread: u64) -> u64 {
        self.push(user, &format!("{{\"text\":\"{text}\"}}"), reply_tags(reply_to, thread))
    }

    fn act(&mut self, user: &str, kind: Kind, target: u64, reaction: Option<&str>) -> u64 {
        let mut tags = tags(kind, Some(target));
        if let Some(r) = reaction {
            tags.insert(TAG_REACTION.into(), r.into());
        }
        let data = if kind == Kind::Edit { "{\"text\":\"edited\"}" } else { "{}" };
        self.push(user, data, tags)
    }

    fn fold(&self) -> Fold {
        Fold::run(LIMITS, &self.pubs)
    }
}

#[test]
fn kinds_round_trip_and_only_read_and_typing_are_ephemeral() {
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
    }
    let ephemeral: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.is_ephemeral()).collect();
    assert_eq!(ephemeral, vec![Kind::Read, Kind::Typing]);
    assert_eq!(Kind::parse("reaction"), None);
}

#[test]
fn untagged_publications_are_messages_and_bad_tags_are_ignored() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    let mut bad = tags(Kind::Edit, None);
    bad.insert(TAG_REF.into(), "not-a-number".into());
    s.push("alice", "{\"text\":\"x\"}", bad);
    s.push("alice", "{\"text\":\"y\"}", tags(Kind::Edit, None));
    let mut unknown = HashMap::new();
    unknown.insert(TAG_KIND.into(), "poke".into());
    s.push("alice", "{}", unknown);
    let fold = s.fold();
    assert_eq!(fold.messages().count(), 1);
    let agg = fold.aggregate(m, "alice").unwrap();
    assert_eq!(agg.edits, 0);
    assert_eq!(agg.data.as_bytes().as_ref(), b"{\"text\":\"hi\"}");
}

#[test]
fn edits_count_and_replace_the_data_until_a_delete() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    s.act("alice", Kind::Edit, m, None);
    s.act("alice", Kind::Edit, m, None);
    let fold = s.fold();
    let agg = fold.aggregate(m, "bob").unwrap();
    assert_eq!((agg.edits, agg.deleted), (2, false));
    assert_eq!(agg.data.as_bytes().as_ref(), b"{\"text\":\"edited\"}");

    s.act("alice", Kind::ReactionAdd, m, Some("👍"));
    s.act("alice", Kind::Delete, m, None);
    s.act("alice", Kind::Edit, m, None);
    s.act("bob", Kind::ReactionAdd, m, Some("🎉"));
    let fold = s.fold();
    let agg = fold.aggregate(m, "bob").unwrap();
    assert_eq!((agg.edits, agg.deleted), (2, true), "an edit after the delete changes nothing");
    assert_eq!(agg.data.as_bytes().as_ref(), b"null");
    assert!(agg.reactions.is_empty(), "{agg:?}");
    assert_eq!(fold.check_change(m, "alice", false), Err(ChatError::Deleted(m)));
    assert_eq!(fold.check_reaction(m, "👍"), Err(ChatError::Deleted(m)));
}

#[test]
fn reactions_count_distinct_users_and_know_the_caller() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    s.act("bob", Kind::ReactionAdd, m, Some("👍"));
    s.act("bob", Kind::ReactionAdd, m, Some("👍"));
    s.act("carol", Kind::ReactionAdd, m, Some("👍"));
    s.act("carol", Kind::ReactionAdd, m, Some("🎉"));
    s.act("carol", Kind::ReactionRemove, m, Some("🎉"));
    s.act("dave", Kind::ReactionRemove, m, Some("👍"));
    let agg = s.fold().aggregate(m, "bob").unwrap();
    assert_eq!(
        agg.reactions,
        vec![ReactionSummary {
            reaction: "👍".into(), count: 2, users: vec!["bob".into(), "carol".into()], me: true
        }]
    );
    let agg = s.fold().aggregate(m, "alice").unwrap();
    assert!(!agg.reactions[0].me);
}

#[test]
fn distinct_reactions_stop_at_the_limit() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    for r in ["a", "b", "c", "d"] {
        s.act("bob", Kind::ReactionAdd, m, Some(r));
    }
    let fold = s.fold();
    let names: Vec<String> = fold.aggregate(m, "").unwrap().reactions.into_iter().map(|r| r.reaction).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(fold.check_reaction(m, "d"), Err(ChatError::TooManyReactions(3)));
    assert_eq!(fold.check_reaction(m, "a"), Ok(()), "an existing reaction may still be added by others");
    s.act("carol", Kind::ReactionAdd, m, Some("a"));
    assert_eq!(s.fold().aggregate(m, "").unwrap().reactions[0].count, 2);
}

#[test]
fn only_the_author_or_an_admin_changes_a_message_and_targets_must_exist() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    let fold = s.fold();
    assert!(fold.check_change(m, "alice", false).is_ok());
    assert_eq!(fold.check_change(m, "bob", false), Err(ChatError::NotAuthor));
    assert!(fold.check_change(m, "bob", true).is_ok());
    assert_eq!(fold.check_change(99, "alice", false), Err(ChatError::NotFound(99)));
    assert_eq!(fold.check_reaction(99, "👍"), Err(ChatError::NotFound(99)));
    let mut api = Stream::default();
    let m = api.push("", "{}", HashMap::new());
    assert_eq!(api.fold().check_change(m, "", false), Err(ChatError::NotAuthor), "nobody owns an API message");
}

#[test]
fn replies_count_per_thread_and_thread_pages_by_offset() {
    let mut s = Stream::default();
    let root = s.message("alice", "root");
    let r1 = s.reply("bob", "r1", root, root);
    let other = s.message("carol", "other");
    let r2 = s.reply("carol", "r2", r1, root);
    let r3 = s.reply("alice", "r3", root, root);
    s.act("carol", Kind::Delete, r2, None);
    let fold = s.fold();
    let agg = fold.aggregate(root, "").unwrap();
    assert_eq!(agg.replies, 2, "r2 was deleted");
    assert_eq!(fold.aggregate(r2, "").unwrap().thread, Some(root));
    assert_eq!(fold.aggregate(r2, "").unwrap().reply_to, Some(r1));
    let page: Vec<u64> = fold.thread(root, 0, 10).map(|m| m.offset).collect();
    assert_eq!(page, vec![r1, r3]);
    let page: Vec<u64> = fold.thread(root, r1, 10).map(|m| m.offset).collect();
    assert_eq!(page, vec![r3]);
    let page: Vec<u64> = fold.thread(root, 0, 1).map(|m| m.offset).collect();
    assert_eq!(page, vec![r1]);
    assert_eq!(fold.aggregate(other, "").unwrap().replies, 0);
}

#[test]
fn unread_counts_live_messages_of_others() {
    let mut s = Stream::default();
    s.message("alice", "1");
    let b = s.message("bob", "2");
    s.message("bob", "3");
    s.act("bob", Kind::Delete, b, None);
    s.act("bob", Kind::ReactionAdd, 1, Some("x"));
    let fold = s.fold();
    assert_eq!(fold.unread("alice"), 1);
    assert_eq!(fold.unread("bob"), 1);
    assert_eq!(fold.unread("carol"), 2);
}

#[test]
fn ephemeral_publications_without_an_offset_change_nothing() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    let mut typing =
        Publication { data: Payload::from_json("{}").unwrap(), info: None, offset: 0, tags: tags(Kind::Edit, Some(m)) };
    let mut fold = s.fold();
    fold.apply(&typing);
    typing.tags = tags(Kind::Typing, None);
    fold.apply(&typing);
    assert_eq!(fold.aggregate(m, "").unwrap().edits, 0);
    assert_eq!(fold.messages().count(), 1);
}

#[test]
fn aggregates_serialise_with_the_documented_field_names() {
    let mut s = Stream::default();
    let m = s.message("alice", "hi");
    s.act("bob", Kind::ReactionAdd, m, Some("👍"));
    let json = serde_json::to_value(s.fold().aggregate(m, "bob").unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "offset": 1, "user": "alice", "data": {"text": "hi"}, "edits": 0, "deleted": false, "replies": 0,
            "reactions": [{"reaction": "👍", "count": 1, "users": ["bob"], "me": true}],
        })
    );
}

#[derive(Debug, Clone)]
enum Op {
    Message { user: u8, reply: Option<u8> },
    Edit { user: u8, target: u8 },
    Delete { user: u8, target: u8 },
    React { user: u8, target: u8, reaction: u8, add: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, proptest::option::of(0..40u8)).prop_map(|(user, reply)| Op::Message { user, reply }),
        (0..4u8, 0..40u8).prop_map(|(user, target)| Op::Edit { user, target }),
        (0..4u8, 0..40u8).prop_map(|(user, target)| Op::Delete { user, target }),
        (0..4u8, 0..40u8, 0..6u8, any::<bool>()).prop_map(|(user, target, reaction, add)| Op::React {
            user,
            target,
            reaction,
            add
        }),
    ]
}

/// Builds a stream from `ops`; targets are taken modulo the offsets so far.
fn build(ops: &[Op]) -> Stream {
    let mut s = Stream::default();
    s.message("u0", "first");
    for op in ops {
        let n = s.pubs.len() as u64;
        let pick = |t: u8| u64::from(t) % n + 1;
        match *op {
            Op::Message { user, reply: None } => {
                s.message(&format!("u{user}"), "m");
            }
            Op::Message { user, reply: Some(t) } => {
                let to = pick(t);
                let thread = s.fold().get(to).map_or(to, |m| m.thread.unwrap_or(to));
                s.reply(&format!("u{user}"), "r", to, thread);
            }
            Op::Edit { user, target } => {
                s.act(&format!("u{user}"), Kind::Edit, pick(target), None);
            }
            Op::Delete { user, target } => {
                s.act(&format!("u{user}"), Kind::Delete, pick(target), None);
            }
            Op::React { user, target, reaction, add } => {
                let kind = if add { Kind::ReactionAdd } else { Kind::ReactionRemove };
                s.act(&format!("u{user}"), kind, pick(target), Some(&format!("r{reaction}")));
            }
        }
    }
    s
}

proptest! {
    /// Whatever the stream, aggregates stay within their limits and agree
    /// with what the stream says when read message by message.
    #[test]
    fn aggregates_hold_their_invariants(ops in proptest::collection::vec(op(), 0..80)) {
        let s = build(&ops);
        let fold = s.fold();
        for m in fold.messages() {
            prop_assert!(m.reactions.len() <= LIMITS.max_reactions_per_message);
            prop_assert!(m.reactions.values().all(|users| !users.is_empty()));
            if m.deleted {
                prop_assert!(m.reactions.is_empty());
            }
            let live_replies = fold.messages().filter(|r| r.thread == Some(m.offset) && !r.deleted).count();
            prop_assert_eq!(m.replies as usize, live_replies);
            let edits_before_delete = {
                let mut n = 0u32;
                for p in &s.pubs {
                    let i = classify(p).unwrap();
                    if i.target == Some(m.offset) {
                        match i.kind {
                            Kind::Delete => break,
                            Kind::Edit => n += 1,
                            _ => {}
                        }
                    }
                }
                n
            };
            prop_assert_eq!(m.edits, edits_before_delete);
        }
    }

    /// The fold only ever looks forward: folding a prefix and then the rest
    /// gives what folding the whole run gives.
    #[test]
    fn folding_in_two_steps_equals_folding_at_once(ops in proptest::collection::vec(op(), 0..60), cut in 0usize..60) {
        let s = build(&ops);
        let cut = cut.min(s.pubs.len());
        let mut stepwise = Fold::run(LIMITS, &s.pubs[..cut]);
        for p in &s.pubs[cut..] {
            stepwise.apply(p);
        }
        let whole = s.fold();
        prop_assert_eq!(stepwise.messages().collect::<Vec<_>>(), whole.messages().collect::<Vec<_>>());
    }
}
