//! Everything the CLI prints, human-readable or `--json`, formatted in one place.
//!
//! Output goes to stdout line by line. When the reader goes away (`parley chats | head -1`) the
//! process ends quietly with status 0, as `head`'s writer expects, instead of panicking: what was
//! printed had already been stored, so nothing is lost.

use std::io::Write as _;

use parley_client::{rfc3339, ChatSummary, GroupStateView, MessageView};
use parley_store::{AuditEntry, Report};

/// One line on stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        fail(&anyhow::anyhow!("cannot write the output: {e}"));
    }
}

/// A warning as one line on stderr: the command did what it says, but not all of it.
pub fn warning(text: &str) {
    let _ = writeln!(std::io::stderr(), "parley: warning: {text}");
}

/// An error as one line on stderr, then exit status 1. Never an empty line: a message-less error
/// is named by its kind.
pub fn fail(error: &anyhow::Error) -> ! {
    let mut text = format!("{error:#}").replace('\n', " ");
    if text.trim().is_empty() {
        // Every cause was silent: say so rather than print nothing (no backtrace either).
        text = "failed without a description (run with PARLEY_LOG=debug for details)".into();
    }
    let _ = writeln!(std::io::stderr(), "parley: {text}");
    std::process::exit(1);
}

/// The stored server address, for `parley server-address`.
pub fn server_address(address: &str) {
    line(address);
}

/// Said once when another process holds the home and this command waits for it.
pub fn waiting_for_home() {
    let _ = writeln!(
        std::io::stderr(),
        "parley: waiting for another parley process using this home to finish \
         (a `parley tui` or `sync --follow` holds it until it ends)"
    );
}

pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => line(&text),
        Err(e) => fail(&anyhow::anyhow!("cannot format JSON: {e}")),
    }
}

/// A message: `[time] alice: hi bob` in a 1:1 chat, `[time] #team alice: hello` in a group;
/// messages not (yet) delivered say so.
pub fn message(message: &MessageView, as_json: bool) {
    if as_json {
        return json(message);
    }
    if message.kind == "notice" {
        return line(&format!(
            "[{}] {}",
            local_time(&message.sent_at),
            sanitize(&message.text)
        ));
    }
    let chat = if message.chat.starts_with('#') {
        format!("{} ", message.chat)
    } else {
        String::new()
    };
    let state = match message.status.as_str() {
        "failed" => " [failed: not delivered]",
        "sending" => " [sending]",
        "delivered" => " [delivered]",
        "read" => " [read]",
        _ => "",
    };
    let reply = match &message.quoted {
        Some(q) if q.deleted => format!(" (reply to {}: deleted)", q.sender),
        Some(q) => format!(
            " (reply to {}: \"{}\")",
            q.sender,
            one_line_preview(&q.text, 30)
        ),
        None if message.reply_to.is_some() => " (reply)".into(),
        None => String::new(),
    };
    let text = match (&message.deleted_by, message.deleted) {
        (Some(admin), _) => format!("(deleted by {admin}, a group admin)"),
        (None, true) => "(deleted)".into(),
        (None, false) => sanitize(&message.text),
    };
    let edited = if message.edited && !message.deleted {
        " (edited)"
    } else {
        ""
    };
    let reactions = if message.reactions.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = message
            .reactions
            .iter()
            .map(|(emoji, users)| format!("{} {}", sanitize(emoji), users.join(", ")))
            .collect();
        format!("  [{}]", each.join(" · "))
    };
    let files: String = message
        .attachments
        .iter()
        .map(|a| format!("  [file: {} ({})]", sanitize(&a.name), human_size(a.size)))
        .collect();
    line(&format!(
        "[{}] {chat}{}{reply}: {text}{edited}{files}{state}{reactions}",
        local_time(&message.sent_at),
        message.sender,
    ));
}

/// 1.5 MB, 300 kB, 12 B.
fn human_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.0} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// A chat on one line: name, state, unread count, time and first line of the last message.
pub fn chat(chat: &ChatSummary, as_json: bool) {
    if as_json {
        return json(chat);
    }
    let mut text = chat.chat.clone();
    if chat.state != "active" {
        text.push_str(&format!(" ({})", chat.state));
    }
    if chat.unread > 0 {
        text.push_str(&format!("  {} unread", chat.unread));
    }
    if let Some(last) = &chat.last_message {
        text.push_str(&format!(
            "  [{}] {}: {}",
            local_time(&last.sent_at),
            last.sender,
            one_line_preview(&last.text, 60)
        ));
    }
    line(&text);
}

/// A group's members, one account a line, admins marked: `alice (admin)`.
pub fn members(group: &GroupStateView) {
    let mut names = group.members.clone();
    names.dedup();
    for name in names {
        if group.admins.contains(&name) {
            line(&format!("{name} (admin)"));
        } else {
            line(&name);
        }
    }
}

