//! Parley's MLS conventions, shared by the client and the server so that both apply the same
//! rules to the same bytes:
//!
//! - [`identity`]: what a member's credential says (username, device id, and the account key
//!   that certifies the device), and [`CertifiedDevice::verify`], the one check a leaf passes
//!   before anyone accepts it;
//! - [`suite`]: the ciphersuite and capabilities every Parley leaf advertises;
//! - [`roles`]: group roles in a GroupContext extension, and [`roles::authorize_commit`], the one
//!   function that decides whether a commit is allowed (clients and server both call it);
//! - [`franking`]: the franking tag that binds an application payload to its ciphertext;
//! - [`certificate`]: an account's key and the certificates it gives its devices;
//! - [`revocation`]: the account key's statement that a device is no longer the account's;
//! - [`rotation`]: the statement, signed by both, that an account's key moved to a new one.
#![forbid(unsafe_code)]

pub mod certificate;
pub mod franking;
pub mod identity;
pub mod recovery;
pub mod revocation;
pub mod roles;
pub mod rotation;
pub mod suite;

pub use identity::{certified_credential, CertifiedDevice, DeviceIdentity, IdentityError};
pub use roles::{authorize_commit, introduced_leaves, rotations_in_aad, PolicyError, Roles};
