//! `portico completions SHELL` and `portico man`: shell completions (`clap_complete`) and the
//! manual page (`clap_mangen`, roff) generated from the clap definitions in `cli.rs`, so
//! they never drift from the command line. `scripts/deb.sh` packages their output.

use std::io::Write as _;

use anyhow::Context as _;

use crate::exit::Failure;

/// Completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "portico", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completions")?;
    Ok(())
}

/// The man page (section 1, roff) on stdout.
pub fn man() -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::cli::command())
        .section("1")
        .render(&mut out)
        .context("cannot render the man page")?;
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the man page")?;
    Ok(())
}
