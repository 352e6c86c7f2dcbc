//! `lockrun --generate man|bash|zsh|fish|elvish|powershell`: the man page and
//! completions, from the same clap definition as `--help`. The checked-in
//! copies in man/ and completions/ are refreshed with scripts/generate.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, Generate};
use crate::error::{Error, Result};

pub fn generate(what: Generate, out: &mut dyn Write) -> Result<()> {
    let mut command = Cli::command();
    let shell = match what {
        Generate::Man => {
            return clap_mangen::Man::new(command)
                .render(out)
                .map_err(|e| Error::internal(format!("writing the man page: {e}")));
        }
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Elvish => Shell::Elvish,
        Generate::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "lockrun", out);
    Ok(())
}
