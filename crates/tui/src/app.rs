//! The terminal UI as a state machine: keys and client events go in, commands for the client
//! come out. No terminal and no network here, so that all of it is unit-tested.

use parley_client::{ChatSummary, DeviceView, MessageView, SafetyNumber};

/// A key press, reduced to what the UI distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    /// Alt+Enter or Ctrl+J: a new line in the compose box.
    NewLine,
    Backspace,
    Esc,
    Tab,
    Up,
    Down,
    CtrlC,
}

/// Something the client library must do for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message, answering `reply_to` (a message id) when given.
    Send {
        chat: String,
        text: String,
        reply_to: Option<String>,
    },
    Edit {
        id: String,
        text: String,
    },
    Delete {
        id: String,
    },
    React {
        id: String,
        emoji: String,
        remove: bool,
    },
    SaveAttachment {
        id: String,
        out: String,
    },
    SendFile {
        chat: String,
        path: String,
    },
    SetTimer {
        chat: String,
        seconds: u32,
    },
    /// The user is typing in the chat (the client sends at most one every few seconds).
    Typing {
        chat: String,
    },
    OpenChat {
        chat: String,
    },
    NewDirect {
        user: String,
        text: String,
    },
    NewGroup {
        name: String,
        members: Vec<String>,
    },
    AddMember {
        group: String,
        user: String,
    },
    RemoveMember {
        group: String,
        user: String,
    },
    Leave {
        group: String,
    },
    Report {
        message_id: String,
        reason: String,
    },
    Block {
        user: String,
    },
    SafetyNumber {
        user: String,
    },
    Members {
        group: String,
    },
    ListDevices,
    RenameDevice {
        id: String,
        name: String,
    },
    RevokeDevice {
        id: String,
    },
    ApproveLink {
        code: String,
    },
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Chats,
    Messages,
    Compose,
}

/// A one-line question: what it asks, what is typed so far, and what it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    NewDirect,
    NewGroup,
    AddMember,
    RemoveMember,
    ReportReason { message_id: String },
    RenameDevice { id: String },
    ApproveCode,
    Edit { id: String },
    React { id: String },
    SaveAs { id: String },
    AttachFile,
    Timer,
}

impl Prompt {
    pub fn question(&self) -> &'static str {
        match self {
            Prompt::NewDirect => "Chat with (username)",
            Prompt::NewGroup => "New group: name and members (team bob carol)",
            Prompt::AddMember => "Add to this group (username)",
            Prompt::RemoveMember => "Remove from this group (username)",
            Prompt::ReportReason { .. } => "Report this message: reason",
            Prompt::RenameDevice { .. } => "New name for this device",
            Prompt::ApproveCode => "Link code shown on the new device",
            Prompt::Edit { .. } => "Edit your message (Enter saves)",
            Prompt::React { .. } => "React with (one emoji)",
            Prompt::SaveAs { .. } => "Save the file as (path)",
            Prompt::AttachFile => "Send a file (path)",
            Prompt::Timer => "Disappearing messages: 30s to 4w (e.g. 1h, 1w), or off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Prompt {
        prompt: Prompt,
        input: String,
    },
    ConfirmLeave {
        group: String,
    },
    Safety(SafetyNumber),
    /// A group's members, one a line, admins marked.
    Members {
        group: String,
        lines: Vec<String>,
    },
    /// The account's devices, one selected.
    Devices {
        devices: Vec<DeviceView>,
        selected: usize,
    },
    ConfirmRevoke {
        id: String,
        name: String,
    },
    ConfirmDelete {
        id: String,
    },
    /// An edited message's texts, oldest first.
    Versions {
        lines: Vec<String>,
    },
    /// A saved image, small (`preview::preview`).
    Preview {
        name: String,
        lines: Vec<ratatui::text::Line<'static>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Online,
    Offline,
}

pub struct App {
    pub me: String,
    pub chats: Vec<ChatSummary>,
    pub selected_chat: usize,
    pub messages: Vec<MessageView>,
    pub selected_message: Option<usize>,
    pub compose: String,
    pub focus: Focus,
    pub overlay: Overlay,
    pub connection: Connection,
    pub status: String,
    /// (processed, total) while a long sync runs.
    pub progress: Option<(u64, u64)>,
    /// A new 1:1 chat whose first message is being written.
    pub pending_direct: Option<String>,
    /// The message the one being written answers.
    pub replying_to: Option<String>,
    /// Who is typing where: (chat, sender, until), dropped once past.
    pub typing: Vec<(String, String, std::time::Instant)>,
}

impl App {
    pub fn new(me: &str) -> App {
        App {
            me: me.to_owned(),
            chats: Vec::new(),
            selected_chat: 0,
            messages: Vec::new(),
            selected_message: None,
            compose: String::new(),
            focus: Focus::Chats,
            overlay: Overlay::None,
            connection: Connection::Connecting,
            status: "Press ? for help".into(),
            progress: None,
            pending_direct: None,
            replying_to: None,
            typing: Vec::new(),
        }
    }

