//! Shared (reader) locks, `--shared`: what may be combined with them and
//! what the command learns. Each backend maps a shared request onto its
//! engine (see docs/DESIGN.md, "Shared locks").

use crate::backend::BackendConfig;
use crate::cli::RunArgs;
use crate::error::{Error, Result};

/// `--shared` with options or backends that have no shared meaning is
/// refused before any backend is touched (exit 64).
pub(crate) fn check(args: &RunArgs, backend: &BackendConfig) -> Result<()> {
    if args.slots.is_some_and(|slots| slots > 1) {
        return Err(Error::usage(
            "--shared cannot be combined with --slots: a semaphore's slots are exclusive each; use --shared alone for any number of readers",
        ));
    }
    if matches!(backend, BackendConfig::CloudShell(_)) {
        return Err(Error::usage(
            "--shared is not available on the CloudShell backend: a reservation has one owner, with no shared mode; take it exclusively (without --shared)",
        ));
    }
    Ok(())
}

/// `LOCKRUN_MODE` for the command: `shared` or `exclusive`.
pub(crate) fn mode_env(shared: bool) -> (String, String) {
    (
        "LOCKRUN_MODE".to_owned(),
        if shared { "shared" } else { "exclusive" }.to_owned(),
    )
}
