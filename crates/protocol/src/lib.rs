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

/// Encodes a protobuf message.
pub fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}
