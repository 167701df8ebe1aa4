//! What a message shows once the messages that refer to it are applied: its current text and
//! earlier versions, whether it was deleted and by whom, and its reactions. A pure function of
//! the message and the set of its references, so that any arrival order ends in one state (a
//! delete before its message, an edit before its original).
//!
//! The rules (docs/messenger-basics.md): only the original sender edits, within
//! [`EDIT_WINDOW_MS`] of the server's acceptance of the original and at most [`MAX_EDITS`]
//! times; the sender or a group admin deletes, within [`DELETE_WINDOW_MS`]; each account
//! reacts at most once per emoji, and its last word on an emoji counts.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::db::{self, RefKind, RefRow};
use crate::error::ClientError;

/// How long after the original's acceptance its sender may edit it.
pub const EDIT_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Edits a message may have; later ones are refused.
pub const MAX_EDITS: usize = 10;
/// How long after a message's acceptance it may be deleted.
pub const DELETE_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// How long replaced versions and deleted texts stay on the device, hidden but reportable.
pub const KEEP_REPLACED_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Distinct emoji one account may put on one message (more are not shown).
pub const MAX_REACTIONS_PER_ACCOUNT: usize = 16;

/// The message being resolved.
pub struct Target<'a> {
    pub group_id: &'a [u8],
    pub sender: &'a str,
    /// When the server accepted it.
    pub at: i64,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub text: String,
    /// The accepted edits, in order.
    pub edits: Vec<Accepted>,
    /// The delete that counts, if any.
    pub deleted: Option<Accepted>,
    /// Emoji to the accounts that put them on, each list in order of reaction.
    pub reactions: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: Vec<u8>,
    pub sender: String,
    pub at: i64,
    pub text: String,
}

