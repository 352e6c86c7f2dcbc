//! Errors that decide an exit code. Each variant prints as one line; the
//! printer in `lib.rs` adds the `lockrun:` prefix.

use crate::exit::Exit;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NoPermission(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The lock could not be had; the message names the holder when known.
    #[error("{0}")]
    Busy(String),
    #[error("{message}")]
    Spawn { message: String, not_found: bool },
    /// A nested lockrun whose environment claims the lock for an ancestor,
    /// which the backend does not confirm (see `reentry`).
    #[error("{0}")]
    NotReentrant(String),
    /// `release NAME` found no keeper of ours holding NAME.
    #[error("{0}")]
    NothingToRelease(String),
    /// A keeper's lock was lost before `release` came.
    #[error("{0}")]
    Lost(String),
    #[error("interrupted by {name} while waiting for the lock")]
    Interrupted { signal: i32, name: &'static str },
}

impl Error {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(message.into())
    }

    pub(crate) fn no_permission(message: impl Into<String>) -> Self {
        Error::NoPermission(message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// lockrun got signal number `signal` while waiting for the lock.
    pub(crate) fn interrupted(signal: i32) -> Self {
        Error::Interrupted {
            signal,
            name: nix::sys::signal::Signal::try_from(signal)
                .map_or("a signal", nix::sys::signal::Signal::as_str),
        }
    }

    /// The exit code for this error; `conflict_code` is the `-E` value.
    pub(crate) fn exit(&self, conflict_code: u8) -> Exit {
        match self {
            Error::Usage(_) => Exit::Usage,
            Error::Unavailable(_) => Exit::Unavailable,
            Error::NoPermission(_) => Exit::NoPermission,
            Error::Internal(_) => Exit::Software,
            Error::Busy(_) => Exit::Conflict(conflict_code),
            Error::NotReentrant(_) => Exit::NotReentrant,
            Error::NothingToRelease(_) => Exit::NothingToRelease,
            Error::Lost(_) => Exit::LockLost,
            Error::Spawn {
                not_found: true, ..
            } => Exit::NotFound,
            Error::Spawn {
                not_found: false, ..
            } => Exit::CannotExecute,
            Error::Interrupted { signal, .. } => Exit::Interrupted(*signal),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
