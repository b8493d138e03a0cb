use thiserror::Error;

/// Everything the storage layer can fail with. Messages say what failed and with which input;
/// services map these to HTTP answers in one place and never show them to players verbatim.
#[derive(Debug, Error)]
pub enum Error {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("a document with this {field} already exists")]
    Duplicate { field: String },
    #[error("bson encoding: {0}")]
    BsonEncode(#[from] mongodb::bson::ser::Error),
    #[error("bson decoding: {0}")]
    BsonDecode(#[from] mongodb::bson::de::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("opensearch {operation}: {message}")]
    Search {
        operation: &'static str,
        message: String,
    },
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{key} changed {attempts} times while being updated")]
    Contended { key: String, attempts: usize },
    #[error("page cursor is invalid")]
    BadCursor,
    #[error("migration lock is held by {holder} until {until_ms} ms since the epoch")]
    MigrationLocked { holder: String, until_ms: i64 },
    #[error("migration {version} ({name}) failed: {message}")]
    Migration {
        version: u32,
        name: &'static str,
        message: String,
    },
    #[error("database has migration {found} applied but this build knows only up to {known}")]
    MigrationsAhead { found: u32, known: u32 },
    #[error("backup archive {path}: {message}")]
    Archive { path: String, message: String },
    #[error("restore refused: collection {0} is not empty")]
    RestoreTargetNotEmpty(String),
    #[error("io on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the failure was in transport (a dropped connection, no server reachable) or the
    /// store was momentarily busy, rather than an answer about the operation: it may be retried,
    /// and whether it landed must be read back. FerretDB on SQLite answers a write that met
    /// SQLite's write lock with `InternalError` "database is locked (SQLITE_BUSY)".
    pub fn is_transient(&self) -> bool {
        use mongodb::error::ErrorKind;
        match self {
            Error::Mongo(error) => match &*error.kind {
                ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. } => true,
                ErrorKind::Command(command) => command.message.contains("SQLITE_BUSY"),
                ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write)) => {
                    write.message.contains("SQLITE_BUSY")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A bounded label for metrics: never free text.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Mongo(_) => "mongo",
            Error::Duplicate { .. } => "duplicate",
            Error::BsonEncode(_) | Error::BsonDecode(_) => "bson",
            Error::Redis(_) => "redis",
            Error::Search { .. } | Error::Http(_) => "search",
            Error::Json(_) => "json",
            Error::BadCursor => "bad_cursor",
            Error::Contended { .. } => "contended",
            Error::MigrationLocked { .. } | Error::Migration { .. } | Error::MigrationsAhead { .. } => {
                "migration"
            }
            Error::Archive { .. } | Error::RestoreTargetNotEmpty(_) | Error::Io { .. } => "backup",
        }
    }
}
