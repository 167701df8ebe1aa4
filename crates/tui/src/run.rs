//! The terminal side: raw mode and the alternate screen, keys from crossterm, the client's live
//! connection, and commands run against the client library.

use std::io::Stdout;
use std::sync::Arc;

use futures_util::StreamExt;
use parley_client::{ChatRef, Client, GroupStateView, SafetyNumber};
use parley_protocol::Username;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::app::{App, Command, Connection, Key};
use crate::ui;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

enum UiEvent {
    Key(Key),
    Redraw,
    Arrived,
    Connection(bool),
    Progress(u64, u64),
    Done(Result<String, String>, Option<String>),
    Safety(Result<SafetyNumber, String>),
    Members(String, Result<GroupStateView, String>),
    Devices(Result<Vec<parley_client::DeviceView>, String>),
    Typing(parley_client::TypingView),
    /// A saved image, small: its name and lines.
    Preview(String, Vec<ratatui::text::Line<'static>>),
    /// A second passed: "typing…" may have run out.
    Tick,
}

/// Restores the terminal however the UI ends.
pub(crate) struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

pub(crate) fn key_of(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    let alt = event.modifiers.contains(KeyModifiers::ALT);
    Some(match event.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char('j') if ctrl => Key::NewLine,
        KeyCode::Enter if alt || event.modifiers.contains(KeyModifiers::SHIFT) => Key::NewLine,
        KeyCode::Enter => Key::Enter,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        _ => return None,
    })
}

fn chat_ref(name: &str) -> Result<ChatRef, String> {
    ChatRef::parse(name).map_err(|e| e.to_string())
}

/// Reloads the chat list and the open chat from the local database (cheap: no network).
fn refresh(client: &Arc<Client>, app: &mut App) {
    match client.chats() {
        Ok(chats) => app.set_chats(chats),
        Err(e) => app.show_error(&e.to_string()),
    }
    let Some(chat) = app.current_chat().map(|c| c.chat.clone()) else {
        app.set_messages(Vec::new());
        return;
    };
    if let Ok(chat) = ChatRef::parse(&chat) {
        match client.history(&chat, 500) {
            Ok(messages) => app.set_messages(messages),
            Err(e) => app.show_error(&e.to_string()),
        }
        // The open chat is read; its count in the list goes to zero, and (with read
        // receipts on) its members hear of it.
        if app.current_chat().is_some_and(|c| c.unread > 0) && client.mark_read(&chat).is_ok() {
            if let Ok(chats) = client.chats() {
                app.set_chats(chats);
            }
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.read(&chat).await {
                    tracing::info!(error = %e, "read receipt not sent");
                }
            });
        }
    }
}

/// The largest preview, in cells: it fits an 80x24 terminal with its frame.
const PREVIEW_COLUMNS: u32 = 64;
const PREVIEW_ROWS: u32 = 18;