    /// Someone typing in a chat (or stopping), as the live connection said at `now`.
    pub fn set_typing(&mut self, chat: &str, sender: &str, stopped: bool, now: std::time::Instant) {
        self.typing
            .retain(|(c, s, until)| !(c == chat && s == sender) && *until > now);
        if !stopped {
            let until = now + parley_client::Client::TYPING_SHOWN_FOR;
            self.typing
                .push((chat.to_owned(), sender.to_owned(), until));
        }
    }

    /// Who is typing in the open chat at `now`.
    pub fn typing_here(&self, now: std::time::Instant) -> Vec<&str> {
        let Some(chat) = self.current_chat() else {
            return Vec::new();
        };
        self.typing
            .iter()
            .filter(|(c, _, until)| *c == chat.chat && *until > now)
            .map(|(_, sender, _)| sender.as_str())
            .collect()
    }

    pub fn current_chat(&self) -> Option<&ChatSummary> {
        self.chats.get(self.selected_chat)
    }

    fn current_group(&self) -> Option<String> {
        self.current_chat()
            .and_then(|c| c.chat.strip_prefix('#').map(str::to_owned))
    }

    /// New chat list from the client. Keeps the selection on the same chat.
    pub fn set_chats(&mut self, chats: Vec<ChatSummary>) {
        let selected = self.current_chat().map(|c| c.chat.clone());
        self.chats = chats;
        self.selected_chat = selected
            .and_then(|name| self.chats.iter().position(|c| c.chat == name))
            .unwrap_or(0)
            .min(self.chats.len().saturating_sub(1));
    }

    pub fn set_messages(&mut self, messages: Vec<MessageView>) {
        self.messages = messages;
        if let Some(selected) = self.selected_message {
            self.selected_message = if self.messages.is_empty() {
                None
            } else {
                Some(selected.min(self.messages.len() - 1))
            };
        }
    }

    /// Selects the chat with this name (a new chat the user just started).
    pub fn select_chat(&mut self, name: &str) {
        if let Some(index) = self.chats.iter().position(|c| c.chat == name) {
            self.selected_chat = index;
        }
    }

    pub fn set_connection(&mut self, connection: Connection) {
        self.connection = connection;
    }

    pub fn show_error(&mut self, error: &str) {
        self.status = format!("Error: {error}");
    }

    /// Shows a group's members (one entry per device, as the group state lists them).
    pub fn show_members(&mut self, group: &str, members: &[String], admins: &[String]) {
        let mut names = members.to_vec();
        names.sort();
        names.dedup();
        let lines = names
            .into_iter()
            .map(|name| {
                if admins.contains(&name) {
                    format!("{name} (admin)")
                } else {
                    name
                }
            })
            .collect();
        self.overlay = Overlay::Members {
            group: group.to_owned(),
            lines,
        };
    }

    pub fn show_devices(&mut self, devices: Vec<DeviceView>) {
        self.overlay = Overlay::Devices {
            devices,
            selected: 0,
        };
    }

    /// A key on the devices screen: select, rename, revoke, approve a new device.
    fn key_devices(&mut self, key: Key, devices: Vec<DeviceView>, selected: usize) -> Vec<Command> {
        let current = devices.get(selected).cloned();
        let keep = |app: &mut App, selected: usize| {
            app.overlay = Overlay::Devices {
                selected: selected.min(devices.len().saturating_sub(1)),
                devices: devices.clone(),
            };
        };
        match key {
            Key::Up | Key::Char('k') => keep(self, selected.saturating_sub(1)),
            Key::Down | Key::Char('j') => keep(self, selected + 1),
            Key::Char('r') => {
                if let Some(device) = current {
                    return self.prompt(Prompt::RenameDevice { id: device.id });
                }
            }
            Key::Char('x') => match current {
                Some(device) if device.current => {
                    self.status = "That is this device: revoke it from another one".into();
                    keep(self, selected);
                }
                Some(device) => {
                    let name = if device.name.is_empty() {
                        device.id[..8.min(device.id.len())].to_owned()
                    } else {
                        device.name
                    };
                    self.overlay = Overlay::ConfirmRevoke {
                        id: device.id,
                        name,
                    };
                }
                None => {}
            },
            Key::Char('a') => return self.prompt(Prompt::ApproveCode),
            _ => {}
        }
        Vec::new()
    }

