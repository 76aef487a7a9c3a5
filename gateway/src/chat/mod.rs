//! Chat interactions: the pure model of edits, deletes, reactions, replies,
//! threads and read marks on top of a channel stream.
//!
//! An interaction is an ordinary publication whose `tags` say what it does
//! (`sb.kind`, `sb.ref`, `sb.reply_to`, `sb.thread`, `sb.reaction`). This
//! module names those tags, builds them, and folds an ordered run of
//! publications into per-message [`Aggregate`]s. It owns no state, does no
//! I/O and knows nothing of engines or sessions: the hub reads the stream,
//! hands it here, and publishes what this module describes. Because every
//! answer is a function of the stream alone, any node and any restart that
//! sees the same stream gives the same answer.
//!
//! Depends on `protocol` only.

pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::protocol::{Payload, Publication};

/// Tag naming the interaction kind; a publication without it is a message.
pub const TAG_KIND: &str = "sb.kind";
/// Tag holding the target message's offset (edit, delete, reactions, read).
pub const TAG_REF: &str = "sb.ref";
/// Tag of a reply: the offset of the message it answers.
pub const TAG_REPLY_TO: &str = "sb.reply_to";
/// Tag of a reply: the offset of its thread's root message.
pub const TAG_THREAD: &str = "sb.thread";
/// Tag of a reaction: the reaction itself (an emoji or a short name).
pub const TAG_REACTION: &str = "sb.reaction";

/// What an interaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Message,
    Edit,
    Delete,
    ReactionAdd,
    ReactionRemove,
    /// A read receipt; ephemeral (never stored in history).
    Read,
    /// A typing indicator; ephemeral and throttled per user.
    Typing,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Self::Message, Self::Edit, Self::Delete, Self::ReactionAdd, Self::ReactionRemove, Self::Read, Self::Typing];

    /// The `sb.kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::ReactionAdd => "reaction.add",
            Self::ReactionRemove => "reaction.remove",
            Self::Read => "read",
            Self::Typing => "typing",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// Delivered live only: the hub publishes these with `skip_history`, so
    /// recovery and history never return them.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Read | Self::Typing)
    }
}

/// What one publication means to the fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction<'a> {
    pub kind: Kind,
    /// `sb.ref`, for every kind but `message`.
    pub target: Option<u64>,
    pub reply_to: Option<u64>,
    pub thread: Option<u64>,
    pub reaction: Option<&'a str>,
}

/// Reads a publication's tags. Untagged publications (plain `publish`) are
/// messages; a tag with an unknown kind or an unparsable offset makes the
/// publication something the fold ignores (`None`).
pub fn classify(publication: &Publication) -> Option<Interaction<'_>> {
    let tags = &publication.tags;
    let kind = match tags.get(TAG_KIND) {
        None => Kind::Message,
        Some(k) => Kind::parse(k)?,
    };
    let offset =
        |key: &str| -> Result<Option<u64>, ()> { tags.get(key).map(|v| v.parse::<u64>().map_err(|_| ())).transpose() };
    let target = offset(TAG_REF).ok()?;
    if kind != Kind::Message && target.is_none() {
        return None;
    }
    Some(Interaction {
        kind,
        target,
        reply_to: offset(TAG_REPLY_TO).ok()?,
        thread: offset(TAG_THREAD).ok()?,
        reaction: tags.get(TAG_REACTION).map(String::as_str),
    })
}

/// The tags of an interaction, as the hub publishes them.
pub fn tags(kind: Kind, target: Option<u64>) -> HashMap<String, String> {
    let mut tags = HashMap::with_capacity(3);
    tags.insert(TAG_KIND.to_owned(), kind.as_str().to_owned());
    if let Some(target) = target {
        tags.insert(TAG_REF.to_owned(), target.to_string());
    }
    tags
}

/// The tags of a reply to `reply_to`, whose thread root is `thread`.
pub fn reply_tags(reply_to: u64, thread: u64) -> HashMap<String, String> {
    let mut tags = tags(Kind::Message, None);
    tags.insert(TAG_REPLY_TO.to_owned(), reply_to.to_string());
    tags.insert(TAG_THREAD.to_owned(), thread.to_string());
    tags
}

