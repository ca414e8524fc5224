//! Errors, and the one place they become gRPC statuses.
//!
//! Policy: storage and domain code returns [`StoreError`] (typed, so callers can match on
//! "not found" or "already exists"); binaries and background tasks use `anyhow`; the gRPC edge
//! converts with `From<StoreError> for Status`. Messages are lowercase, name the entity, and
//! never contain a secret. Database and pool failures are logged in full here and reach the
//! client only as a generic message.
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::Status;

/// What went wrong in a storage or domain operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named entity does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An entity with that name exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request itself is invalid (bad amount, empty name, unknown type, ...).
    #[error("{0}")]
    Invalid(String),
    /// The request is valid but the state does not allow it (group in use, code used, ...).
    #[error("{0}")]
    Conflict(String),
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] DieselError),
    /// No database connection could be had.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The caller's credentials are wrong or have ended (console sign-in and sessions).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed (a disabled account).
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; the caller may try again after this many seconds.
    #[error("too many failed sign-ins; try again in {0} s")]
    RateLimited(u64),
    /// A dry run's transaction, rolled back on purpose after its changes were computed.
    #[error("rolled back (dry run)")]
    RolledBack,
}

/// The status metadata key that carries a [`StoreError::RateLimited`] wait, in seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// Result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Wraps a pool error (used by the dispatch macros).
    pub fn pool(error: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(error.to_string())
    }

    /// Shorthand for [`StoreError::Invalid`].
    pub fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::Invalid(message.into())
    }
}

/// Maps a unique-constraint violation to [`StoreError::AlreadyExists`] naming `what`.
pub fn exists_as(what: impl FnOnce() -> String) -> impl FnOnce(DieselError) -> StoreError {
    move |error| match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::AlreadyExists(what())
        }
        other => StoreError::Database(other),
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            StoreError::NotFound(_) => Status::not_found(error.to_string()),
            StoreError::AlreadyExists(_) => Status::already_exists(error.to_string()),
            StoreError::Invalid(_) => Status::invalid_argument(error.to_string()),
            StoreError::Conflict(_) => Status::failed_precondition(error.to_string()),
            StoreError::Database(ref e) => {
                tracing::error!(error = %e, "database error");
                Status::internal("storage error (see the control plane's log)")
            }
            StoreError::Unavailable(ref e) => {
                tracing::error!(error = %e, "database unavailable");
                Status::unavailable("database unavailable")
            }
            StoreError::Unauthenticated(_) => Status::unauthenticated(error.to_string()),
            StoreError::Forbidden(_) => Status::permission_denied(error.to_string()),
            StoreError::RateLimited(seconds) => {
                let mut status = Status::resource_exhausted(error.to_string());
                if let Ok(value) = seconds.to_string().parse() {
                    status.metadata_mut().insert(RETRY_AFTER, value);
                }
                status
            }
            StoreError::RolledBack => Status::aborted(error.to_string()),
        }
    }
}