    pub fn show_safety_number(&mut self, number: SafetyNumber) {
        self.overlay = Overlay::Safety(number);
    }

    fn open_current(&self) -> Vec<Command> {
        self.current_chat()
            .map(|c| {
                vec![Command::OpenChat {
                    chat: c.chat.clone(),
                }]
            })
            .unwrap_or_default()
    }

    /// Handles one key; returns what the client must do.
    pub fn key(&mut self, key: Key) -> Vec<Command> {
        if key == Key::CtrlC {
            return vec![Command::Quit];
        }
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::None => self.key_main(key),
            Overlay::Help
            | Overlay::Safety(_)
            | Overlay::Members { .. }
            | Overlay::Versions { .. }
            | Overlay::Preview { .. } => Vec::new(),
            Overlay::ConfirmDelete { id } => self.confirm_delete(key, id),
            Overlay::ConfirmLeave { group } => match key {
                Key::Char('y') => vec![Command::Leave { group }],
                _ => Vec::new(),
            },
            Overlay::Devices { devices, selected } => self.key_devices(key, devices, selected),
            Overlay::ConfirmRevoke { id, .. } => match key {
                Key::Char('y') => vec![Command::RevokeDevice { id }],
                _ => Vec::new(),
            },
            Overlay::Prompt { prompt, mut input } => match key {
                Key::Esc => Vec::new(),
                Key::Enter => self.answer(prompt, input.trim().to_owned()),
                Key::Backspace => {
                    input.pop();
                    self.overlay = Overlay::Prompt { prompt, input };
                    Vec::new()
                }
                Key::Char(c) => {
                    if input.chars().count() < 200 {
                        input.push(c);
                    }
                    self.overlay = Overlay::Prompt { prompt, input };
                    Vec::new()
                }
                _ => {
                    self.overlay = Overlay::Prompt { prompt, input };
                    Vec::new()
                }
            },
        }
    }

    fn answer(&mut self, prompt: Prompt, input: String) -> Vec<Command> {
        if input.is_empty() {
            return Vec::new();
        }
        match prompt {
            Prompt::NewDirect => {
                // The chat exists once its first message goes out.
                self.focus = Focus::Compose;
                self.status = format!("Write your first message to {input}, then Enter");
                self.compose.clear();
                self.pending_direct = Some(input);
                Vec::new()
            }
            Prompt::NewGroup => {
                let mut words = input.split_whitespace().map(str::to_owned);
                let name = words.next().unwrap_or_default();
                let members: Vec<String> = words.collect();
                if members.is_empty() {
                    self.status = "Name the group and at least one member".into();
                    return Vec::new();
                }
                vec![Command::NewGroup {
                    name: name.trim_start_matches('#').to_owned(),
                    members,
                }]
            }
            Prompt::AddMember => match self.current_group() {
                Some(group) => vec![Command::AddMember { group, user: input }],
                None => Vec::new(),
            },
            Prompt::RemoveMember => match self.current_group() {
                Some(group) => vec![Command::RemoveMember { group, user: input }],
                None => Vec::new(),
            },
            Prompt::ReportReason { message_id } => vec![Command::Report {
                message_id,
                reason: input,
            }],
            Prompt::RenameDevice { id } => vec![Command::RenameDevice { id, name: input }],
            Prompt::ApproveCode => {
                self.status = "Linking the new device…".into();
                vec![Command::ApproveLink { code: input }]
            }
            other => self.answer_action(other, input),
        }
    }

