//! The openmls provider for one local transaction: RustCrypto for crypto and randomness, and
//! openmls' SQLite storage on the transaction's connection, so that MLS state changes commit or
//! roll back together with the message log, outbox and cursor.

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// Stored MLS state is JSON, a self-describing format that survives openmls upgrades.
#[derive(Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

pub type Storage<'a> = SqliteStorageProvider<JsonCodec, &'a Connection>;

pub struct TxProvider<'a> {
    crypto: &'a RustCrypto,
    storage: Storage<'a>,
}

impl<'a> TxProvider<'a> {
    pub fn new(crypto: &'a RustCrypto, connection: &'a Connection) -> Self {
        TxProvider {
            crypto,
            storage: SqliteStorageProvider::new(connection),
        }
    }
}

impl<'a> OpenMlsProvider for TxProvider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = Storage<'a>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// Creates openmls' tables.
pub fn migrate(connection: &mut Connection) -> Result<(), String> {
    SqliteStorageProvider::<JsonCodec, &mut Connection>::new(connection)
        .run_migrations()
        .map_err(|e| e.to_string())
}
