//! Snapshots of what users read: `--help`, `-h`, each command word's
//! `--help`, and the one-line errors with their exit codes. The cases are
//! tests/cmd/*.toml (arguments, environment, exit code, and the expected
//! stderr inline); the help texts are tests/cmd/*.stdout. Each case runs the
//! real binary with an empty environment, so nothing from the caller's
//! LOCKRUN_* variables or terminal width leaks in, and no case reaches a
//! network: every error here is found before lockrun connects anywhere.
//!
//! A change of wording must show up as a diff of these files. After changing
//! a message or a help text on purpose, update the snapshots and review the
//! diff before committing it:
//!
//!     TRYCMD=overwrite cargo test --test integration snapshots::
//!
//! To add a case, copy a .toml file, change `args` (and `env.add`), leave
//! `stderr = ""`, and run the command above. See tests/README.md.

use crate::util::BIN;

#[test]
fn help_and_error_texts() {
    trycmd::TestCases::new()
        .register_bin("lockrun", std::path::Path::new(BIN))
        .case("tests/cmd/*.toml");
}
