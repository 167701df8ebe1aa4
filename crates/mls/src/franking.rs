//! The sender's half of message franking (shared/design/franking.md): a commitment to the
//! application payload that travels in the MLS authenticated data.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SALT_LEN: usize = 16;
pub const TAG_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// `HMAC-SHA256(key = salt, payload)`.
pub fn franking_tag(salt: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC accepts any key length");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Checks a tag in constant time.
pub fn verify_franking_tag(salt: &[u8], payload: &[u8], tag: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC accepts any key length");
    mac.update(payload);
    mac.verify_slice(tag).is_ok()
}

/// What the server binds a franking tag to: who sent it, where, when, and under which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrankContext<'a> {
    pub sender_username: &'a str,
    pub sender_device: &'a [u8],
    pub group_id: &'a [u8],
    pub group_seq: u64,
    pub accepted_at_ms: i64,
    pub key_id: u32,
}

impl FrankContext<'_> {
    /// A canonical, unambiguous encoding: a label, then each field length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"parley/v1/frank\0".to_vec();
        for field in [
            self.sender_username.as_bytes(),
            self.sender_device,
            self.group_id,
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.group_seq.to_be_bytes());
        out.extend_from_slice(&self.accepted_at_ms.to_be_bytes());
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out
    }
}

/// `frank = HMAC-SHA256(server key, tag || encode(ctx))`, computed by the server when it accepts
/// an application message.
pub fn frank(server_key: &[u8], tag: &[u8], context: &FrankContext<'_>) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new_from_slice(server_key).expect("HMAC accepts any key length");
    mac.update(tag);
    mac.update(&context.encode());
    mac.finalize().into_bytes().into()
}

/// Checks a frank in constant time.
pub fn verify_frank(
    server_key: &[u8],
    tag: &[u8],
    context: &FrankContext<'_>,
    frank: &[u8],
) -> bool {
    let mut mac = HmacSha256::new_from_slice(server_key).expect("HMAC accepts any key length");
    mac.update(tag);
    mac.update(&context.encode());
    mac.verify_slice(frank).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(group_seq: u64) -> FrankContext<'static> {
        FrankContext {
            sender_username: "alice",
            sender_device: &[1; 16],
            group_id: &[2; 16],
            group_seq,
            accepted_at_ms: 1_700_000_000_000,
            key_id: 1,
        }
    }

    #[test]
    fn a_frank_binds_tag_and_context_under_the_server_key() {
        let tag = franking_tag(b"0123456789abcdef", b"hello");
        let f = frank(b"server key", &tag, &context(5));
        assert!(verify_frank(b"server key", &tag, &context(5), &f));
        assert!(
            !verify_frank(b"server key", &tag, &context(6), &f),
            "another message's context"
        );
        assert!(!verify_frank(b"other key", &tag, &context(5), &f));
        let other_tag = franking_tag(b"0123456789abcdef", b"hellO");
        assert!(!verify_frank(b"server key", &other_tag, &context(5), &f));
    }

    #[test]
    fn the_context_encoding_is_unambiguous() {
        let a = FrankContext {
            sender_username: "ab",
            sender_device: b"c",
            ..context(1)
        };
        let b = FrankContext {
            sender_username: "a",
            sender_device: b"bc",
            ..context(1)
        };
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn a_tag_verifies_only_for_its_payload_and_salt() {
        let tag = franking_tag(b"0123456789abcdef", b"hello");
        assert!(verify_franking_tag(b"0123456789abcdef", b"hello", &tag));
        assert!(!verify_franking_tag(b"0123456789abcdef", b"hellO", &tag));
        assert!(!verify_franking_tag(b"0123456789abcdeF", b"hello", &tag));
        assert!(!verify_franking_tag(
            b"0123456789abcdef",
            b"hello",
            &tag[..31]
        ));
    }
}