/// Limits the fold enforces, so that an aggregate's size is bounded whatever
/// the stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct reactions one message may carry; adds of a new reaction past
    /// it are ignored.
    pub max_reactions_per_message: usize,
}

/// One message's state as of the end of the folded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    pub offset: u64,
    /// The author (`info.user` of the original message; `""` for the API).
    pub user: String,
    pub data: Payload,
    pub edits: u32,
    pub deleted: bool,
    pub reply_to: Option<u64>,
    pub thread: Option<u64>,
    /// Live (not deleted) messages whose thread root is this message.
    pub replies: u32,
    /// Reaction → users who reacted with it, in a stable order.
    pub reactions: BTreeMap<String, BTreeSet<String>>,
}

/// The error a caller gets when an interaction cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("message not found (offset {0})")]
    NotFound(u64),
    #[error("message is deleted (offset {0})")]
    Deleted(u64),
    #[error("only the author may change this message")]
    NotAuthor,
    #[error("too many reactions (max {0} per message)")]
    TooManyReactions(usize),
    #[error("reaction must be 1 to {0} bytes")]
    BadReaction(usize),
}

/// Folds an ordered run of publications into message states.
///
/// Interactions whose target is not in the run (older than the scanned
/// window, or never a message) are ignored: the caller scans from the oldest
/// message it answers for, so every interaction that matters comes after it.
#[derive(Debug, Clone)]
pub struct Fold {
    limits: Limits,
    messages: BTreeMap<u64, MessageState>,
}

impl Fold {
    pub fn new(limits: Limits) -> Self {
        Self { limits, messages: BTreeMap::new() }
    }

