//! The Delivery Service's public view of one group (openmls `PublicGroup`: ratchet tree of public
//! keys, group context, transcript hash, queued proposals), kept as one opaque blob per group.
//!
//! openmls writes this state through a storage provider; we give it an in-memory one per group
//! and persist the provider's key/value pairs, so the blob always matches what openmls wrote.

use openmls::prelude::{GroupId as MlsGroupId, PublicGroup};
use openmls_memory_storage::MemoryStorage;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("stored group state is corrupt")]
    Corrupt,
    #[error("stored group state is incomplete")]
    Missing,
}

/// A group's public state, loaded and ready to process a message.
pub struct PublicGroupState {
    pub group: PublicGroup,
    pub storage: MemoryStorage,
}

impl PublicGroupState {
    pub fn load(group_id: &MlsGroupId, blob: &[u8]) -> Result<Self, StateError> {
        let storage = decode_storage(blob)?;
        // openmls' in-memory storage unwraps what it deserializes: a corrupt value in the blob
        // (a damaged row, a bad restore) panics in there. That is a corrupt state, not a crash
        // (found by the `public_state` fuzz target).
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            PublicGroup::load(&storage, group_id)
        }))
        .map_err(|_| StateError::Corrupt)?;
        let group = loaded
            .map_err(|_| StateError::Corrupt)?
            .ok_or(StateError::Missing)?;
        Ok(PublicGroupState { group, storage })
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_storage(&self.storage)
    }
}

/// Layout: repeated (u32 key length, key, u32 value length, value), big-endian, sorted by key so
/// that equal states give equal bytes.
pub fn encode_storage(storage: &MemoryStorage) -> Vec<u8> {
    let values = storage.values.read().unwrap_or_else(|p| p.into_inner());
    let mut entries: Vec<_> = values.iter().collect();
    entries.sort();
    let size = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (key, value) in entries {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

pub fn decode_storage(mut blob: &[u8]) -> Result<MemoryStorage, StateError> {
    fn take<'a>(blob: &mut &'a [u8]) -> Result<&'a [u8], StateError> {
        if blob.len() < 4 {
            return Err(StateError::Corrupt);
        }
        let (len, rest) = blob.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if rest.len() < len {
            return Err(StateError::Corrupt);
        }
        let (item, rest) = rest.split_at(len);
        *blob = rest;
        Ok(item)
    }
    let storage = MemoryStorage::default();
    {
        let mut values = storage.values.write().unwrap_or_else(|p| p.into_inner());
        while !blob.is_empty() {
            let key = take(&mut blob)?.to_vec();
            let value = take(&mut blob)?.to_vec();
            values.insert(key, value);
        }
    }
    Ok(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_round_trips_and_truncation_is_detected() {
        let storage = MemoryStorage::default();
        storage
            .values
            .write()
            .unwrap()
            .insert(b"k1".to_vec(), b"v1".to_vec());
        storage
            .values
            .write()
            .unwrap()
            .insert(b"k2".to_vec(), vec![0; 300]);
        let blob = encode_storage(&storage);
        let back = decode_storage(&blob).unwrap();
        assert_eq!(
            *back.values.read().unwrap(),
            *storage.values.read().unwrap()
        );
        assert!(decode_storage(&blob[..blob.len() - 1]).is_err());
    }
}
