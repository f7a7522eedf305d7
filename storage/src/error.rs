use crate::Table;

/// Every failure of the storage layer. Callers map it; it never carries HTTP meaning.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The writer's bounded queue is full: shed load instead of growing memory.
    #[error("the storage writer queue is full")]
    Overloaded,
    /// The store is shutting down or its writer thread is gone.
    #[error("the store is closed")]
    Closed,
    /// The folder or file could not be used.
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// Another process holds the store (redb locks the file).
    #[error("the store at {path} is in use by another process")]
    InUse { path: String },
    /// A stored value could not be decoded: corruption or a version this build does not know.
    #[error("cannot decode a record in table {table}: {reason}")]
    Decode { table: Table, reason: String },
    /// The database cannot be reached or refused the connection (PostgreSQL store): writes are
    /// refused until it is back, then the store recovers by itself.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// An engine error (I/O, corruption, commit failure).
    #[error("storage engine error: {0}")]
    Engine(String),
}

impl StorageError {
    /// The same failure for each caller of a failed batch: its kind (so an unavailable database
    /// stays a 503) and its text.
    pub(crate) fn for_each_caller(&self) -> StorageError {
        match self {
            StorageError::Unavailable(m) => StorageError::Unavailable(m.clone()),
            StorageError::Overloaded => StorageError::Overloaded,
            StorageError::Closed => StorageError::Closed,
            other => StorageError::Engine(other.to_string()),
        }
    }
}

impl From<redb::Error> for StorageError {
    fn from(e: redb::Error) -> Self {
        StorageError::Engine(e.to_string())
    }
}

macro_rules! engine_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self { StorageError::Engine(e.to_string()) }
        }
    )*};
}
engine_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    std::io::Error
);