fn spawn_command(client: Arc<Client>, command: Command, events: mpsc::UnboundedSender<UiEvent>) {
    tokio::spawn(async move {
        let done = |r: Result<(), parley_client::ClientError>, ok: &str| {
            r.map(|_| ok.to_owned()).map_err(|e| e.to_string())
        };
        let (result, select) = match command {
            Command::Send {
                chat,
                text,
                reply_to,
            } => match chat_ref(&chat) {
                Ok(target) => {
                    // The message ends the typing.
                    let _ = client.send_typing(&target, true).await;
                    (
                        client
                            .send_reply(&target, &text, reply_to.as_deref())
                            .await
                            .map(|_| String::new())
                            .map_err(|e| e.to_string()),
                        None,
                    )
                }
                Err(e) => (Err(e), None),
            },
            Command::Typing { chat } => {
                if let Ok(target) = chat_ref(&chat) {
                    // A courtesy: a failure is not worth a word.
                    let _ = client.send_typing(&target, false).await;
                }
                return;
            }
            Command::Edit { id, text } => (
                done(client.edit(&id, &text).await.map(|_| ()), "Edited"),
                None,
            ),
            Command::Delete { id } => (
                done(client.delete(&id).await.map(|_| ()), "Deleted for everyone"),
                None,
            ),
            Command::React { id, emoji, remove } => (
                done(client.react(&id, &emoji, remove).await.map(|_| ()), ""),
                None,
            ),
            Command::SaveAttachment { id, out } => {
                let path = std::path::PathBuf::from(&out);
                let saved = client.save_attachment(&id, 0, Some(&path), &|_, _| {}).await;
                if let Ok(saved) = &saved {
                    // Decoded off the UI's thread; not an image (or not one this build
                    // decodes): saving was all.
                    let path = saved.clone();
                    let lines = tokio::task::spawn_blocking(move || {
                        crate::preview::preview(&path, PREVIEW_COLUMNS, PREVIEW_ROWS)
                    })
                    .await;
                    if let Ok(Some(lines)) = lines {
                        let name = saved
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let _ = events.send(UiEvent::Preview(name, lines));
                    }
                }
                (
                    saved
                        .map(|p| format!("Saved {}", p.display()))
                        .map_err(|e| e.to_string()),
                    None,
                )
            }
            Command::SendFile { chat, path } => match chat_ref(&chat) {
                Ok(target) => {
                    let progress_events = events.clone();
                    let progress = move |_: &str, p: parley_client::attachments::Progress| {
                        let _ = progress_events.send(UiEvent::Progress(p.done, p.total));
                    };
                    (
                        client
                            .send_file(&target, std::path::Path::new(&path), None, None, &progress)
                            .await
                            .map(|m| format!("Sent {}", m.attachments.first().map_or("", |a| a.name.as_str())))
                            .map_err(|e| e.to_string()),
                        None,
                    )
                }
                Err(e) => (Err(e), None),
            },
            Command::SetTimer { chat, seconds } => match chat_ref(&chat) {
                Ok(target) => {
                    let said = match seconds {
                        0 => "Disappearing messages off".to_owned(),
                        s => format!(
                            "New messages disappear {} after sending",
                            parley_client::human_duration(s)
                        ),
                    };
                    (
                        done(client.set_disappearing(&target, Some(seconds)).await, &said),
                        None,
                    )
                }
                Err(e) => (Err(e), None),
            },
            Command::NewDirect { user, text } => match Username::parse(&user) {
                Ok(peer) => (
                    client
                        .send_text(&ChatRef::Direct(peer), &text)
                        .await
                        .map(|_| format!("Chat with {user} started"))
                        .map_err(|e| e.to_string()),
                    Some(user),
                ),
                Err(e) => (Err(e.to_string()), None),
            },
            Command::NewGroup { name, members } => {
                let members: Result<Vec<Username>, String> = members
                    .iter()
                    .map(|m| Username::parse(m).map_err(|e| format!("{m}: {e}")))
                    .collect();
                match members {
                    Ok(members) => (
                        client
                            .create_group(&name, &members)
                            .await
                            .map(|_| format!("Group #{name} created"))
                            .map_err(|e| e.to_string()),
                        Some(format!("#{name}")),
                    ),
                    Err(e) => (Err(e), None),
                }
            }
            Command::AddMember { group, user } => match Username::parse(&user) {
                Ok(u) => (
                    client
                        .add_members(&group, &[u])
                        .await
                        .map(|_| format!("{user} added"))
                        .map_err(|e| e.to_string()),
                    None,
                ),
                Err(e) => (Err(e.to_string()), None),
            },
            Command::RemoveMember { group, user } => match Username::parse(&user) {
                Ok(u) => (
                    client
                        .remove_members(&group, &[u])
                        .await
                        .map(|_| format!("{user} removed"))
                        .map_err(|e| e.to_string()),
                    None,
                ),
                Err(e) => (Err(e.to_string()), None),
            },
            Command::Leave { group } => (
                client
                    .leave_group(&group)
                    .await
                    .map(|_| format!("You left #{group}"))
                    .map_err(|e| e.to_string()),
                None,
            ),
            Command::Report { message_id, reason } => {
                let sent = match client.report_bundle(&message_id, &reason, 3) {
                    // The TUI cannot ask for a saved copy: a file the server no longer has is
                    // left out, the message still goes.
                    Ok(bundle) => client
                        .send_report_without_missing_files(&bundle, &[])
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (
                    sent.map(|id| format!("Reported (report {id}); the moderators can verify it")),
                    None,
                )
            }
            Command::Block { user } => match Username::parse(&user) {
                Ok(u) => (
                    client
                        .block(&u)
                        .await
                        .map(|_| format!("{user} blocked"))
                        .map_err(|e| e.to_string()),
                    None,
                ),
                Err(e) => (Err(e.to_string()), None),
            },
            Command::SafetyNumber { user } => {
                let number = Username::parse(&user)
                    .map_err(|e| e.to_string())
                    .and_then(|u| client.safety_number(&u).map_err(|e| e.to_string()));
                let _ = events.send(UiEvent::Safety(number));
                return;
            }
            Command::Members { group } => {
                let state = client
                    .group_state(&ChatRef::Group(group.clone()))
                    .map_err(|e| e.to_string());
                let _ = events.send(UiEvent::Members(group, state));
                return;
            }
            Command::ListDevices => {
                let devices = client.devices().await.map_err(|e| e.to_string());
                let _ = events.send(UiEvent::Devices(devices));
                return;
            }
            Command::RenameDevice { id, name } => (
                client
                    .rename_device(&id, &name)
                    .await
                    .map(|d| format!("Device renamed to {}", d.name))
                    .map_err(|e| e.to_string()),
                None,
            ),
            Command::RevokeDevice { id } => (
                client
                    .revoke_device(&id)
                    .await
                    .map(|chats| format!("Device revoked; removed from {chats} chats"))
                    .map_err(|e| e.to_string()),
                None,
            ),
            Command::ApproveLink { code } => (
                client
                    .approve_link(&code, |_| {})
                    .await
                    .map(|size| {
                        format!(
                            "Linked: the new device is in every chat and has {} messages of history",
                            size.messages
                        )
                    })
                    .map_err(|e| e.to_string()),
                None,
            ),
            Command::OpenChat { .. } => (Ok(String::new()), None),
            Command::Quit => return,
        };
        let _ = events.send(UiEvent::Done(result, select));
    });
}

/// Runs the full-screen client until the user quits.
pub async fn run(client: Client) -> Result<(), TuiError> {
    let client = Arc::new(client);
    let (events, mut inbox) = mpsc::unbounded_channel::<UiEvent>();

    enable_raw_mode()?;
    let _guard = TerminalGuard;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(std::io::stdout()))?;

    let mut app = App::new(client.username().as_str());
    refresh(&client, &mut app);

    // Typing indicators, changes without new messages (receipts, disappearing), and a
    // second's tick for "typing…" to run out.
    let (mut typing, mut changes, ticks) = (
        client.typing_events(),
        client.change_events(),
        events.clone(),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let event = tokio::select! {
                typed = typing.recv() => match typed {
                    Ok(view) => UiEvent::Typing(view),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
                changed = changes.recv() => match changed {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => UiEvent::Arrived,
                    Err(_) => break,
                },
                _ = tick.tick() => UiEvent::Tick,
            };
            if ticks.send(event).is_err() {
                break;
            }
        }
    });

    // Keys.
    let key_events = events.clone();
    tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(Ok(event)) = stream.next().await {
            let sent = match event {
                Event::Key(key) => key_of(key).map(|k| key_events.send(UiEvent::Key(k))),
                Event::Resize(_, _) => Some(key_events.send(UiEvent::Redraw)),
                _ => None,
            };
            if matches!(sent, Some(Err(_))) {
                break;
            }
        }
    });

    // The live connection: a first sync with progress, then messages as they arrive.
    let (live_client, live_events) = (client.clone(), events.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let progress_events = live_events.clone();
        let first = live_client
            .receive_with_progress(|done, total| {
                let _ = progress_events.send(UiEvent::Progress(done, total));
            })
            .await;
        if let Ok(messages) = first {
            let _ = (messages, live_events.send(UiEvent::Arrived));
        }
        let (message_events, state_events) = (live_events.clone(), live_events.clone());
        let _ = live_client
            .follow(
                move |m| {
                    let _ = (m, message_events.send(UiEvent::Arrived));
                },
                move |up| {
                    let _ = state_events.send(UiEvent::Connection(up));
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
    });

    terminal.draw(|frame| ui::draw(frame, &app))?;
    while let Some(event) = inbox.recv().await {
        match event {
            UiEvent::Key(key) => {
                let chat_before = app.current_chat().map(|c| c.chat.clone());
                for command in app.key(key) {
                    if command == Command::Quit {
                        let _ = stop_tx.send(());
                        return Ok(());
                    }
                    spawn_command(client.clone(), command, events.clone());
                }
                if app.current_chat().map(|c| c.chat.clone()) != chat_before {
                    refresh(&client, &mut app);
                }
            }
            UiEvent::Redraw => {}
            UiEvent::Arrived => {
                app.progress = None;
                refresh(&client, &mut app);
            }
            UiEvent::Connection(up) => app.set_connection(if up {
                Connection::Online
            } else {
                Connection::Offline
            }),
            UiEvent::Progress(done, total) => app.progress = (total > 20).then_some((done, total)),
            UiEvent::Done(result, select) => {
                match result {
                    Ok(status) if !status.is_empty() => app.status = status,
                    Ok(_) => {}
                    Err(e) => app.show_error(&e),
                }
                refresh(&client, &mut app);
                if let Some(chat) = select {
                    app.select_chat(&chat);
                    refresh(&client, &mut app);
                }
            }
            UiEvent::Safety(Ok(number)) => app.show_safety_number(number),
            UiEvent::Safety(Err(e)) => app.show_error(&e),
            UiEvent::Members(group, Ok(state)) => {
                app.show_members(&group, &state.members, &state.admins)
            }
            UiEvent::Members(_, Err(e)) => app.show_error(&e),
            UiEvent::Devices(Ok(devices)) => app.show_devices(devices),
            UiEvent::Devices(Err(e)) => app.show_error(&e),
            UiEvent::Typing(view) => app.set_typing(
                &view.chat,
                &view.sender,
                view.stopped,
                std::time::Instant::now(),
            ),
            UiEvent::Tick => {}
            UiEvent::Preview(name, lines) => {
                app.overlay = crate::app::Overlay::Preview { name, lines }
            }
        }
        terminal.draw(|frame| ui::draw(frame, &app))?;
    }
    Ok(())
}
