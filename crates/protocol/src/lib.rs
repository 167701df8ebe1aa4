//! Parley's wire format, version 1.
//!
//! Every HTTP body and WebSocket frame between a Parley client and server is one of the protobuf
//! messages in [`v1`], encoded with `prost`. `proto/parley_v1.proto` in this crate is the same
//! schema in `.proto` form, so that another language can implement the protocol.
//!
//! Architecture invariant: only this crate knows the wire format. Other crates build and read
//! these types; none of them encodes bytes by hand.
#![forbid(unsafe_code)]

pub mod error;
pub mod ids;
pub mod limits;
pub mod names;
pub mod v1;

pub use error::{ErrorCode, WireError};
pub use ids::{DeviceId, GroupId, IdError, MessageId, UserId};
pub use names::{Username, UsernameError};

/// Media type of every protobuf body of protocol version 1.
pub const CONTENT_TYPE: &str = "application/x-parley-v1+protobuf";

/// Decodes a protobuf message, bounded by `max_len` bytes, with an error that names the type.
pub fn decode<M: prost::Message + Default>(bytes: &[u8], max_len: usize) -> Result<M, WireError> {
    if bytes.len() > max_len {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "frame of {} bytes exceeds the limit of {max_len}",
                bytes.len()
            ),
        ));
    }
    M::decode(bytes).map_err(|e| {
        WireError::new(
            ErrorCode::Malformed,
            format!(
                "malformed {}: {e}",
                std::any::type_name::<M>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ),
        )
    })
}

/// Like [`decode`], but first counts the message's top-level fields without decoding anything
/// and refuses more than `max_fields`: a body of empty repeated entries (two bytes each on the
/// wire, a hundred or more in memory) cannot amplify into a huge structure.
pub fn decode_bounded<M: prost::Message + Default>(
    bytes: &[u8],
    max_len: usize,
    max_fields: usize,
) -> Result<M, WireError> {
    if bytes.len() > max_len {
        return decode(bytes, max_len);
    }
    let fields = count_fields(bytes, max_fields).ok_or_else(|| {
        WireError::new(
            ErrorCode::Malformed,
            format!(
                "malformed {}: not protobuf",
                std::any::type_name::<M>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ),
        )
    })?;
    if fields > max_fields {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("more than {max_fields} fields in one message"),
        ));
    }
    decode(bytes, max_len)
}

/// The number of top-level fields in a protobuf encoding, counting at most `max + 1`; `None`
/// when it does not parse as proto3.
fn count_fields(mut bytes: &[u8], max: usize) -> Option<usize> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut count = 0;
    while !bytes.is_empty() && count <= max {
        let key = varint(&mut bytes)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut bytes)?).ok()?,
            5 => 4,
            // Groups (3, 4) are not proto3, and no message here has one; but prost skips a
            // group of an unknown field and decodes on, so counting stopped here would let
            // any number of fields after it through. 6 and 7 are no wire type at all.
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
        count += 1;
    }
    Some(count)
}

/// Encodes a protobuf message.
pub fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn top_level_fields_are_counted_without_decoding() {
        let claim = v1::ClaimKeyPackages {
            usernames: vec!["alice".into(); 5],
        };
        let bytes = encode(&claim);
        assert_eq!(count_fields(&bytes, 100), Some(5));
        assert!(decode_bounded::<v1::ClaimKeyPackages>(&bytes, 1 << 20, 5).is_ok());
        let err = decode_bounded::<v1::ClaimKeyPackages>(&bytes, 1 << 20, 4).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        // Empty entries, two bytes each.
        let empties = [0x1a, 0x00].repeat(1000);
        assert!(decode_bounded::<v1::ReportRequest>(&empties, 1 << 20, 22).is_err());
        // Truncated input is left to the decoder's error.
        assert!(decode_bounded::<v1::ClaimKeyPackages>(&[0x0a, 0x05, b'a'], 100, 10).is_err());
    }

    /// Found by the fuzz target `decode_bounded`: the count stopped at a group, and prost skips
    /// a group of an unknown field, so the empty entries after one were decoded uncounted.
    #[test]
    fn a_group_does_not_hide_the_fields_after_it() {
        // Field 15 as an empty group, then 1,000 empty `context` entries.
        let mut body = vec![0x7b, 0x7c];
        body.extend([0x1a, 0x00].repeat(1000));
        let err = decode_bounded::<v1::ReportRequest>(&body, 1 << 20, 24).unwrap_err();
        assert_eq!(err.code, ErrorCode::Malformed);
        assert_eq!(err.message, "malformed ReportRequest: not protobuf");
        // Ahead of the limit too, and whatever the group holds.
        let within = [0x08, 0x01, 0x5b, 0x08, 0x09, 0x5c];
        assert!(decode_bounded::<v1::Ack>(&within, 100, 64).is_err());
        // Not a wire type at all.
        assert!(decode_bounded::<v1::Ack>(&[0x0e], 100, 64).is_err());
        assert!(decode_bounded::<v1::Ack>(&[0x08, 0x01], 100, 64).is_ok());
    }
}
