//! Drawing the [`App`] with ratatui. Works down to 80x24 and at any size above; smaller
//! terminals get what fits (ratatui clips; nothing here indexes by size).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Connection, Focus, Overlay};

pub const HELP: &[(&str, &str)] = &[
    ("↑/↓ j/k", "select a chat, or a message"),
    ("Tab", "switch between chats and messages"),
    ("Enter, i", "write in the selected chat"),
    ("Enter", "send (in the compose box)"),
    ("Alt+Enter, Ctrl+J", "new line in the compose box"),
    ("Esc", "leave the compose box or a dialog"),
    ("n", "new 1:1 chat"),
    ("g", "new group"),
    ("a / r", "add / remove a group member"),
    ("m", "members and admins of the group"),
    ("l", "leave the group"),
    ("R", "report the selected message"),
    ("b", "block the selected sender or the peer"),
    ("s", "safety number of the selected sender or the peer"),
    ("D", "devices: rename, revoke, approve a new one"),
    ("?", "this help"),
    ("q, Ctrl+C", "quit"),
];

/// `payload` as a QR code in Unicode half blocks (two rows a line), for a terminal.
pub fn qr_code(payload: &str) -> String {
    qrcode::QrCode::new(payload.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default()
}

fn time_of(rfc3339: &str) -> &str {
    // "2026-11-29T21:47:29.133Z" → "21:47"
    rfc3339.get(11..16).unwrap_or(rfc3339)
}

fn focused(block: Block<'_>, on: bool) -> Block<'_> {
    if on {
        block.border_style(Style::default().fg(Color::Cyan))
    } else {
        block
    }
}

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [top, body, compose, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(compose_height(app)),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_title(frame, app, top);
    let [chats, messages] =
        Layout::horizontal([Constraint::Length(26), Constraint::Min(20)]).areas(body);
    draw_chats(frame, app, chats);
    draw_messages(frame, app, messages);
    draw_compose(frame, app, compose);
    frame.render_widget(
        Paragraph::new(app.status.as_str()).style(Style::default().fg(Color::Gray)),
        bottom,
    );
    draw_overlay(frame, app);
}

fn compose_height(app: &App) -> u16 {
    (app.compose.lines().count().max(1) as u16 + usize::from(app.compose.ends_with('\n')) as u16)
        .min(5)
        + 2
}

fn draw_title(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (state, color) = match app.connection {
        Connection::Online => ("● online", Color::Green),
        Connection::Connecting => ("◌ connecting", Color::Yellow),
        Connection::Offline => ("○ offline, reconnecting", Color::Red),
    };
    let mut spans = vec![
        Span::styled(" Parley ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("— {}  ", app.me)),
        Span::styled(state, Style::default().fg(color)),
    ];
    if let Some((done, total)) = app.progress {
        spans.push(Span::raw(format!("  syncing {done}/{total}")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_chats(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .chats
        .iter()
        .map(|chat| {
            let mut first = vec![Span::styled(
                chat.chat.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            )];
            if chat.unread > 0 {
                first.push(Span::styled(
                    format!(" ({})", chat.unread),
                    Style::default().fg(Color::Yellow),
                ));
            }
            if chat.state != "active" {
                first.push(Span::raw(format!(" [{}]", chat.state)));
            }
            let last = chat
                .last_message
                .as_ref()
                .map(|m| match m.attachments.first() {
                    Some(file) if m.text.is_empty() => format!("{}: 📎 {}", m.sender, file.name),
                    _ => format!("{}: {}", m.sender, m.text.replace('\n', " ")),
                })
                .unwrap_or_default();
            ListItem::new(vec![
                Line::from(first),
                Line::from(Span::styled(last, Style::default().fg(Color::Gray))),
            ])
        })
        .collect();
    let mut state = ListState::default();
    if !app.chats.is_empty() {
        state.select(Some(app.selected_chat));
    }
    let list = List::new(items)
        .block(focused(
            Block::default().borders(Borders::ALL).title("Chats"),
            app.focus == Focus::Chats,
        ))
        .highlight_style(Style::default().bg(Color::DarkGray));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_messages(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut title = app
        .pending_direct
        .as_deref()
        .or(app.current_chat().map(|c| c.chat.as_str()))
        .unwrap_or("No chat — press n for a new one")
        .to_owned();
    if let Some(seconds) = app
        .current_chat()
        .map(|c| c.disappearing)
        .filter(|s| *s > 0)
    {
        title.push_str(&format!(" — ⏱ {}", parley_client::human_duration(seconds)));
    }
    let typing = app.typing_here(std::time::Instant::now());
    if !typing.is_empty() {
        title.push_str(&format!(" — {} typing…", typing.join(", ")));
    }
    let items: Vec<ListItem> = app
        .messages
        .iter()
        .map(|m| {
            if m.kind == "notice" {
                // What happened to us in the chat: one line, set apart from messages.
                return ListItem::new(Line::from(vec![
                    Span::styled(
                        time_of(&m.sent_at).to_owned(),
                        Style::default().fg(Color::Gray),
                    ),
                    Span::raw(" "),
                    Span::styled(
                        m.text.replace('\n', " "),
                        Style::default()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::ITALIC),
                    ),
                ]));
            }
            let lines = message_lines(m);
            ListItem::new(lines)
        })
        .collect();
    let mut state = ListState::default();
    // Without a selection, show the newest messages.
    state.select(app.selected_message.or(app.messages.len().checked_sub(1)));
    let list = List::new(items)
        .block(focused(
            Block::default().borders(Borders::ALL).title(title),
            app.focus == Focus::Messages,
        ))
        .highlight_style(if app.focus == Focus::Messages {
            Style::default().bg(Color::DarkGray)
        } else {
            Style::default()
        });
    frame.render_stateful_widget(list, area, &mut state);
}

/// One message: who and when with its delivery state, the message it answers, its text (or
/// that it was deleted), whether it was edited, its files and its reactions.
fn message_lines(m: &parley_client::MessageView) -> Vec<Line<'static>> {
    let gray = Style::default().fg(Color::Gray);
    let (state, color) = match m.status.as_str() {
        "sending" => (" ⧗ sending", Color::Gray),
        "sent" => (" ✓ sent", Color::Gray),
        "delivered" => (" ✓✓ delivered", Color::Gray),
        "read" => (" ✓✓ read", Color::Blue),
        "failed" => (" ✗ failed", Color::Red),
        _ => ("", Color::Gray),
    };
    let mut header = vec![
        Span::styled(time_of(&m.sent_at).to_owned(), gray),
        Span::raw(" "),
        Span::styled(
            m.sender.clone(),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::styled(state, Style::default().fg(color)),
    ];
    if m.expires_at.is_some() {
        header.push(Span::styled(" ⏱", gray));
    }
    let mut lines = vec![Line::from(header)];
    let quote = Style::default()
        .fg(Color::Gray)
        .add_modifier(Modifier::ITALIC);
    match &m.quoted {
        Some(q) if q.deleted => {
            lines.push(Line::styled(format!("  ↳ {}: deleted", q.sender), quote))
        }
        Some(q) => {
            let first = q.text.lines().next().unwrap_or_default();
            let short: String = first.chars().take(40).collect();
            lines.push(Line::styled(format!("  ↳ {}: {short}", q.sender), quote));
        }
        None => {}
    }
    if m.deleted {
        let by = m
            .deleted_by
            .as_deref()
            .map(|admin| format!(" by {admin} (admin)"))
            .unwrap_or_default();
        lines.push(Line::styled(format!("  (deleted{by})"), quote));
    } else {
        lines.extend(m.text.lines().map(|l| Line::from(format!("  {l}"))));
    }
    if m.edited {
        lines.push(Line::styled("  (edited — v shows the versions)", gray));
    }
    for file in &m.attachments {
        lines.push(Line::from(vec![
            Span::raw("  📎 "),
            Span::styled(
                file.name.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!(" ({}) — S saves it", human_size(file.size)), gray),
        ]));
    }
    if !m.reactions.is_empty() {
        let all: Vec<String> = m
            .reactions
            .iter()
            .map(|(emoji, users)| format!("{emoji} {}", users.len()))
            .collect();
        lines.push(Line::from(format!("  {}", all.join("  "))));
    }
    lines
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / (1 << 10) as f64),
        b => format!("{b} bytes"),
    }
}

fn draw_compose(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let title = match (app.focus == Focus::Compose, &app.replying_to) {
        (true, Some(_)) => "Reply (Enter sends, Esc cancels)",
        (true, None) => "Message (Enter sends, Alt+Enter new line)",
        (false, _) => "Message (Enter to write)",
    };
    let text = if app.focus == Focus::Compose {
        format!("{}▏", app.compose)
    } else {
        app.compose.clone()
    };
    let paragraph = Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .block(focused(
            Block::default().borders(Borders::ALL).title(title),
            app.focus == Focus::Compose,
        ));
    frame.render_widget(paragraph, area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn draw_overlay(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => {
            let lines: Vec<Line> = HELP
                .iter()
                .map(|(keys, what)| {
                    Line::from(vec![
                        Span::styled(format!("{keys:<18}"), Style::default().fg(Color::Cyan)),
                        Span::raw(*what),
                    ])
                })
                .collect();
            let lines: Vec<Line> = lines
                .into_iter()
                .chain(crate::actions::HELP.iter().map(|(keys, what)| {
                    Line::from(vec![
                        Span::styled(format!("{keys:<18}"), Style::default().fg(Color::Cyan)),
                        Span::raw(*what),
                    ])
                }))
                .collect();
            let popup = centered(area, 70, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("Keys (any key closes)"),
                ),
                popup,
            );
        }
        Overlay::Prompt { prompt, input } => {
            let popup = centered(area, 60, 3);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(format!("{input}▏")).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(prompt.question()),
                ),
                popup,
            );
        }
        Overlay::ConfirmLeave { group } => {
            let popup = centered(area, 50, 3);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new("y to leave, any other key to stay").block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!("Leave #{group}?")),
                ),
                popup,
            );
        }
        Overlay::Devices { devices, selected } => {
            let mut lines: Vec<Line> = devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let name = if d.name.is_empty() {
                        "(unnamed)"
                    } else {
                        &d.name
                    };
                    let text = format!(
                        "{} {}  {name}{}  last seen {} {}",
                        if i == *selected { "▸" } else { " " },
                        &d.id[..8.min(d.id.len())],
                        if d.current { " (this device)" } else { "" },
                        d.last_seen.get(..10).unwrap_or(&d.last_seen),
                        time_of(&d.last_seen),
                    );
                    if i == *selected {
                        Line::from(Span::styled(
                            text,
                            Style::default().add_modifier(Modifier::BOLD),
                        ))
                    } else {
                        Line::from(text)
                    }
                })
                .collect();
            lines.push(Line::from(""));
            lines.push(Line::from(
                "r rename · x revoke · a approve a new device · Esc close",
            ));
            let popup = centered(area, 76, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines)
                    .block(Block::default().borders(Borders::ALL).title("Devices")),
                popup,
            );
        }
        Overlay::ConfirmRevoke { name, .. } => {
            let popup = centered(area, 60, 3);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new("y to revoke it, any other key to keep it").block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!("Revoke {name}? It is removed from every chat")),
                ),
                popup,
            );
        }
        Overlay::ConfirmDelete { .. } => {
            let popup = centered(area, 50, 3);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new("y to delete it for everyone, any other key keeps it").block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("Delete this message?"),
                ),
                popup,
            );
        }
        Overlay::Versions { lines } => {
            let lines: Vec<Line> = lines
                .iter()
                .map(|l| Line::from(l.replace('\n', " ")))
                .collect();
            let popup = centered(area, 60, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("Versions, oldest first (any key closes)"),
                ),
                popup,
            );
        }
        Overlay::Preview { name, lines } => {
            let width = lines.first().map_or(0, |l| l.spans.len()) as u16 + 2;
            let popup = centered(area, width.max(30), lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines.clone()).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!("{name} (any key closes)")),
                ),
                popup,
            );
        }
        Overlay::Members { group, lines } => {
            let lines: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
            let popup = centered(area, 40, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(format!("#{group} (any key closes)")),
                ),
                popup,
            );
        }
        Overlay::Safety(number) => {
            let qr = qrcode::QrCode::new(number.qr_payload.as_bytes())
                .map(|code| {
                    code.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(false)
                        .build()
                })
                .unwrap_or_default();
            let mut lines = vec![
                Line::from(format!("Compare with {} in person:", number.peer)),
                Line::from(Span::styled(
                    number.digits.clone(),
                    Style::default().add_modifier(Modifier::BOLD),
                )),
                Line::from(""),
            ];
            lines.extend(qr.lines().map(|l| Line::from(l.to_owned())));
            let popup = centered(area, 76, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("Safety number (any key closes)"),
                ),
                popup,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Key;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..height {
            for x in 0..width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn every_size_renders_without_panicking() {
        let mut app = App::new("alice");
        app.key(Key::Char('?'));
        for (width, height) in [(80, 24), (1, 1), (0, 0), (10, 3), (200, 60), (40, 100)] {
            let _ = screen(&app, width, height);
        }
    }

    #[test]
    fn a_long_sync_shows_its_progress_and_the_connection_state_shows() {
        let mut app = App::new("alice");
        app.progress = Some((120, 4000));
        app.set_connection(Connection::Offline);
        let text = screen(&app, 80, 24);
        assert!(text.contains("syncing 120/4000"), "{text}");
        assert!(text.contains("offline, reconnecting"), "{text}");
    }

    #[test]
    fn the_main_screen_fits_80_by_24() {
        let app = App::new("alice");
        let text = screen(&app, 80, 24);
        assert!(text.contains("Parley"));
        assert!(text.contains("Chats"));
        assert!(text.contains("Press ? for help"));
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;
    use crate::app::tests::{chat, message};

    fn text_of(lines: &[Line<'_>]) -> String {
        lines
            .iter()
            .map(|l| {
                l.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_message_shows_its_reply_edit_files_reactions_ticks_and_timer() {
        let mut m = message("m1", "alice", "see the photo");
        m.status = "read".into();
        m.quoted = Some(parley_client::Quoted {
            sender: "bob".into(),
            text: "any news?\nmore".into(),
            deleted: false,
        });
        m.edited = true;
        m.attachments = vec![parley_client::AttachmentView {
            name: "photo.jpg".into(),
            size: 3 * 1024 * 1024,
            content_type: "image/jpeg".into(),
            sha256: String::new(),
        }];
        m.reactions
            .insert("👍".into(), vec!["bob".into(), "carol".into()]);
        m.expires_at = Some("2026-01-01T01:00:00.000Z".into());
        let text = text_of(&message_lines(&m));
        for part in [
            "✓✓ read",
            "⏱",
            "↳ bob: any news?",
            "see the photo",
            "(edited",
            "📎 photo.jpg (3.0 MB)",
            "👍 2",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        let mut gone = message("m2", "bob", "");
        gone.deleted = true;
        gone.deleted_by = Some("carol".into());
        assert!(text_of(&message_lines(&gone)).contains("(deleted by carol (admin))"));
    }

    #[test]
    fn the_chat_title_shows_its_timer_and_who_is_typing() {
        let mut app = App::new("alice");
        let mut bob = chat("bob", 0);
        bob.disappearing = 3600;
        app.set_chats(vec![bob]);
        app.set_typing("bob", "bob", false, std::time::Instant::now());
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 24)).unwrap();
        terminal.draw(|frame| draw(frame, &app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut screen = String::new();
        for y in 0..24 {
            for x in 0..100 {
                screen.push_str(buffer[(x, y)].symbol());
            }
        }
        assert!(screen.contains("⏱ 1 hour"), "{screen}");
        assert!(screen.contains("bob typing…"), "{screen}");
    }
}
