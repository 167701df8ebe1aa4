//! Splitting ejabberd's byte stream into stanzas, and building the few stanzas the load sends.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lex {
    Text,
    Open,
    Tag,
    Quote(u8),
    Skip,
}

pub(crate) enum Event {
    Header,
    Stanza(Range<usize>),
    End,
}

/// Splits the inbound byte stream into top-level stanzas, resuming where the last read ended.
/// Tracks only tag depth (quotes respected); enough for what ejabberd sends (no CDATA, no
/// comments).
pub(crate) struct Scanner {
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
    /// Bytes before this index belong to events already returned.
    pub(crate) done: usize,
    pub(crate) depth: u32,
    pub(crate) lex: Lex,
    pub(crate) tag_start: usize,
    pub(crate) stanza_start: usize,
    pub(crate) closing: bool,
    pub(crate) slash: bool,
}

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            buf: Vec::with_capacity(READ_RESERVE),
            pos: 0,
            done: 0,
            depth: 0,
            lex: Lex::Text,
            tag_start: 0,
            stanza_start: 0,
            closing: false,
            slash: false,
        }
    }

    pub(crate) fn next(&mut self) -> Option<Event> {
        while self.pos < self.buf.len() {
            let i = self.pos;
            match self.lex {
                Lex::Text => match self.buf[i..].iter().position(|&b| b == b'<') {
                    Some(off) => {
                        self.tag_start = i + off;
                        self.pos = i + off + 1;
                        self.lex = Lex::Open;
                    }
                    None => self.pos = self.buf.len(),
                },
                Lex::Open => {
                    self.pos += 1;
                    self.slash = false;
                    match self.buf[i] {
                        b'/' => {
                            self.closing = true;
                            self.lex = Lex::Tag;
                        }
                        b'?' | b'!' => self.lex = Lex::Skip,
                        _ => {
                            self.closing = false;
                            self.lex = Lex::Tag;
                        }
                    }
                }
                Lex::Quote(q) => match self.buf[i..].iter().position(|&b| b == q) {
                    Some(off) => {
                        self.pos = i + off + 1;
                        self.lex = Lex::Tag;
                        self.slash = false;
                    }
                    None => self.pos = self.buf.len(),
                },
                Lex::Skip => {
                    self.pos += 1;
                    if self.buf[i] == b'>' {
                        self.lex = Lex::Text;
                        if self.depth <= 1 {
                            self.done = i + 1;
                        }
                    }
                }
                Lex::Tag => {
                    self.pos += 1;
                    let b = self.buf[i];
                    match b {
                        b'"' | b'\'' => self.lex = Lex::Quote(b),
                        b'>' => {
                            self.lex = Lex::Text;
                            if let Some(event) = self.tag_end(i) {
                                return Some(event);
                            }
                        }
                        _ => {}
                    }
                    self.slash = b == b'/';
                }
            }
        }
        None
    }

    /// A tag ended at `i` (its '>').
    pub(crate) fn tag_end(&mut self, i: usize) -> Option<Event> {
        let end = i + 1;
        if self.closing {
            self.depth = self.depth.saturating_sub(1);
            return match self.depth {
                0 => {
                    self.done = end;
                    Some(Event::End)
                }
                1 => {
                    self.done = end;
                    Some(Event::Stanza(self.stanza_start..end))
                }
                _ => None,
            };
        }
        if self.slash {
            if self.depth == 1 {
                self.done = end;
                return Some(Event::Stanza(self.tag_start..end));
            }
            return None;
        }
        // A stream restart (after SASL) sends a new header inside the old stream.
        if self.depth == 0
            || (self.depth == 1 && self.buf[self.tag_start..].starts_with(b"<stream:stream"))
        {
            self.depth = 1;
            self.done = end;
            return Some(Event::Header);
        }
        if self.depth == 1 {
            self.stanza_start = self.tag_start;
        }
        self.depth += 1;
        None
    }

    /// Drops the bytes of returned events before the next read (the rest is one partial stanza).
    pub(crate) fn compact(&mut self) {
        let keep = if self.lex == Lex::Text && self.depth <= 1 {
            self.pos
        } else {
            self.done
        };
        if keep == 0 {
            return;
        }
        self.buf.drain(..keep);
        self.pos -= keep;
        self.done = self.done.saturating_sub(keep);
        self.tag_start = self.tag_start.saturating_sub(keep);
        self.stanza_start = self.stanza_start.saturating_sub(keep);
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut from = 0;
    while let Some(off) = hay[from..=hay.len() - needle.len()]
        .iter()
        .position(|&b| b == first)
    {
        let at = from + off;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether a stanza's element name is `name`.
pub(crate) fn tag_is(stanza: &[u8], name: &[u8]) -> bool {
    stanza.len() > name.len() + 1
        && stanza[0] == b'<'
        && stanza[1..].starts_with(name)
        && matches!(
            stanza[name.len() + 1],
            b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r'
        )
}

/// The value of an attribute of the stanza's opening tag.
pub(crate) fn attr<'a>(stanza: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = &stanza[..stanza.iter().position(|&b| b == b'>')?];
    let mut from = 0;
    while let Some(off) = find(&head[from..], name) {
        let at = from + off;
        let end = at + name.len();
        if at > 0 && head[at - 1].is_ascii_whitespace() && head.get(end) == Some(&b'=') {
            let quote = *head.get(end + 1)?;
            if quote == b'\'' || quote == b'"' {
                let value = &head[end + 2..];
                return Some(&value[..value.iter().position(|&b| b == quote)?]);
            }
        }
        from = end;
    }
    None
}

pub(crate) fn is_iq_reply(stanza: &[u8], id: &[u8]) -> Option<bool> {
    if !tag_is(stanza, b"iq") || attr(stanza, b"id") != Some(id) {
        return None;
    }
    Some(attr(stanza, b"type") == Some(b"result"))
}

pub(crate) fn is_error(stanza: &[u8]) -> bool {
    attr(stanza, b"type") == Some(b"error")
}

pub(crate) fn text(stanza: &[u8]) -> String {
    String::from_utf8_lossy(&stanza[..stanza.len().min(600)]).into_owned()
}

/// Bodies start with a marker: kind letter, run number, '.', index, '.'.
pub(crate) fn marker(stanza: &[u8]) -> Option<(u8, u32, u64)> {
    if !tag_is(stanza, b"message") || is_error(stanza) {
        return None;
    }
    let body = &stanza[find(stanza, b"<body>")? + 6..];
    let kind = *body.first()?;
    let (run, rest) = number(&body[1..])?;
    let (index, _) = number(rest)?;
    Some((kind, u32::try_from(run).ok()?, index))
}

/// Leading decimal digits up to a '.', and what follows the '.'.
pub(crate) fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().position(|&b| b == b'.')?;
    if len == 0 || len > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in &s[..len] {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some((n, &s[len + 1..]))
}

pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a 200-byte body with its marker and closes the message.
pub(crate) fn push_body(out: &mut Vec<u8>, kind: u8, run: u32, index: u64) {
    out.extend_from_slice(b"<body>");
    let start = out.len();
    out.push(kind);
    push_u64(out, u64::from(run));
    out.push(b'.');
    push_u64(out, index);
    out.push(b'.');
    let used = out.len() - start;
    out.extend_from_slice(&PAD[..BODY_LEN.saturating_sub(used)]);
    out.extend_from_slice(b"</body></message>");
}

pub(crate) fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

pub(crate) fn user_name(n: usize) -> String {
    format!("u{n}")
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
