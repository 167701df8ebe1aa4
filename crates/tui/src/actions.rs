//! What the user does to the selected message (reply, edit, delete, react, save its file, see
//! its versions) and to the open chat (attach a file, set the disappearing timer), as keys in
//! and commands out. Part of the [`App`] state machine; `app.rs` routes keys here first.

use crate::app::{App, Command, Focus, Key, Overlay, Prompt};

/// Keys that act on the selected message (Messages focus) or the open chat.
pub const HELP: &[(&str, &str)] = &[
    ("p / e / d", "reply to / edit / delete the selected message"),
    ("+ / -", "react to it / take your reaction back"),
    ("v / S", "its earlier versions / save its file"),
    ("f / t", "send a file / set the disappearing timer"),
];

impl App {
    /// A key for the selected message or the open chat; `None` when it is not one of theirs.
    pub(crate) fn key_action(&mut self, key: Key) -> Option<Vec<Command>> {
        let Key::Char(c) = key else { return None };
        let chat = self.current_chat().map(|c| c.chat.clone());
        if let (Some(chat), 'f' | 't') = (&chat, c) {
            let _ = chat;
            return Some(self.open_prompt(if c == 'f' {
                Prompt::AttachFile
            } else {
                Prompt::Timer
            }));
        }
        if self.focus != Focus::Messages || !"pedv+-S".contains(c) {
            return None;
        }
        let Some(message) = self.selected_message().cloned() else {
            self.status = "Select a message first (Tab, then ↑/↓)".into();
            return Some(Vec::new());
        };
        if message.kind != "text" || message.deleted {
            self.status = "Nothing to do with that line".into();
            return Some(Vec::new());
        }
        let mine = message.sender == self.me;
        Some(match c {
            'p' => {
                self.replying_to = Some(message.id.clone());
                self.focus = Focus::Compose;
                self.status = format!("Replying to {}: Enter sends, Esc cancels", message.sender);
                Vec::new()
            }
            'e' if mine => {
                self.overlay = Overlay::Prompt {
                    prompt: Prompt::Edit { id: message.id },
                    input: message.text,
                };
                Vec::new()
            }
            'e' => self.refuse("Only its sender can edit a message"),
            'd' => {
                self.overlay = Overlay::ConfirmDelete { id: message.id };
                Vec::new()
            }
            '+' => self.open_prompt(Prompt::React { id: message.id }),
            '-' => {
                let mine: Vec<String> = message
                    .reactions
                    .iter()
                    .filter(|(_, users)| users.contains(&self.me))
                    .map(|(emoji, _)| emoji.clone())
                    .collect();
                match mine.as_slice() {
                    [] => self.refuse("You have not reacted to it"),
                    [emoji, ..] => vec![Command::React {
                        id: message.id,
                        emoji: emoji.clone(),
                        remove: true,
                    }],
                }
            }
            'v' if message.versions.is_empty() => self.refuse("It was not edited"),
            'v' => {
                let mut lines = message.versions.clone();
                lines.push(format!("{} (now)", message.text));
                self.overlay = Overlay::Versions { lines };
                Vec::new()
            }
            'S' => match message.attachments.first() {
                Some(file) => {
                    self.overlay = Overlay::Prompt {
                        prompt: Prompt::SaveAs { id: message.id },
                        input: file.name.clone(),
                    };
                    Vec::new()
                }
                None => self.refuse("It carries no file"),
            },
            _ => return None,
        })
    }

    /// The answer to one of this module's prompts.
    pub(crate) fn answer_action(&mut self, prompt: Prompt, input: String) -> Vec<Command> {
        let chat = self
            .current_chat()
            .map(|c| c.chat.clone())
            .unwrap_or_default();
        match prompt {
            Prompt::Edit { id } => vec![Command::Edit { id, text: input }],
            Prompt::React { id } => vec![Command::React {
                id,
                emoji: input,
                remove: false,
            }],
            Prompt::SaveAs { id } => vec![Command::SaveAttachment { id, out: input }],
            Prompt::AttachFile => vec![Command::SendFile { chat, path: input }],
            Prompt::Timer => match parse_timer(&input) {
                Some(seconds) => vec![Command::SetTimer { chat, seconds }],
                None => self.refuse("Give a time from 30s to 4w (30s, 5m, 1h, 2d, 1w) or off"),
            },
            _ => Vec::new(),
        }
    }

    /// Deleting, once confirmed.
    pub(crate) fn confirm_delete(&mut self, key: Key, id: String) -> Vec<Command> {
        match key {
            Key::Char('y') => vec![Command::Delete { id }],
            _ => Vec::new(),
        }
    }

    fn selected_message(&self) -> Option<&parley_client::MessageView> {
        self.selected_message.and_then(|i| self.messages.get(i))
    }

    fn open_prompt(&mut self, prompt: Prompt) -> Vec<Command> {
        self.overlay = Overlay::Prompt {
            prompt,
            input: String::new(),
        };
        Vec::new()
    }

    fn refuse(&mut self, why: &str) -> Vec<Command> {
        self.status = why.into();
        Vec::new()
    }
}

