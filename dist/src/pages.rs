//! Shell completions (bash, zsh, fish) and man pages, made from a binary's own clap definition,
//! so they list exactly the flags, subcommands and environment variables the binary takes.

use std::io;

use clap::Command;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::archive::File;

/// The completion scripts for `cmd`, under `completions/`: `NAME.bash`, `_NAME` (zsh) and
/// `NAME.fish`, the names each shell's completion directory expects.
pub(crate) fn completions(cmd: &Command) -> Vec<File> {
    let name = cmd.get_name().to_string();
    [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut script);
        File::regular(format!("completions/{file}"), script)
    })
    .collect()
}

/// Section 1 man pages for `cmd` and each of its visible subcommands, under `man/`
/// (`postern.1`, `postern-tunnel.1`, `postern-tunnel-run.1`), dated `date` (YYYY-MM-DD).
pub(crate) fn man_pages(cmd: &Command, date: &str) -> io::Result<Vec<File>> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    // Building propagates names: a subcommand's page is then titled `postern-tunnel-run`.
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, date, &mut pages)?;
    Ok(pages)
}

fn collect(cmd: &Command, date: &str, pages: &mut Vec<File>) -> io::Result<()> {
    let man = Man::new(cmd.clone()).date(date).manual("Postern");
    let mut page = Vec::new();
    man.render(&mut page)?;
    pages.push(File::regular(format!("man/{}", man.get_filename()), page));
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        collect(sub, date, pages)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn tool() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("A tool")
            .arg(
                Arg::new("level")
                    .long("level")
                    .env("TOOL_LEVEL")
                    .help("How loud"),
            )
            .subcommand(Command::new("tunnel").subcommand(
                Command::new("run").arg(Arg::new("token").long("token").action(ArgAction::Set)),
            ))
            .subcommand(Command::new("secret").hide(true))
    }

    #[test]
    fn each_shell_gets_the_file_name_its_completion_directory_looks_for() {
        let files = completions(&tool());
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "completions/tool.bash",
                "completions/_tool",
                "completions/tool.fish"
            ]
        );
        let bash = String::from_utf8_lossy(&files[0].bytes);
        assert!(bash.contains("complete -F _tool"), "{bash}");
        assert!(bash.contains("--level"), "{bash}");
    }

    #[test]
    fn every_visible_subcommand_gets_its_own_dated_page() {
        let pages = man_pages(&tool(), "2025-01-31").expect("render");
        let names: Vec<_> = pages.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            ["man/tool.1", "man/tool-tunnel.1", "man/tool-tunnel-run.1"]
        );
        let top = String::from_utf8_lossy(&pages[0].bytes);
        assert!(top.contains("2025-01-31"), "{top}");
        assert!(top.contains("TOOL_LEVEL"), "{top}");
        let run = String::from_utf8_lossy(&pages[2].bytes);
        assert!(run.contains("token"), "{run}");
    }
}
