//! The ciphersuite and leaf capabilities of every Parley group.
//!
//! The default is the post-quantum hybrid (X-Wing: ML-KEM-768 + X25519, AES-128-GCM, SHA-256,
//! Ed25519). ARCHITECTURE.md records the measurements behind that choice; the classic X25519
//! suite stays supported so that the benchmark can compare the two.

use openmls::prelude::{Capabilities, Ciphersuite, CredentialType, ExtensionType};

pub const HYBRID_PQ: Ciphersuite = Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519;
pub const CLASSIC_X25519: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The suite new groups and KeyPackages use.
pub const DEFAULT_CIPHERSUITE: Ciphersuite = HYBRID_PQ;

/// Private-use GroupContext extension that carries [`crate::roles::Roles`].
pub const ROLES_EXTENSION_TYPE: u16 = 0xF0A1;

/// Capabilities every Parley leaf advertises: our roles extension, basic credentials, the
/// suites we speak.
pub fn leaf_capabilities(ciphersuite: Ciphersuite) -> Capabilities {
    Capabilities::new(
        None,
        Some(&[ciphersuite]),
        Some(&[
            ExtensionType::Unknown(ROLES_EXTENSION_TYPE),
            ExtensionType::LastResort,
        ]),
        None,
        Some(&[CredentialType::Basic]),
    )
}

/// The GroupContext extensions of a new group: its roles, the capabilities every member must
/// have (our roles extension, so that the roles can later change by commit), and the server as
/// external sender.
pub fn group_context_extensions(
    roles: &crate::Roles,
    server: Option<openmls::prelude::ExternalSender>,
) -> Result<
    openmls::prelude::Extensions<openmls::prelude::GroupContext>,
    openmls::prelude::InvalidExtensionError,
> {
    use openmls::prelude::{Extension, Extensions, RequiredCapabilitiesExtension};
    let mut extensions = vec![
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::Unknown(ROLES_EXTENSION_TYPE)],
            &[],
            &[CredentialType::Basic],
        )),
        roles.to_extension(),
    ];
    // The server, as external sender 0, may propose removals (moderation).
    if let Some(server) = server {
        extensions.push(Extension::ExternalSenders(vec![server]));
    }
    Extensions::from_vec(extensions)
}