/// A timer as typed in the TUI: `30s`, `5m`, `1h`, `2d`, `1w` or `off` (0).
fn parse_timer(input: &str) -> Option<u32> {
    let input = input.trim();
    if input == "off" {
        return Some(0);
    }
    let split = input.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = input.split_at(split);
    let size = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    let seconds = number.parse::<u32>().ok()?.checked_mul(size)?;
    (parley_protocol::limits::MIN_DISAPPEAR_S..=parley_protocol::limits::MAX_DISAPPEAR_S)
        .contains(&seconds)
        .then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{chat, message};

    fn app_with(messages: Vec<parley_client::MessageView>) -> App {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("bob", 0)]);
        app.set_messages(messages);
        app.focus = Focus::Messages;
        app.selected_message = Some(app.messages.len() - 1);
        app
    }

    fn type_in(app: &mut App, text: &str) -> Vec<Command> {
        let mut out = Vec::new();
        for c in text.chars() {
            out.extend(app.key(Key::Char(c)));
        }
        out
    }

    #[test]
    fn a_reply_goes_with_the_next_message_and_esc_cancels_it() {
        let mut app = app_with(vec![message("m1", "bob", "lunch?")]);
        app.key(Key::Char('p'));
        assert_eq!(app.focus, Focus::Compose);
        type_in(&mut app, "yes");
        let sent = app.key(Key::Enter);
        assert_eq!(
            sent,
            [Command::Send {
                chat: "bob".into(),
                text: "yes".into(),
                reply_to: Some("m1".into()),
            }]
        );
        assert_eq!(app.replying_to, None, "one reply, then plain messages");
        app.focus = Focus::Messages;
        app.key(Key::Char('p'));
        app.key(Key::Esc);
        assert_eq!(app.replying_to, None);
    }

    #[test]
    fn only_ones_own_message_is_edited_starting_from_its_text() {
        let mut app = app_with(vec![message("m1", "alice", "helo")]);
        app.key(Key::Char('e'));
        assert!(matches!(&app.overlay, Overlay::Prompt { input, .. } if input == "helo"));
        app.key(Key::Backspace);
        app.key(Key::Backspace);
        let edit = type_in(&mut app, "llo");
        assert!(edit.is_empty());
        assert_eq!(
            app.key(Key::Enter),
            [Command::Edit {
                id: "m1".into(),
                text: "hello".into()
            }]
        );
        let mut theirs = app_with(vec![message("m2", "bob", "hi")]);
        assert!(theirs.key(Key::Char('e')).is_empty());
        assert_eq!(theirs.overlay, Overlay::None);
        assert!(theirs.status.contains("Only its sender"));
    }

    #[test]
    fn delete_asks_first_and_reactions_go_on_and_off() {
        let mut app = app_with(vec![message("m1", "bob", "hi")]);
        app.key(Key::Char('d'));
        assert!(
            app.key(Key::Char('n')).is_empty(),
            "anything but y keeps it"
        );
        app.key(Key::Char('d'));
        assert_eq!(
            app.key(Key::Char('y')),
            [Command::Delete { id: "m1".into() }]
        );
        app.key(Key::Char('+'));
        type_in(&mut app, "👍");
        assert_eq!(
            app.key(Key::Enter),
            [Command::React {
                id: "m1".into(),
                emoji: "👍".into(),
                remove: false
            }]
        );
        let mut reacted = message("m1", "bob", "hi");
        reacted.reactions.insert("👍".into(), vec!["alice".into()]);
        let mut app = app_with(vec![reacted]);
        assert_eq!(
            app.key(Key::Char('-')),
            [Command::React {
                id: "m1".into(),
                emoji: "👍".into(),
                remove: true
            }]
        );
    }

    #[test]
    fn versions_files_and_the_timer_each_have_their_key() {
        let mut edited = message("m1", "bob", "third");
        edited.versions = vec!["first".into(), "second".into()];
        edited.attachments = vec![parley_client::AttachmentView {
            name: "photo.jpg".into(),
            size: 10,
            content_type: "image/jpeg".into(),
            sha256: String::new(),
        }];
        let mut app = app_with(vec![edited]);
        app.key(Key::Char('v'));
        assert_eq!(
            app.overlay,
            Overlay::Versions {
                lines: vec!["first".into(), "second".into(), "third (now)".into()]
            }
        );
        app.key(Key::Esc);
        app.key(Key::Char('S'));
        assert!(matches!(&app.overlay, Overlay::Prompt { input, .. } if input == "photo.jpg"));
        assert_eq!(
            app.key(Key::Enter),
            [Command::SaveAttachment {
                id: "m1".into(),
                out: "photo.jpg".into()
            }]
        );
        app.key(Key::Char('f'));
        type_in(&mut app, "/tmp/a.pdf");
        assert_eq!(
            app.key(Key::Enter),
            [Command::SendFile {
                chat: "bob".into(),
                path: "/tmp/a.pdf".into()
            }]
        );
        app.key(Key::Char('t'));
        type_in(&mut app, "1h");
        assert_eq!(
            app.key(Key::Enter),
            [Command::SetTimer {
                chat: "bob".into(),
                seconds: 3600
            }]
        );
        app.key(Key::Char('t'));
        type_in(&mut app, "10s");
        assert!(app.key(Key::Enter).is_empty());
        assert!(app.status.contains("30s to 4w"));
    }
}
