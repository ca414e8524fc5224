//! `routerctl completions SHELL` and `routerctl man DIR`: shell completions and man pages,
//! generated from the command tree itself so they can never disagree with it.
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, ValueEnum};

use crate::{cli::Cli, error::Error};

/// The shells completions are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (`/etc/bash_completion.d/routerctl`).
    Bash,
    /// zsh (a `_routerctl` file on `$fpath`).
    Zsh,
    /// fish (`~/.config/fish/completions/routerctl.fish`).
    Fish,
}

/// Flags of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Flags of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write `routerctl.1` and one page per subcommand into (created if needed).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<(), Error> {
    write_completions(args.shell, &mut std::io::stdout());
    Ok(())
}

fn write_completions(shell: Shell, out: &mut dyn std::io::Write) {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "routerctl", out);
}

/// Writes the man pages into `args.dir`; prints the files written.
pub fn man(args: &ManArgs) -> Result<(), Error> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", args.dir.display())))?;
    let written = write_pages(Cli::command(), &args.dir)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `command` and of every subcommand below it (`routerctl-channel-add.1`).
fn write_pages(mut command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    // Building names every subcommand by its path (`routerctl-channel-add`).
    command.build();
    let mut written = Vec::new();
    write_tree(&command, dir, &mut written)?;
    Ok(written)
}

fn write_tree(command: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), Error> {
    let name = command.get_display_name().unwrap_or_else(|| command.get_name()).to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .map_err(|e| Error::Invalid(format!("cannot render the man page of {name}: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_shell_and_command() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            write_completions(shell, &mut script);
            let script = String::from_utf8_lossy(&script);
            assert!(script.contains("routerctl") && script.contains("import"), "{shell:?}");
        }
    }

    #[test]
    fn man_pages_are_written_per_subcommand() {
        let dir = std::env::temp_dir().join(format!("routerctl-man-{}", std::process::id()));
        let written = write_pages(Cli::command(), &dir.join("man1")).err();
        assert!(written.is_some(), "writing into a missing folder must fail clearly");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let written = write_pages(Cli::command(), &dir).expect("pages written");
        for page in ["routerctl.1", "routerctl-apply.1", "routerctl-channel-add.1"] {
            let text = std::fs::read_to_string(dir.join(page)).expect(page);
            assert!(text.contains(".TH"), "{page} is not a man page");
        }
        assert!(written.len() > 30);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
