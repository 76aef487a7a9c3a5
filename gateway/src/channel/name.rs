//! Channel name rules.

/// Why a channel name was refused. Maps to protocol error 107 bad request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name too long (max {max} bytes)")]
    TooLong { max: usize },
    #[error("channel name must be printable ascii without spaces")]
    InvalidChar,
}

/// Checks a channel name: non-empty, at most `max_bytes`, printable ASCII
/// with no whitespace. `*` and `&` are reserved, as in Centrifugo.
pub fn validate_name(name: &str, max_bytes: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_bytes {
        return Err(NameError::TooLong { max: max_bytes });
    }
    if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'&') {
        return Err(NameError::InvalidChar);
    }
    Ok(())
}

/// The namespace of `name`: the part before the first `:`, if any.
pub fn namespace_of(name: &str) -> Option<&str> {
    name.split_once(':').map(|(ns, _)| ns)
}

/// For a user-limited channel (`news#42` or `dialog#42,43`) the users allowed
/// in it; `None` when the name has no `#`.
pub fn user_limited_users(name: &str) -> Option<impl Iterator<Item = &str>> {
    name.rsplit_once('#').map(|(_, users)| users.split(',').filter(|u| !u.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(validate_name("chat:room-1", 255), Ok(()));
        assert_eq!(validate_name("", 255), Err(NameError::Empty));
        assert_eq!(validate_name("abcd", 3), Err(NameError::TooLong { max: 3 }));
        assert_eq!(validate_name("a b", 255), Err(NameError::InvalidChar));
        assert_eq!(validate_name("caf\u{e9}", 255), Err(NameError::InvalidChar));
        assert_eq!(validate_name("a*", 255), Err(NameError::InvalidChar));
    }

    #[test]
    fn splits_namespace_and_users() {
        assert_eq!(namespace_of("chat:1:2"), Some("chat"));
        assert_eq!(namespace_of("news"), None);
        let users: Vec<_> = user_limited_users("dialog#42,43").unwrap().collect();
        assert_eq!(users, ["42", "43"]);
        assert!(user_limited_users("news").is_none());
    }
}