impl Resolved {
    /// Earlier texts, oldest first; purged ones are left out.
    pub fn versions(&self, original: &str) -> Vec<String> {
        if self.edits.is_empty() {
            return Vec::new();
        }
        std::iter::once(original.to_owned())
            .chain(
                self.edits[..self.edits.len() - 1]
                    .iter()
                    .map(|e| e.text.clone()),
            )
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// Applies `refs` to `target`. `hidden_sender` says whose reactions are not shown (blocked
/// accounts).
pub fn resolve(
    target: &Target<'_>,
    refs: &[RefRow],
    hidden_sender: &dyn Fn(&str) -> bool,
) -> Resolved {
    let mut refs: Vec<&RefRow> = refs
        .iter()
        .filter(|r| r.group_id == target.group_id && r.at >= target.at)
        .collect();
    // Server order: acceptance time, then the group's sequence (ours not yet accepted last),
    // then the id, so that equal times still give one order everywhere.
    refs.sort_by(|a, b| {
        (a.at, a.group_seq.unwrap_or(u64::MAX), &a.id).cmp(&(
            b.at,
            b.group_seq.unwrap_or(u64::MAX),
            &b.id,
        ))
    });
    let deleted = refs
        .iter()
        .find(|r| {
            r.kind == RefKind::Delete
                && (r.sender == target.sender || r.by_admin)
                && r.at - target.at <= DELETE_WINDOW_MS
        })
        .map(|r| accepted(r));
    let edits: Vec<Accepted> = refs
        .iter()
        .filter(|r| {
            r.kind == RefKind::Edit
                && r.sender == target.sender
                && r.at - target.at <= EDIT_WINDOW_MS
                && deleted.as_ref().is_none_or(|d| r.at <= d.at)
        })
        .take(MAX_EDITS)
        .map(|r| accepted(r))
        .collect();
    let mut reactions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if deleted.is_none() {
        let mut per_account: BTreeMap<&str, usize> = BTreeMap::new();
        for r in refs.iter().filter(|r| r.kind == RefKind::Reaction) {
            if hidden_sender(&r.sender) || r.text.is_empty() {
                continue;
            }
            let users = reactions.entry(r.text.clone()).or_default();
            let present = users.iter().position(|u| *u == r.sender);
            match (r.remove, present) {
                (true, Some(index)) => {
                    users.remove(index);
                    *per_account.entry(&r.sender).or_default() -= 1;
                }
                (false, None) => {
                    let count = per_account.entry(&r.sender).or_default();
                    if *count < MAX_REACTIONS_PER_ACCOUNT {
                        *count += 1;
                        users.push(r.sender.clone());
                    }
                }
                _ => {}
            }
        }
        reactions.retain(|_, users| !users.is_empty());
    }
    let text = match (&deleted, edits.last()) {
        (Some(_), _) => String::new(),
        (None, Some(edit)) => edit.text.clone(),
        (None, None) => target.text.to_owned(),
    };
    Resolved {
        text,
        edits,
        deleted,
        reactions,
    }
}

/// A stored message with what refers to it applied.
pub(crate) fn resolve_stored(
    conn: &Connection,
    id: &[u8],
    group_id: &[u8],
    sender: &str,
    text: &str,
) -> Result<Resolved, ClientError> {
    let refs = db::refs_to(conn, id)?;
    if refs.is_empty() {
        return Ok(Resolved {
            text: text.to_owned(),
            edits: Vec::new(),
            deleted: None,
            reactions: Default::default(),
        });
    }
    let at = db::acceptance_time(conn, id)?.unwrap_or(0);
    let target = Target {
        group_id,
        sender,
        at,
        text,
    };
    let blocked = |user: &str| db::is_blocked(conn, user).unwrap_or(false);
    Ok(resolve(&target, &refs, &blocked))
}

/// Forgets what stayed kept only to be reportable once its window is over (replaced versions
/// and deleted texts, [`KEEP_REPLACED_MS`]), in one transaction. Returns how many messages
/// lost texts.
pub(crate) fn purge_replaced(conn: &Connection, now: i64) -> Result<usize, ClientError> {
    let tx = conn.unchecked_transaction()?;
    let mut purged = 0;
    for target in db::purge_candidates(&tx, now - KEEP_REPLACED_MS)? {
        let Some(row) = db::message(&tx, &target)? else {
            continue;
        };
        let resolved = resolve_stored(&tx, &row.id, &row.group_id, &row.sender, &row.text)?;
        let ids = texts_to_purge(&row.id, &resolved, now);
        if !ids.is_empty() {
            db::purge_texts(&tx, &ids)?;
            purged += 1;
        }
        db::mark_purged(&tx, &target, now - KEEP_REPLACED_MS)?;
    }
    tx.commit()?;
    if purged > 0 {
        // The forgotten texts are still in the write-ahead log's earlier frames until a
        // checkpoint; `secure_delete` then overwrites what the rows left behind.
        db::checkpoint(conn)?;
    }
    Ok(purged)
}

fn accepted(r: &RefRow) -> Accepted {
    Accepted {
        id: r.id.clone(),
        sender: r.sender.clone(),
        at: r.at,
        text: r.text.clone(),
    }
}

/// What a purge at `now` forgets of a resolved message: the texts whose window to stay
/// reportable is over. A deleted message loses its text and every version a week after the
/// delete; an edited one loses each version a week after the edit that replaced it.
pub fn texts_to_purge(target_id: &[u8], resolved: &Resolved, now: i64) -> Vec<Vec<u8>> {
    let over = |at: i64| now - at > KEEP_REPLACED_MS;
    if let Some(delete) = &resolved.deleted {
        if over(delete.at) {
            return std::iter::once(target_id.to_vec())
                .chain(resolved.edits.iter().map(|e| e.id.clone()))
                .collect();
        }
        return Vec::new();
    }
    // Version i (0 = the original) was replaced by edit i.
    let mut ids = Vec::new();
    for (index, edit) in resolved.edits.iter().enumerate() {
        if over(edit.at) {
            ids.push(if index == 0 {
                target_id.to_vec()
            } else {
                resolved.edits[index - 1].id.clone()
            });
        }
    }
    ids
}

impl crate::client::Client {
    /// Forgets the messages whose disappearing time came (with what refers to them and the
    /// local copies of their files' ciphertext), then checkpoints so that their bytes leave
    /// the write-ahead log too. Returns how many went.
    pub(crate) fn forget_expired(&self) -> Result<usize, ClientError> {
        let conn = self.db();
        let gone = db::purge_expired(&conn, db::now_ms())?;
        if gone.is_empty() {
            return Ok(0);
        }
        db::checkpoint(&conn)?;
        let _ = self.live.changed.send(());
        let files = self.home.join("files");
        for payload in &gone {
            for attachment in crate::attachments::attachments_of(payload) {
                let hash = hex::encode(&attachment.ciphertext_sha256);
                // A download under way or an upload we made: neither is needed any more.
                let _ =
                    crate::platform::remove_file(&files.join(format!("incoming-{hash}.sealed")));
            }
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;
    const GROUP: &[u8] = b"group";

    fn r(id: u8, kind: RefKind, sender: &str, at: i64, text: &str) -> RefRow {
        RefRow {
            id: vec![id],
            kind,
            text: text.into(),
            remove: false,
            by_admin: false,
            group_id: GROUP.to_vec(),
            sender: sender.into(),
            at,
            group_seq: Some(at as u64),
        }
    }

    fn target() -> Target<'static> {
        Target {
            group_id: GROUP,
            sender: "alice",
            at: 1000,
            text: "original",
        }
    }

    fn shown() -> impl Fn(&str) -> bool {
        |_| false
    }

    #[test]
    fn an_edit_by_the_sender_replaces_the_text_and_keeps_the_versions() {
        let refs = [
            r(1, RefKind::Edit, "alice", 2000, "second"),
            r(2, RefKind::Edit, "alice", 3000, "third"),
        ];
        let resolved = resolve(&target(), &refs, &shown());
        assert_eq!(resolved.text, "third");
        assert_eq!(resolved.versions("original"), ["original", "second"]);
    }

    #[test]
    fn edits_by_anyone_else_are_refused() {
        let refs = [r(1, RefKind::Edit, "mallory", 2000, "forged")];
        let resolved = resolve(&target(), &refs, &shown());
        assert_eq!(resolved.text, "original");
        assert!(resolved.edits.is_empty());
    }

    #[test]
    fn an_eleventh_edit_and_a_late_edit_are_refused() {
        let mut refs: Vec<RefRow> = (1..=11)
            .map(|i| r(i, RefKind::Edit, "alice", 1000 + i as i64, &format!("v{i}")))
            .collect();
        let resolved = resolve(&target(), &refs, &shown());
        assert_eq!(resolved.edits.len(), MAX_EDITS);
        assert_eq!(resolved.text, "v10");

        refs.truncate(2);
        refs.push(r(
            20,
            RefKind::Edit,
            "alice",
            1000 + EDIT_WINDOW_MS + 1,
            "late",
        ));
        assert_eq!(resolve(&target(), &refs, &shown()).text, "v2");
    }

    #[test]
    fn a_delete_by_the_sender_or_an_admin_counts_and_by_others_not() {
        let by_other = [r(1, RefKind::Delete, "mallory", 2000, "")];
        assert!(resolve(&target(), &by_other, &shown()).deleted.is_none());

        let mut by_admin = r(1, RefKind::Delete, "carol", 2000, "");
        by_admin.by_admin = true;
        let resolved = resolve(&target(), &[by_admin], &shown());
        assert_eq!(resolved.deleted.map(|d| d.sender).as_deref(), Some("carol"));
        assert_eq!(resolved.text, "");

        let late = [r(
            1,
            RefKind::Delete,
            "alice",
            1000 + DELETE_WINDOW_MS + 1,
            "",
        )];
        assert!(resolve(&target(), &late, &shown()).deleted.is_none());
    }

    #[test]
    fn a_deleted_message_shows_neither_text_nor_reactions() {
        let refs = [
            r(1, RefKind::Reaction, "bob", 1500, "👍"),
            r(2, RefKind::Delete, "alice", 2000, ""),
        ];
        let resolved = resolve(&target(), &refs, &shown());
        assert_eq!(resolved.text, "");
        assert!(resolved.reactions.is_empty());
    }

    #[test]
    fn reactions_count_once_per_account_and_emoji_and_can_be_taken_back() {
        let mut unreact = r(4, RefKind::Reaction, "bob", 4000, "👍");
        unreact.remove = true;
        let refs = [
            r(1, RefKind::Reaction, "bob", 2000, "👍"),
            r(2, RefKind::Reaction, "bob", 2500, "👍"),
            r(3, RefKind::Reaction, "carol", 3000, "👍"),
            unreact,
            r(5, RefKind::Reaction, "carol", 5000, "🎉"),
        ];
        let resolved = resolve(&target(), &refs, &shown());
        assert_eq!(
            resolved.reactions.get("👍"),
            Some(&vec!["carol".to_owned()])
        );
        assert_eq!(
            resolved.reactions.get("🎉"),
            Some(&vec!["carol".to_owned()])
        );
        let hide_carol = |u: &str| u == "carol";
        assert!(resolve(&target(), &refs, &hide_carol).reactions.is_empty());
    }

    #[test]
    fn any_arrival_order_ends_in_the_same_state() {
        let mut unreact = r(5, RefKind::Reaction, "bob", 5000, "👍");
        unreact.remove = true;
        let refs = vec![
            r(1, RefKind::Edit, "alice", 2000, "two"),
            r(2, RefKind::Reaction, "bob", 2500, "👍"),
            r(3, RefKind::Edit, "alice", 3000, "three"),
            r(4, RefKind::Reaction, "carol", 3500, "👍"),
            unreact,
        ];
        let expected = resolve(&target(), &refs, &shown());
        let mut reversed = refs.clone();
        reversed.reverse();
        assert_eq!(resolve(&target(), &reversed, &shown()), expected);
        let mut rotated = refs.clone();
        rotated.rotate_left(2);
        assert_eq!(resolve(&target(), &rotated, &shown()), expected);
        assert_eq!(expected.text, "three");
    }

    #[test]
    fn a_week_after_an_edit_the_version_it_replaced_is_purged() {
        let refs = [
            r(1, RefKind::Edit, "alice", 2000, "two"),
            r(2, RefKind::Edit, "alice", 2000 + 20 * HOUR, "three"),
        ];
        let resolved = resolve(&target(), &refs, &shown());
        let now = 2000 + KEEP_REPLACED_MS + HOUR;
        assert_eq!(texts_to_purge(b"t", &resolved, now), vec![b"t".to_vec()]);
        let later = 2000 + 20 * HOUR + KEEP_REPLACED_MS + HOUR;
        assert_eq!(
            texts_to_purge(b"t", &resolved, later),
            vec![b"t".to_vec(), vec![1]]
        );
    }

    fn stored(conn: &Connection, id: u8, text: &str, payload: Vec<u8>, at: i64) {
        let row = db::MessageRow {
            id: vec![id; 16],
            group_id: GROUP.to_vec(),
            sender: "alice".into(),
            sender_device: vec![1; 16],
            text: text.into(),
            sent_at: at,
            received_at: at,
            group_seq: Some(id as u64),
            status: db::MessageStatus::Received,
            payload: payload.clone(),
            aad: Vec::new(),
            hidden: id != 1,
            notice: None,
            history: false,
        };
        db::insert_message(conn, &row).unwrap();
        db::index_references(conn, &row.id, &payload, false).unwrap();
    }

    fn payload(body: parley_protocol::v1::app_payload::Body) -> Vec<u8> {
        use prost::Message as _;
        parley_protocol::v1::AppPayload {
            body: Some(body),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_purge_forgets_replaced_texts_in_the_database_file_itself() {
        use parley_protocol::v1::{app_payload::Body, EditBody, TextBody};
        let home = tempfile::tempdir().unwrap();
        let conn = db::open(home.path()).unwrap();
        let original = "the-original-wording-marker";
        stored(
            &conn,
            1,
            original,
            payload(Body::Text(TextBody {
                text: original.into(),
                ..Default::default()
            })),
            1000,
        );
        let edit = |text: &str| {
            payload(Body::Edit(EditBody {
                target: vec![1; 16],
                text: text.into(),
            }))
        };
        stored(&conn, 2, "", edit("second-wording-marker"), 2000);
        let resolve =
            |conn: &Connection| resolve_stored(conn, &[1; 16], GROUP, "alice", original).unwrap();
        assert_eq!(resolve(&conn).versions(original), [original]);

        // Within the week, nothing goes; after it, the replaced original does.
        assert_eq!(purge_replaced(&conn, 2000 + KEEP_REPLACED_MS).unwrap(), 0);
        assert_eq!(
            purge_replaced(&conn, 2000 + KEEP_REPLACED_MS + 1).unwrap(),
            1
        );
        let row = db::message(&conn, &[1; 16]).unwrap().unwrap();
        assert!(row.text.is_empty() && row.payload.is_empty());
        let resolved = resolve_stored(&conn, &[1; 16], GROUP, "alice", "").unwrap();
        assert_eq!(resolved.text, "second-wording-marker");
        assert!(resolved.versions("").is_empty());
        assert_eq!(purge_replaced(&conn, 3000 + KEEP_REPLACED_MS).unwrap(), 0);

        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(home.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
        }
        let found = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            !found(original),
            "the purged text is still in the database files"
        );
        assert!(found("second-wording-marker"));
    }

    #[test]
    fn a_week_after_a_delete_every_version_is_purged() {
        let refs = [
            r(1, RefKind::Edit, "alice", 2000, "two"),
            r(2, RefKind::Delete, "alice", 3000, ""),
        ];
        let resolved = resolve(&target(), &refs, &shown());
        assert!(texts_to_purge(b"t", &resolved, 3000 + HOUR).is_empty());
        assert_eq!(
            texts_to_purge(b"t", &resolved, 3000 + KEEP_REPLACED_MS + 1),
            vec![b"t".to_vec(), vec![1]]
        );
    }
}