    /// Folds every publication of `run`, in order.
    pub fn run<'a>(limits: Limits, run: impl IntoIterator<Item = &'a Publication>) -> Self {
        let mut fold = Self::new(limits);
        for publication in run {
            fold.apply(publication);
        }
        fold
    }

    /// Applies one publication. Publications without an offset (ephemeral
    /// ones) change nothing.
    pub fn apply(&mut self, publication: &Publication) {
        let Some(interaction) = classify(publication) else { return };
        if publication.offset == 0 {
            return;
        }
        let user = publication.info.as_ref().map(|i| i.user.as_str()).unwrap_or_default();
        match interaction.kind {
            Kind::Message => {
                if let Some(root) = interaction.thread.and_then(|t| self.messages.get_mut(&t)) {
                    root.replies += 1;
                }
                self.messages.insert(
                    publication.offset,
                    MessageState {
                        offset: publication.offset,
                        user: user.to_owned(),
                        data: publication.data.clone(),
                        edits: 0,
                        deleted: false,
                        reply_to: interaction.reply_to,
                        thread: interaction.thread,
                        replies: 0,
                        reactions: BTreeMap::new(),
                    },
                );
            }
            Kind::Edit => {
                if let Some(m) = self.live_mut(interaction.target) {
                    m.data = publication.data.clone();
                    m.edits = m.edits.saturating_add(1);
                }
            }
            Kind::Delete => {
                let Some(m) = self.live_mut(interaction.target) else { return };
                m.deleted = true;
                m.data = Payload::from_json_unchecked(bytes::Bytes::from_static(b"null"));
                m.reactions.clear();
                let thread = m.thread;
                if let Some(root) = thread.and_then(|t| self.messages.get_mut(&t)) {
                    root.replies = root.replies.saturating_sub(1);
                }
            }
            Kind::ReactionAdd => {
                let max = self.limits.max_reactions_per_message;
                let (Some(m), Some(reaction)) = (self.live_mut(interaction.target), interaction.reaction) else {
                    return;
                };
                if let Some(users) = m.reactions.get_mut(reaction) {
                    users.insert(user.to_owned());
                } else if m.reactions.len() < max {
                    m.reactions.insert(reaction.to_owned(), BTreeSet::from([user.to_owned()]));
                }
            }
            Kind::ReactionRemove => {
                let (Some(m), Some(reaction)) = (self.live_mut(interaction.target), interaction.reaction) else {
                    return;
                };
                if let Some(users) = m.reactions.get_mut(reaction) {
                    users.remove(user);
                    if users.is_empty() {
                        m.reactions.remove(reaction);
                    }
                }
            }
            Kind::Read | Kind::Typing => {}
        }
    }

    fn live_mut(&mut self, target: Option<u64>) -> Option<&mut MessageState> {
        self.messages.get_mut(&target?).filter(|m| !m.deleted)
    }

    pub fn get(&self, offset: u64) -> Option<&MessageState> {
        self.messages.get(&offset)
    }

    /// Every message of the run, by offset.
    pub fn messages(&self) -> impl Iterator<Item = &MessageState> {
        self.messages.values()
    }

    /// The aggregate of the message at `offset` as `caller` sees it.
    pub fn aggregate(&self, offset: u64, caller: &str) -> Option<Aggregate> {
        self.get(offset).map(|m| Aggregate::of(m, caller))
    }

    /// Whether `user` may edit or delete the message at `offset` (`admin`:
    /// the caller holds the namespace's admin claim, or is the server API).
    pub fn check_change(&self, offset: u64, user: &str, admin: bool) -> Result<&MessageState, ChatError> {
        let m = self.get(offset).ok_or(ChatError::NotFound(offset))?;
        if m.deleted {
            return Err(ChatError::Deleted(offset));
        }
        if !admin && (m.user.is_empty() || m.user != user) {
            return Err(ChatError::NotAuthor);
        }
        Ok(m)
    }

    /// Whether `reaction` may be added to the message at `offset`.
    pub fn check_reaction(&self, offset: u64, reaction: &str) -> Result<(), ChatError> {
        let m = self.get(offset).ok_or(ChatError::NotFound(offset))?;
        if m.deleted {
            return Err(ChatError::Deleted(offset));
        }
        if !m.reactions.contains_key(reaction) && m.reactions.len() >= self.limits.max_reactions_per_message {
            return Err(ChatError::TooManyReactions(self.limits.max_reactions_per_message));
        }
        Ok(())
    }

    /// Messages of `user`'s unread window: live messages by someone else.
    /// The run must start right after the user's last-read offset.
    pub fn unread(&self, user: &str) -> u64 {
        self.messages.values().filter(|m| !m.deleted && m.user != user).count() as u64
    }

    /// The replies in the thread rooted at `root` with an offset above
    /// `since`, oldest first, at most `limit`.
    pub fn thread(&self, root: u64, since: u64, limit: usize) -> impl Iterator<Item = &MessageState> {
        self.messages
            .range(since.saturating_add(1)..)
            .map(|(_, m)| m)
            .filter(move |m| m.thread == Some(root) && !m.deleted)
            .take(limit)
    }
}

/// Checks a reaction's size: non-empty, at most `max` bytes.
pub fn check_reaction_text(reaction: &str, max: usize) -> Result<(), ChatError> {
    if reaction.is_empty() || reaction.len() > max {
        return Err(ChatError::BadReaction(max));
    }
    Ok(())
}

/// A reaction's summary on one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReactionSummary {
    pub reaction: String,
    pub count: usize,
    /// The distinct users who reacted, sorted.
    pub users: Vec<String>,
    /// Whether the caller is one of them.
    pub me: bool,
}

/// What `message.get` and aggregated history return for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    pub offset: u64,
    pub user: String,
    /// The current version (`null` once deleted).
    pub data: Payload,
    pub edits: u32,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    pub replies: u32,
    pub reactions: Vec<ReactionSummary>,
}

impl Aggregate {
    pub fn of(m: &MessageState, caller: &str) -> Self {
        Self {
            offset: m.offset,
            user: m.user.clone(),
            data: m.data.clone(),
            edits: m.edits,
            deleted: m.deleted,
            reply_to: m.reply_to,
            thread: m.thread,
            replies: m.replies,
            reactions: m
                .reactions
                .iter()
                .map(|(reaction, users)| ReactionSummary {
                    reaction: reaction.clone(),
                    count: users.len(),
                    users: users.iter().cloned().collect(),
                    me: users.contains(caller),
                })
                .collect(),
        }
    }
}
