//! `pgsub completions` and `pgsub man`: shell completion scripts and manual pages generated
//! from the clap definitions, so they never disagree with `--help`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, ManArgs};
use crate::error::{Error, Result};

/// Prints the completion script for the shell asked for.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "pgsub", &mut out);
    out.flush()
        .map_err(|e| Error::io("writing the completion script", e))
}

/// Prints pgsub(1), or writes every page into `--dir`.
pub(crate) fn man(args: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("writing the manual page", e))
        }
        Some(dir) => write_pages(cmd, dir),
    }
}

/// pgsub.1, and pgsub-<command>.1 for each command and subcommand (pgsub-slot-create.1, …).
fn write_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = 0usize;
    let mut stack = vec![(cmd, String::from("pgsub"))];
    while let Some((cmd, name)) = stack.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            stack.push((sub.clone().name(sub_name.clone()), sub_name));
        }
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .map_err(|e| Error::io("rendering a manual page", e))?;
        std::fs::write(&path, buf)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written += 1;
    }
    eprintln!("wrote {written} manual pages into {}", dir.display());
    Ok(())
}
