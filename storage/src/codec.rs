//! Stored values: one version byte, then postcard. postcard is not self-describing, so the byte
//! is what lets a later build read (or refuse) an older layout instead of misreading it.

use serde::{de::DeserializeOwned, Serialize};

use crate::{StorageError, Table};

/// A record type and the table it lives in.
pub trait Record: Serialize + DeserializeOwned {
    const TABLE: Table;
    /// Bumped whenever the serialized layout changes.
    const VERSION: u8;
}

pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(R::VERSION);
    // postcard into a Vec only fails on serde errors our plain structs cannot produce.
    match postcard::to_extend(record, out) {
        Ok(v) => v,
        Err(e) => panic!("postcard cannot encode a {} record: {e}", R::TABLE),
    }
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StorageError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StorageError::Decode {
            table: R::TABLE,
            reason: "empty value".into(),
        });
    };
    if version != R::VERSION {
        return Err(StorageError::Decode {
            table: R::TABLE,
            reason: format!("unknown record version {version} (expected {})", R::VERSION),
        });
    }
    let (record, rest) = postcard::take_from_bytes(body).map_err(|e| StorageError::Decode {
        table: R::TABLE,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(StorageError::Decode {
            table: R::TABLE,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(record)
}
