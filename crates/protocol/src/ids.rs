//! Opaque identifiers. Each is 16 random bytes, shown as 32 lowercase hex digits.
//!
//! Parsing from the wire checks the length once, so code that holds a `DeviceId` never
//! re-checks it ("parse, don't validate").

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {len} bytes, got {got}")]
pub struct IdError {
    pub kind: &'static str,
    pub len: usize,
    pub got: usize,
}

macro_rules! opaque_id {
    ($name:ident, $len:expr, $label:expr) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            pub const fn from_const(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| IdError {
                    kind: $label,
                    len: $len,
                    got: bytes.len(),
                })?;
                Ok($name(array))
            }

            pub fn parse_hex(text: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(text).map_err(|_| IdError {
                    kind: $label,
                    len: $len,
                    got: text.len() / 2,
                })?;
                Self::from_slice(&bytes)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

opaque_id!(UserId, 16, "user id");
opaque_id!(DeviceId, 16, "device id");
opaque_id!(GroupId, 16, "group id");
opaque_id!(MessageId, 16, "message id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_reject_wrong_lengths() {
        let id = DeviceId::from_bytes([7; 16]);
        assert_eq!(DeviceId::parse_hex(&id.to_hex()).unwrap(), id);
        assert!(DeviceId::from_slice(&[1, 2, 3]).is_err());
        assert!(MessageId::parse_hex("zz").is_err());
    }
}