/// A report, for `parley admin reports`.
pub fn report(report: &Report, as_json: bool) {
    let r = &report.report;
    if as_json {
        let all: Vec<serde_json::Value> = serde_json::from_str(&r.context).unwrap_or_default();
        let (files, all): (Vec<_>, Vec<_>) = all.into_iter().partition(|m| m.get("file").is_some());
        let files: Vec<serde_json::Value> = files
            .into_iter()
            .filter_map(|m| {
                let mut file = m.get("file")?.clone();
                file.as_object_mut()?.remove("object");
                Some(file)
            })
            .collect();
        let (versions, context): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|m| m.get("version").is_some());
        return json(&serde_json::json!({
            "id": report.id,
            "status": report.status.as_str(),
            "accused": r.accused.as_str(),
            "reporter": r.reporter.as_str(),
            "text": r.text,
            "reason": r.reason,
            "chat": r.group_id.to_hex(),
            "group_seq": r.group_seq,
            "sent_at": rfc3339(r.message_accepted_at),
            "reported_at": rfc3339(r.created_at),
            "context": context,
            "versions": versions,
            "files": files,
            "verified": true,
        }));
    }
    line(&format!(
        "#{} [{}] {} reported by {} ({}): {}",
        report.id,
        report.status.as_str(),
        r.accused,
        r.reporter,
        sanitize(&r.reason),
        sanitize(&r.text)
    ));
}

/// An audit log entry.
pub fn audit(entry: &AuditEntry, as_json: bool) {
    if as_json {
        return json(&serde_json::json!({
            "at": rfc3339(entry.at),
            "moderator": entry.moderator,
            "action": entry.action,
            "subject": entry.subject,
        }));
    }
    line(&format!(
        "{} {} {} {}",
        rfc3339(entry.at),
        entry.moderator,
        entry.action,
        entry.subject
    ));
}

fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// The first line of a text, cut to `max` characters, marked where anything was left out.
fn one_line_preview(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut preview: String = sanitize(first).chars().take(max).collect();
    if preview.chars().count() < text.chars().count() {
        preview.push('…');
    }
    preview
}

/// Terminal output never carries control characters from the network.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A step of `parley link`: the code on stdout (first line), the rest on stderr.
pub fn link_event(event: &parley_client::LinkEvent, as_json: bool) {
    match event {
        parley_client::LinkEvent::Code(code) if as_json => {
            json(&serde_json::json!({ "link_code": code }))
        }
        parley_client::LinkEvent::Code(code) => {
            line(&format!("link code: {code}"));
            // The code again as a QR code, for a phone's camera (on stderr: stdout's first line is
            // the code itself, for scripts).
            let _ = writeln!(std::io::stderr(), "{}", parley_tui::ui::qr_code(code));
            let _ = writeln!(
                std::io::stderr(),
                "parley: enter this code on a device of the account: \
                 `parley devices approve {code}` (it works once, for 10 minutes)"
            );
        }
        other => {
            if let Some(text) = crate::devices::describe(other) {
                let _ = writeln!(std::io::stderr(), "parley: {text}");
            }
        }
    }
}

pub fn linked(username: &str, device: &str, as_json: bool) {
    if as_json {
        json(&serde_json::json!({ "linked": username, "device": device }));
    } else {
        line(&format!("linked this device ({device}) to {username}"));
    }
}

/// A step of `parley devices approve`, on stderr.
pub fn approve_event(event: &parley_client::ApproveEvent) {
    use parley_client::ApproveEvent::*;
    let text = match event {
        Approved { device } => format!("approved device {device}"),
        WaitingForDevice => "waiting for the new device to come online…".into(),
        Added { done, total } => format!("added it to {done} of {total} chats"),
        HistorySent(_) => return,
    };
    let _ = writeln!(std::io::stderr(), "parley: {text}");
}

pub fn approved(chats: u64, messages: u64, bytes: u64, as_json: bool) {
    if as_json {
        json(&serde_json::json!({ "chats": chats, "messages": messages, "bytes": bytes }));
    } else {
        line(&format!(
            "linked: sent the history ({messages} messages in {chats} chats, {bytes} bytes encrypted)"
        ));
    }
}

pub fn devices(devices: &[parley_client::DeviceView], as_json: bool) {
    for device in devices {
        if as_json {
            json(device);
        } else {
            let name = if device.name.is_empty() {
                "(unnamed)"
            } else {
                &device.name
            };
            line(&format!(
                "{}{}  {name}  added {}  last seen {}",
                device.id,
                if device.current { " (this device)" } else { "" },
                device.added_at,
                device.last_seen
            ));
        }
    }
}

/// Someone typing (or stopping), as `sync --follow` shows it.
pub fn typing(typing: &parley_client::TypingView, as_json: bool) {
    if as_json {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            kind: &'static str,
            #[serde(flatten)]
            typing: &'a parley_client::TypingView,
        }
        return json(&Line {
            kind: "typing",
            typing,
        });
    }
    let what = if typing.stopped {
        "stopped typing"
    } else {
        "is typing…"
    };
    let chat = if typing.chat.starts_with('#') {
        format!(" in {}", typing.chat)
    } else {
        String::new()
    };
    line(&format!("{} {what}{chat}", sanitize(&typing.sender)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_one_line_and_marks_what_it_cut() {
        assert_eq!(one_line_preview("hello", 60), "hello");
        assert_eq!(one_line_preview("first\nsecond", 60), "first…");
        assert_eq!(one_line_preview("abcdef", 3), "abc…");
    }

    #[test]
    fn control_characters_from_the_network_are_replaced() {
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a\u{fffd}[31mb\nc");
    }
}
