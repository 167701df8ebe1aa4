//! The screens of a device that has no account yet: register a new account, or link this device
//! to an account on another device, showing the link code as text and as a QR code until a
//! device of the account approves it. A state machine like [`crate::app`] (keys and events in,
//! actions out, no terminal), and the loop that runs it.

use std::path::Path;

use futures_util::StreamExt;
use parley_client::{Client, ClientError, ClientOptions, LinkEvent};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{Event, EventStream};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{enable_raw_mode, EnterAlternateScreen};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::{Frame, Terminal};
use tokio::sync::mpsc;

use crate::app::Key;
use crate::run::{key_of, TerminalGuard, TuiError};
use crate::ui::qr_code;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Register or link?
    Choose,
    /// The account name to register or to link to.
    Name {
        link: bool,
        input: String,
        error: Option<String>,
    },
    /// Registering, or asking the server for a link.
    Working(String),
    /// The code to approve on a device of the account, and what happened since.
    Linking {
        username: String,
        code: String,
        status: Vec<String>,
    },
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Register(String),
    Link(String),
}

#[derive(Debug)]
pub struct Start {
    pub screen: Screen,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            screen: Screen::Choose,
        }
    }
}

impl Start {
    pub fn key(&mut self, key: Key) -> Action {
        if key == Key::CtrlC {
            return Action::Quit;
        }
        match &mut self.screen {
            Screen::Choose => match key {
                Key::Char('r') => self.ask(false),
                Key::Char('l') => self.ask(true),
                Key::Char('q') | Key::Esc => return Action::Quit,
                _ => {}
            },
            Screen::Name { link, input, error } => match key {
                Key::Char(c) if input.len() < 32 => {
                    input.push(c);
                    *error = None;
                }
                Key::Backspace => {
                    input.pop();
                }
                Key::Esc => self.screen = Screen::Choose,
                Key::Enter if !input.trim().is_empty() => {
                    let (name, link) = (input.trim().to_owned(), *link);
                    self.screen = Screen::Working(if link {
                        format!("asking the server to link this device to {name}…")
                    } else {
                        format!("registering {name}…")
                    });
                    return if link {
                        Action::Link(name)
                    } else {
                        Action::Register(name)
                    };
                }
                _ => {}
            },
            Screen::Working(_) => {}
            Screen::Linking { .. } => {
                if key == Key::Esc {
                    // Waiting goes on in the home: `parley link` or the TUI again resumes it.
                    return Action::Quit;
                }
            }
        }
        Action::None
    }

    fn ask(&mut self, link: bool) {
        self.screen = Screen::Name {
            link,
            input: String::new(),
            error: None,
        };
    }

    pub fn link_event(&mut self, event: &LinkEvent) {
        let name = match &self.screen {
            Screen::Working(_) | Screen::Choose => None,
            Screen::Name { input, .. } => Some(input.clone()),
            Screen::Linking { username, .. } => Some(username.clone()),
        };
        match event {
            LinkEvent::Code(code) => {
                let username = match &self.screen {
                    Screen::Linking { username, .. } => username.clone(),
                    Screen::Working(what) => what
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches('…')
                        .to_owned(),
                    _ => name.unwrap_or_default(),
                };
                self.screen = Screen::Linking {
                    username,
                    code: code.clone(),
                    status: vec!["waiting for approval (the code works for 10 minutes)".into()],
                }
            }
            other => {
                if let Screen::Linking { status, .. } = &mut self.screen {
                    status.push(match other {
                        LinkEvent::Approved => {
                            "approved; receiving the chats and their history".into()
                        }
                        LinkEvent::Stalled { chunks } => format!(
                            "the approving device has sent nothing for a while ({chunks} parts so \
                             far); if it stopped, approve the code on it again"
                        ),
                        LinkEvent::HistoryImported { chats, messages } => {
                            format!("history received: {messages} messages in {chats} chats")
                        }
                        LinkEvent::Code(_) => return,
                    });
                }
            }
        }
    }

    /// Registering or linking failed: back to the name, with the reason.
    pub fn failed(&mut self, link: bool, name: String, reason: String) {
        self.screen = Screen::Name {
            link,
            input: name,
            error: Some(reason),
        };
    }
}

