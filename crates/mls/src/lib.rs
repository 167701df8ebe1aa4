//! Parley's MLS conventions, shared by the client and the server so that both apply the same
//! rules to the same bytes:
//!
//! - [`identity`]: what a member's credential says (username and device id);
//! - [`suite`]: the ciphersuite and capabilities every Parley leaf advertises;
//! - [`roles`]: group roles in a GroupContext extension, and [`roles::authorize_commit`], the one
//!   function that decides whether a commit is allowed (clients and server both call it);
//! - [`franking`]: the franking tag that binds an application payload to its ciphertext;
//! - [`certificate`]: an account's key and the certificates it gives its devices (multi-device;
//!   not yet carried in credentials).
#![forbid(unsafe_code)]

pub mod certificate;
pub mod franking;
pub mod identity;
pub mod roles;
pub mod suite;

pub use identity::{DeviceIdentity, IdentityError};
pub use roles::{authorize_commit, PolicyError, Roles};
