//! Usernames. A username is 3 to 32 characters of lowercase ASCII letters, digits and `_`,
//! starting with a letter. The narrow alphabet rules out look-alike Unicode, control characters
//! and anything that would need escaping in a terminal, a URL or SQL.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be 3 to 32 characters, got {0}")]
    Length(usize),
    #[error("username must start with a lowercase letter a-z")]
    Start,
    #[error("username may contain only a-z, 0-9 and _ (found {0:?})")]
    Character(char),
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn parse(text: &str) -> Result<Username, UsernameError> {
        let count = text.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&count) {
            return Err(UsernameError::Length(count));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(UsernameError::Character(bad));
        }
        if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(UsernameError::Start);
        }
        Ok(Username(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["alice", "bob_2", "c3po", "abc", &"a".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        let hostile = [
            "",
            "ab",
            &"a".repeat(33),
            "Alice",
            "аlice", // Cyrillic a
            "alice\u{200b}",
            "bob\n",
            "bob\x1b[31m",
            "1abc",
            "_abc",
            "a'; DROP TABLE users;--",
            "alice bob",
            "al/ice",
        ];
        for bad in hostile {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