    fn key_main(&mut self, key: Key) -> Vec<Command> {
        if self.focus == Focus::Compose {
            return self.key_compose(key);
        }
        if let Some(commands) = self.key_action(key) {
            return commands;
        }
        match key {
            Key::Char('q') => vec![Command::Quit],
            Key::Char('?') => {
                self.overlay = Overlay::Help;
                Vec::new()
            }
            Key::Tab => {
                self.focus = match self.focus {
                    Focus::Chats => Focus::Messages,
                    _ => Focus::Chats,
                };
                if self.focus == Focus::Messages
                    && self.selected_message.is_none()
                    && !self.messages.is_empty()
                {
                    self.selected_message = Some(self.messages.len() - 1);
                }
                Vec::new()
            }
            Key::Up | Key::Char('k') => self.move_selection(-1),
            Key::Down | Key::Char('j') => self.move_selection(1),
            Key::Enter | Key::Char('i') => {
                if self.current_chat().is_some() {
                    self.focus = Focus::Compose;
                }
                Vec::new()
            }
            Key::Char('n') => self.prompt(Prompt::NewDirect),
            Key::Char('g') => self.prompt(Prompt::NewGroup),
            Key::Char('a') if self.current_group().is_some() => self.prompt(Prompt::AddMember),
            Key::Char('r') if self.current_group().is_some() => self.prompt(Prompt::RemoveMember),
            Key::Char('m') => match self.current_group() {
                Some(group) => vec![Command::Members { group }],
                None => Vec::new(),
            },
            Key::Char('l') => {
                if let Some(group) = self.current_group() {
                    self.overlay = Overlay::ConfirmLeave { group };
                }
                Vec::new()
            }
            Key::Char('R') => match self.selected_received_message() {
                Some(message) => {
                    let message_id = message.id.clone();
                    self.prompt(Prompt::ReportReason { message_id })
                }
                None => {
                    self.status = "Select a received message first (Tab, then ↑/↓)".into();
                    Vec::new()
                }
            },
            Key::Char('b') => match self.other_party() {
                Some(user) => vec![Command::Block { user }],
                None => Vec::new(),
            },
            Key::Char('s') => match self.other_party() {
                Some(user) => vec![Command::SafetyNumber { user }],
                None => Vec::new(),
            },
            Key::Char('D') => vec![Command::ListDevices],
            _ => Vec::new(),
        }
    }

