//! How the user names a chat: `ChatRef` (a peer's username, or `#name` for a group) and the
//! rules for group names.

use parley_protocol::Username;

use crate::error::ClientError;

/// A chat as the user names it: a peer's username for a 1:1 chat, `#name` for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatRef {
    Direct(Username),
    Group(String),
}

impl ChatRef {
    pub fn parse(text: &str) -> Result<ChatRef, ClientError> {
        match text.strip_prefix('#') {
            Some(name) => Ok(ChatRef::Group(parse_group_name(name)?)),
            None => Username::parse(text).map(ChatRef::Direct).map_err(|e| {
                ClientError::Invalid(format!("{text:?}: {e} (groups are written #name)"))
            }),
        }
    }
}

impl std::fmt::Display for ChatRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatRef::Direct(user) => write!(f, "{user}"),
            ChatRef::Group(name) => write!(f, "#{name}"),
        }
    }
}

/// Group names: 1 to 64 printable characters, no control characters, no leading '#'.
pub fn parse_group_name(name: &str) -> Result<String, ClientError> {
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 || length > 64 || name.chars().any(|c| c.is_control()) || name.starts_with('#') {
        return Err(ClientError::Invalid(format!(
            "invalid group name {name:?}: 1-64 printable characters"
        )));
    }
    Ok(name.to_owned())
}