pub fn draw(frame: &mut Frame<'_>, start: &Start) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line<'_>> = Vec::new();
    let hint = match &start.screen {
        Screen::Choose => {
            lines.push(Line::styled("This device has no Parley account yet.", bold));
            lines.push(Line::raw(""));
            lines.push(Line::raw("  r  register a new account"));
            lines.push(Line::raw(
                "  l  link this device to an account you have on another device",
            ));
            "r register · l link · q quit"
        }
        Screen::Name { link, input, error } => {
            lines.push(Line::styled(
                if *link {
                    "The account to link this device to:"
                } else {
                    "The name of the new account (3 to 32 lowercase letters, digits, _):"
                },
                bold,
            ));
            lines.push(Line::raw(format!("> {input}_")));
            if let Some(error) = error {
                lines.push(Line::raw(""));
                lines.push(Line::raw(error.clone()));
            }
            "Enter continue · Esc back"
        }
        Screen::Working(what) => {
            lines.push(Line::raw(what.clone()));
            ""
        }
        Screen::Linking {
            username,
            code,
            status,
        } => {
            lines.push(Line::styled(
                format!("Link this device to {username}"),
                bold,
            ));
            lines.push(Line::raw(format!(
                "On a device of {username}: parley devices approve CODE (in the TUI: D, then a)"
            )));
            lines.push(Line::raw(""));
            lines.push(Line::styled(format!("link code: {code}"), bold));
            lines.extend(qr_code(code).lines().map(|l| Line::raw(l.to_owned())));
            lines.extend(status.iter().map(|s| Line::raw(s.clone())));
            "Esc leave (run the TUI again to resume)"
        }
    };
    let [body, bottom] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(frame.area());
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Parley ")),
        body,
    );
    frame.render_widget(Paragraph::new(hint), bottom);
}

enum StartEvent {
    Key(Key),
    Redraw,
    Link(LinkEvent),
    Done(bool, String, Result<Box<Client>, ClientError>),
}

/// Runs the start screens in `home` until the device has an account; `None` if the user quit.
pub async fn start(
    home: &Path,
    server: &str,
    options: ClientOptions,
) -> Result<Option<Client>, TuiError> {
    let (events, mut inbox) = mpsc::unbounded_channel::<StartEvent>();
    enable_raw_mode()?;
    let _guard = TerminalGuard;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let key_events = events.clone();
    let keys = tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(Ok(event)) = stream.next().await {
            let sent = match event {
                Event::Key(key) => key_of(key).map(|k| key_events.send(StartEvent::Key(k))),
                Event::Resize(_, _) => Some(key_events.send(StartEvent::Redraw)),
                _ => None,
            };
            if matches!(sent, Some(Err(_))) {
                break;
            }
        }
    });
    let mut state = Start::default();
    let result = loop {
        terminal.draw(|frame| draw(frame, &state))?;
        let Some(event) = inbox.recv().await else {
            break None;
        };
        match event {
            StartEvent::Redraw => {}
            StartEvent::Link(event) => state.link_event(&event),
            StartEvent::Done(_, _, Ok(client)) => break Some(*client),
            StartEvent::Done(link, name, Err(e)) => state.failed(link, name, e.to_string()),
            StartEvent::Key(key) => match state.key(key) {
                Action::None => {}
                Action::Quit => break None,
                Action::Register(name) => {
                    let (home, server, options, done) = (
                        home.to_owned(),
                        server.to_owned(),
                        options.clone(),
                        events.clone(),
                    );
                    tokio::spawn(async move {
                        let result = Client::register(&home, &server, &name, options)
                            .await
                            .map(Box::new);
                        let _ = done.send(StartEvent::Done(false, name, result));
                    });
                }
                Action::Link(name) => {
                    let (home, server, options, done) = (
                        home.to_owned(),
                        server.to_owned(),
                        options.clone(),
                        events.clone(),
                    );
                    tokio::spawn(async move {
                        let progress = done.clone();
                        let result = Client::link(&home, Some(&server), &name, options, |event| {
                            let _ = progress.send(StartEvent::Link(event));
                        })
                        .await
                        .map(Box::new);
                        let _ = done.send(StartEvent::Done(true, name, result));
                    });
                }
            },
        }
    };
    keys.abort();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(start: &mut Start, text: &str) {
        for c in text.chars() {
            assert_eq!(start.key(Key::Char(c)), Action::None);
        }
    }

    #[test]
    fn linking_asks_the_name_then_shows_the_code_and_what_happens() {
        let mut start = Start::default();
        assert_eq!(start.key(Key::Char('l')), Action::None);
        typed(&mut start, "alice");
        assert_eq!(start.key(Key::Enter), Action::Link("alice".into()));
        start.link_event(&LinkEvent::Code("ABCD-EFGH".into()));
        start.link_event(&LinkEvent::Approved);
        let Screen::Linking {
            username,
            code,
            status,
        } = &start.screen
        else {
            panic!("{:?}", start.screen);
        };
        assert_eq!((username.as_str(), code.as_str()), ("alice", "ABCD-EFGH"));
        assert!(status.last().unwrap().contains("approved"), "{status:?}");
    }

    #[test]
    fn a_failed_registration_returns_to_the_name_with_the_reason() {
        let mut start = Start::default();
        start.key(Key::Char('r'));
        assert_eq!(
            start.key(Key::Enter),
            Action::None,
            "an empty name goes nowhere"
        );
        typed(&mut start, "bob");
        assert_eq!(start.key(Key::Enter), Action::Register("bob".into()));
        start.failed(false, "bob".into(), "username is already taken".into());
        assert_eq!(
            start.screen,
            Screen::Name {
                link: false,
                input: "bob".into(),
                error: Some("username is already taken".into())
            }
        );
        assert_eq!(start.key(Key::Esc), Action::None);
        assert_eq!(start.screen, Screen::Choose);
        assert_eq!(start.key(Key::Char('q')), Action::Quit);
    }
}