    fn key_compose(&mut self, key: Key) -> Vec<Command> {
        match key {
            Key::Esc => {
                self.focus = Focus::Chats;
                self.pending_direct = None;
                self.replying_to = None;
                Vec::new()
            }
            Key::NewLine => {
                self.compose.push('\n');
                Vec::new()
            }
            Key::Backspace => {
                self.compose.pop();
                Vec::new()
            }
            Key::Char(c) => {
                if self.compose.len() < parley_protocol::limits::MAX_TEXT_BYTES {
                    self.compose.push(c);
                }
                // The chat hears that we type (a new 1:1 chat does not exist yet).
                match (&self.pending_direct, self.current_chat()) {
                    (None, Some(chat)) => vec![Command::Typing {
                        chat: chat.chat.clone(),
                    }],
                    _ => Vec::new(),
                }
            }
            Key::Enter => {
                let text = std::mem::take(&mut self.compose);
                if text.trim().is_empty() {
                    return Vec::new();
                }
                match (self.pending_direct.take(), self.current_chat()) {
                    (Some(user), _) => vec![Command::NewDirect { user, text }],
                    (None, Some(chat)) => vec![Command::Send {
                        chat: chat.chat.clone(),
                        text,
                        reply_to: self.replying_to.take(),
                    }],
                    (None, None) => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn prompt(&mut self, prompt: Prompt) -> Vec<Command> {
        self.overlay = Overlay::Prompt {
            prompt,
            input: String::new(),
        };
        Vec::new()
    }

    fn move_selection(&mut self, delta: i64) -> Vec<Command> {
        match self.focus {
            Focus::Chats if !self.chats.is_empty() => {
                let next = (self.selected_chat as i64 + delta).clamp(0, self.chats.len() as i64 - 1)
                    as usize;
                if next != self.selected_chat {
                    self.selected_chat = next;
                    self.selected_message = None;
                    return self.open_current();
                }
                Vec::new()
            }
            Focus::Messages if !self.messages.is_empty() => {
                let current = self.selected_message.unwrap_or(self.messages.len() - 1) as i64;
                self.selected_message =
                    Some((current + delta).clamp(0, self.messages.len() as i64 - 1) as usize);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn selected_received_message(&self) -> Option<&MessageView> {
        self.selected_message
            .and_then(|i| self.messages.get(i))
            .filter(|m| m.sender != self.me)
    }

    /// Whom `b` (block) and `s` (safety number) are about: the selected message's sender, or
    /// the peer of a 1:1 chat.
    fn other_party(&self) -> Option<String> {
        if let Some(message) = self.selected_received_message() {
            return Some(message.sender.clone());
        }
        self.current_chat()
            .filter(|c| !c.chat.starts_with('#'))
            .map(|c| c.chat.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn chat(name: &str, unread: u64) -> ChatSummary {
        ChatSummary {
            chat: name.into(),
            kind: if name.starts_with('#') {
                "group"
            } else {
                "direct"
            }
            .into(),
            state: "active".into(),
            last_activity: "2026-01-01T00:00:00.000Z".into(),
            last_message: None,
            unread,
            disappearing: 0,
        }
    }

    pub(crate) fn message(id: &str, sender: &str, text: &str) -> MessageView {
        MessageView {
            id: id.into(),
            chat: "bob".into(),
            sender: sender.into(),
            text: text.into(),
            sent_at: "2026-01-01T00:00:00.000Z".into(),
            status: "received".into(),
            group_seq: Some(1),
            kind: "text".into(),
            history: false,
            reply_to: None,
            quoted: None,
            edited: false,
            versions: Vec::new(),
            deleted: false,
            deleted_by: None,
            reactions: Default::default(),
            attachments: Vec::new(),
            expires_at: None,
        }
    }

    #[test]
    fn m_on_a_group_asks_for_its_members_and_shows_them_until_a_key() {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("#team", 0)]);
        assert_eq!(
            app.key(Key::Char('m')),
            vec![Command::Members {
                group: "team".into()
            }]
        );
        app.show_members(
            "team",
            &["alice".into(), "bob".into(), "bob".into()],
            &["alice".into()],
        );
        assert_eq!(
            app.overlay,
            Overlay::Members {
                group: "team".into(),
                lines: vec!["alice (admin)".into(), "bob".into()]
            }
        );
        assert!(app.key(Key::Char('x')).is_empty());
        assert_eq!(app.overlay, Overlay::None);
    }

    fn typed(app: &mut App, text: &str) -> Vec<Command> {
        text.chars().flat_map(|c| app.key(Key::Char(c))).collect()
    }

    #[test]
    fn enter_in_the_compose_box_sends_to_the_selected_chat_and_alt_enter_breaks_lines() {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("bob", 0), chat("#team", 2)]);
        assert_eq!(
            app.key(Key::Down),
            vec![Command::OpenChat {
                chat: "#team".into()
            }]
        );
        app.key(Key::Enter);
        assert_eq!(app.focus, Focus::Compose);
        assert_eq!(
            typed(&mut app, "hi"),
            vec![
                Command::Typing {
                    chat: "#team".into()
                };
                2
            ],
            "the chat hears of each key (the client sends a few)"
        );
        app.key(Key::NewLine);
        typed(&mut app, "all");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::Send {
                chat: "#team".into(),
                text: "hi\nall".into(),
                reply_to: None,
            }]
        );
        assert!(app.compose.is_empty());
        assert!(
            app.key(Key::Enter).is_empty(),
            "an empty message is not sent"
        );
    }

    #[test]
    fn typing_shows_for_a_while_in_its_chat_only_and_stops_when_told() {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("bob", 0), chat("#team", 0)]);
        let now = std::time::Instant::now();
        app.set_typing("bob", "bob", false, now);
        app.set_typing("#team", "carol", false, now);
        assert_eq!(app.typing_here(now), ["bob"]);
        let later = now + parley_client::Client::TYPING_SHOWN_FOR;
        assert!(app.typing_here(later).is_empty(), "stale after a while");
        app.set_typing("bob", "bob", false, now);
        app.set_typing("bob", "bob", true, now);
        assert!(app.typing_here(now).is_empty(), "stopped");
    }

    #[test]
    fn a_new_direct_chat_starts_with_its_first_message() {
        let mut app = App::new("alice");
        app.key(Key::Char('n'));
        assert!(matches!(
            app.overlay,
            Overlay::Prompt {
                prompt: Prompt::NewDirect,
                ..
            }
        ));
        typed(&mut app, "bob");
        assert!(app.key(Key::Enter).is_empty());
        assert_eq!(app.focus, Focus::Compose);
        typed(&mut app, "hello");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::NewDirect {
                user: "bob".into(),
                text: "hello".into()
            }]
        );
    }

    #[test]
    fn group_dialogs_produce_group_commands() {
        let mut app = App::new("alice");
        app.key(Key::Char('g'));
        typed(&mut app, "team bob carol");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::NewGroup {
                name: "team".into(),
                members: vec!["bob".into(), "carol".into()]
            }]
        );
        app.set_chats(vec![chat("#team", 0)]);
        app.key(Key::Char('a'));
        typed(&mut app, "dave");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::AddMember {
                group: "team".into(),
                user: "dave".into()
            }]
        );
        app.key(Key::Char('r'));
        typed(&mut app, "carol");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::RemoveMember {
                group: "team".into(),
                user: "carol".into()
            }]
        );
        app.key(Key::Char('l'));
        assert_eq!(
            app.key(Key::Char('y')),
            vec![Command::Leave {
                group: "team".into()
            }]
        );
        // Escape abandons a dialog.
        app.key(Key::Char('a'));
        typed(&mut app, "erin");
        assert!(app.key(Key::Esc).is_empty());
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn a_selected_received_message_can_be_reported_and_its_sender_blocked() {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("bob", 1)]);
        app.set_messages(vec![
            message("m1", "bob", "spam"),
            message("m2", "alice", "mine"),
        ]);
        app.key(Key::Tab);
        assert_eq!(app.selected_message, Some(1));
        // One's own message cannot be reported.
        assert!(app.key(Key::Char('R')).is_empty());
        assert_eq!(app.overlay, Overlay::None);
        app.key(Key::Up);
        app.key(Key::Char('R'));
        typed(&mut app, "spam");
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::Report {
                message_id: "m1".into(),
                reason: "spam".into()
            }]
        );
        assert_eq!(
            app.key(Key::Char('b')),
            vec![Command::Block { user: "bob".into() }]
        );
        assert_eq!(
            app.key(Key::Char('s')),
            vec![Command::SafetyNumber { user: "bob".into() }]
        );
    }

    #[test]
    fn help_shows_on_question_mark_and_any_key_closes_it() {
        let mut app = App::new("alice");
        app.key(Key::Char('?'));
        assert_eq!(app.overlay, Overlay::Help);
        assert!(app.key(Key::Char('x')).is_empty());
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.key(Key::Char('q')), vec![Command::Quit]);
        assert_eq!(app.key(Key::CtrlC), vec![Command::Quit]);
    }

    #[test]
    fn the_selection_follows_its_chat_when_the_list_changes() {
        let mut app = App::new("alice");
        app.set_chats(vec![chat("bob", 0), chat("carol", 0)]);
        app.key(Key::Down);
        app.set_chats(vec![chat("dave", 1), chat("bob", 0), chat("carol", 0)]);
        assert_eq!(app.current_chat().unwrap().chat, "carol");
        app.set_chats(Vec::new());
        assert!(app.current_chat().is_none());
        assert!(app.key(Key::Down).is_empty());
    }

    fn device(id: &str, name: &str, current: bool) -> DeviceView {
        DeviceView {
            id: id.into(),
            name: name.into(),
            added_at: "2026-12-01T00:00:00.000Z".into(),
            last_seen: "2026-12-01T00:00:00.000Z".into(),
            current,
        }
    }

    #[test]
    fn the_devices_screen_renames_revokes_and_approves() {
        let mut app = App::new("alice");
        assert_eq!(app.key(Key::Char('D')), vec![Command::ListDevices]);
        let devices = vec![
            device("aaaa1111", "phone", true),
            device("bbbb2222", "", false),
        ];
        app.show_devices(devices.clone());
        // This device cannot revoke itself.
        assert!(app.key(Key::Char('x')).is_empty());
        assert!(app.status.contains("this device"));
        assert!(matches!(app.overlay, Overlay::Devices { selected: 0, .. }));
        // The other one: confirm, then revoke.
        app.key(Key::Down);
        app.key(Key::Char('x'));
        assert!(matches!(&app.overlay, Overlay::ConfirmRevoke { name, .. } if name == "bbbb2222"));
        assert_eq!(
            app.key(Key::Char('y')),
            vec![Command::RevokeDevice {
                id: "bbbb2222".into()
            }]
        );
        // Any other key keeps it.
        app.show_devices(devices.clone());
        app.key(Key::Down);
        app.key(Key::Char('x'));
        assert!(app.key(Key::Char('n')).is_empty());
        // Rename the selected one.
        app.show_devices(devices.clone());
        app.key(Key::Char('r'));
        for c in "laptop".chars() {
            app.key(Key::Char(c));
        }
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::RenameDevice {
                id: "aaaa1111".into(),
                name: "laptop".into()
            }]
        );
        // Approve a code shown on a new device.
        app.show_devices(devices);
        app.key(Key::Char('a'));
        for c in "ABCD-EFGH".chars() {
            app.key(Key::Char(c));
        }
        assert_eq!(
            app.key(Key::Enter),
            vec![Command::ApproveLink {
                code: "ABCD-EFGH".into()
            }]
        );
        assert!(app.status.contains("Linking"));
    }
}
