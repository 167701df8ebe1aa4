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

#[cfg(test)]
mod tests {
    use super::*;

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
