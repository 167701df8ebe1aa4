//! The link code a new device shows: the link's id (which the server knows) and a 128-bit
//! secret (which it never sees), in Crockford base32 groups of four that a person can type.
//! Reading is forgiving: any case, dashes or spaces anywhere, O read as 0, I and L as 1.

use crate::error::ClientError;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
pub(crate) const LINK_ID_LEN: usize = 8;
pub(crate) const SECRET_LEN: usize = 16;
const CODE_BYTES: usize = LINK_ID_LEN + SECRET_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode {
    pub link_id: [u8; LINK_ID_LEN],
    pub secret: [u8; SECRET_LEN],
}

/// Crockford base32 of `bytes`, in groups of `group` characters joined by dashes.
pub(crate) fn base32_groups(bytes: &[u8], group: usize) -> String {
    let mut chars = Vec::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            chars.push(ALPHABET[((buffer >> bits) & 31) as usize]);
        }
    }
    if bits > 0 {
        chars.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize]);
    }
    chars
        .chunks(group)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Reads Crockford base32 of exactly `len` bytes, forgivingly (any case, dashes and spaces
/// anywhere, O as 0, I and L as 1); `None` for anything else.
pub(crate) fn parse_base32(text: &str, len: usize) -> Option<Vec<u8>> {
    let mut values = Vec::with_capacity((len * 8).div_ceil(5));
    for c in text.chars().filter(|c| *c != '-' && !c.is_whitespace()) {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        let value = ALPHABET.iter().position(|a| char::from(*a) == c)?;
        values.push(value as u32);
    }
    if values.len() != (len * 8).div_ceil(5) {
        return None;
    }
    let mut bytes = Vec::with_capacity(len);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for value in values {
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
    }
    // The padding bits of the last character are zero in text we made.
    (buffer & ((1 << bits) - 1) == 0 && bytes.len() == len).then_some(bytes)
}

impl LinkCode {
    pub fn encode(&self) -> String {
        base32_groups(&[&self.link_id[..], &self.secret[..]].concat(), 4)
    }

    pub fn parse(text: &str) -> Result<LinkCode, ClientError> {
        let invalid = || {
            ClientError::Invalid(
                "that is not a link code: copy the code `parley link` shows, all of it".into(),
            )
        };
        let bytes = parse_base32(text, CODE_BYTES).ok_or_else(invalid)?;
        let (link_id, secret) = bytes.split_at(LINK_ID_LEN);
        Ok(LinkCode {
            link_id: link_id.try_into().map_err(|_| invalid())?,
            secret: secret.try_into().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        let code = LinkCode {
            link_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            secret: [0xfe; 16],
        };
        let text = code.encode();
        // 192 bits in 5-bit characters.
        assert_eq!(text.replace('-', "").len(), (CODE_BYTES * 8).div_ceil(5));
        assert_eq!(LinkCode::parse(&text).unwrap(), code);
        let sloppy = text.to_lowercase().replace('-', " ").replace('0', "o");
        assert_eq!(LinkCode::parse(&sloppy).unwrap(), code);
        for bad in [
            "",
            "ABCD",
            &text[..text.len() - 1],
            &format!("{text}0"),
            "U000-0000",
        ] {
            assert!(LinkCode::parse(bad).is_err(), "{bad}");
        }
        let random = LinkCode {
            link_id: rand::random(),
            secret: rand::random(),
        };
        assert_eq!(LinkCode::parse(&random.encode()).unwrap(), random);
    }
}
