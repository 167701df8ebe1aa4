//! KeyPackages, both ways: generating and uploading this device's (and keeping the server's
//! pool of them topped up), and claiming and checking other users' before adding them.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use parley_protocol::{v1, Username};

use crate::client::Client;
use crate::error::{mls_error, ClientError};
use crate::provider::TxProvider;

/// KeyPackages uploaded at a time, and the level below which the pool is replenished.
pub(crate) const KEY_PACKAGE_BATCH: usize = 50;
const KEY_PACKAGE_LOW_WATER: u32 = 20;

impl Client {
    fn new_key_package(
        &self,
        provider: &TxProvider<'_>,
        last_resort: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let mut builder = KeyPackage::builder()
            .leaf_node_capabilities(parley_mls::suite::leaf_capabilities(self.ciphersuite));
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(self.ciphersuite, provider, &self.signer, self.credential())
            .map_err(mls_error)?;
        use openmls::prelude::tls_codec::Serialize as _;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(mls_error)
    }

    /// Generates and uploads `count` one-time KeyPackages (and a last-resort one if asked).
    /// The private keys are committed locally before the upload, so an upload that fails only
    /// leaves unused keys behind.
    pub async fn upload_key_packages(
        &self,
        count: usize,
        last_resort: bool,
    ) -> Result<v1::KeyPackageCount, ClientError> {
        let upload = {
            let conn = self.db();
            let tx = conn.unchecked_transaction()?;
            let provider = TxProvider::new(&self.crypto, &tx);
            let key_packages = (0..count)
                .map(|_| self.new_key_package(&provider, false))
                .collect::<Result<Vec<_>, _>>()?;
            let last_resort = if last_resort {
                Some(self.new_key_package(&provider, true)?)
            } else {
                None
            };
            tx.commit()?;
            v1::UploadKeyPackages {
                key_packages,
                last_resort,
            }
        };
        self.authed(|| self.api.post("/v1/keypackages", &upload, true))
            .await
    }

    /// Tops the server's pool of this device's KeyPackages up when it runs low.
    /// The server also says here when the account's key rotated: this device takes up the new
    /// key first, since KeyPackages under the old one are refused from then on.
    pub async fn replenish_key_packages(&self) -> Result<(), ClientError> {
        let mut count: v1::KeyPackageCount = self
            .authed(|| self.api.get("/v1/keypackages/count"))
            .await?;
        if count.rotation_waiting {
            if let Err(e) = self.adopt_rotation().await {
                tracing::warn!(error = %e, "taking up the account's new key failed");
                return Ok(());
            }
            count = self
                .authed(|| self.api.get("/v1/keypackages/count"))
                .await?;
        }
        if count.one_time_remaining < KEY_PACKAGE_LOW_WATER || !count.has_last_resort {
            self.upload_key_packages(KEY_PACKAGE_BATCH, !count.has_last_resort)
                .await?;
        }
        Ok(())
    }

    /// Claims one KeyPackage per device of each user and checks each one.
    pub(crate) async fn claim_key_packages(
        &self,
        users: &[Username],
    ) -> Result<Vec<KeyPackage>, ClientError> {
        let request = v1::ClaimKeyPackages {
            usernames: users.iter().map(|u| u.to_string()).collect(),
        };
        let claimed: v1::ClaimResponse = self
            .authed(|| self.api.post("/v1/keypackages/claim", &request, true))
            .await?;
        let mut packages = Vec::new();
        for claimed in &claimed.key_packages {
            match self.check_claimed(claimed) {
                // The account may have rotated its key: follow its signed chain from our pin.
                Err(ClientError::IdentityChanged(name)) => {
                    let presented =
                        KeyPackageIn::tls_deserialize_exact(claimed.key_package.as_slice())
                            .ok()
                            .and_then(|p| p.validate(&self.crypto, ProtocolVersion::Mls10).ok())
                            .and_then(|p| {
                                parley_mls::CertifiedDevice::verify_leaf(p.leaf_node()).ok()
                            });
                    let followed = match (&presented, Username::parse(&name)) {
                        (Some(device), Ok(username)) => {
                            self.follow_rotations(&username, &device.account_key)
                                .await?
                        }
                        _ => false,
                    };
                    if !followed {
                        return Err(ClientError::IdentityChanged(name));
                    }
                    packages.push(self.check_claimed(claimed)?);
                }
                other => packages.push(other?),
            }
        }
        Ok(packages)
    }

    /// A claimed KeyPackage, checked: it verifies, is certified under the key we pinned for
    /// its account (see `trust`), is for the device the server says, and speaks our suite.
    pub(crate) fn check_claimed(
        &self,
        claimed: &v1::ClaimedKeyPackage,
    ) -> Result<KeyPackage, ClientError> {
        let package = KeyPackageIn::tls_deserialize_exact(claimed.key_package.as_slice())
            .map_err(|_| ClientError::Protocol("claimed key package does not parse".into()))?
            .validate(&self.crypto, ProtocolVersion::Mls10)
            .map_err(|e| {
                ClientError::Protocol(format!("claimed key package does not verify: {e}"))
            })?;
        let identity = self.trust_key_package(&package)?.identity;
        if identity.username.as_str() != claimed.username
            || identity.device_id.as_bytes() != claimed.device_id.as_slice()
        {
            return Err(ClientError::Protocol(
                "claimed key package belongs to someone else".into(),
            ));
        }
        if package.ciphersuite() != self.ciphersuite {
            return Err(ClientError::Protocol(format!(
                "{} uses another ciphersuite ({:?})",
                claimed.username,
                package.ciphersuite()
            )));
        }
        Ok(package)
    }
}
