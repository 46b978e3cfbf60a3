//! `cargo xtask`: build, lint and publish AWS Lambda Python layers.
//!
//! This is the cargo-xtask convention (<https://github.com/matklad/cargo-xtask>): the project's
//! tooling is a Rust binary in the workspace, run with `cargo xtask <command>` through the alias in
//! `.cargo/config.toml`. Each command lives in its own module of the `xtask` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    BuildLayer(xtask::build::BuildLayer),
    Compare(xtask::compare::Compare),
    Deploy(xtask::deploy::Deploy),
    DeployStack(xtask::stack::DeployStack),
    LintBuildspec(xtask::lint::LintBuildspec),
    Lock(xtask::locks::make::Lock),
    VerifyLayer(xtask::verify::VerifyLayer),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::BuildLayer(cmd) => cmd.run(),
        Command::Compare(cmd) => cmd.run(),
        Command::Deploy(cmd) => cmd.run(),
        Command::DeployStack(cmd) => cmd.run(),
        Command::LintBuildspec(cmd) => cmd.run(),
        Command::Lock(cmd) => cmd.run(),
        Command::VerifyLayer(cmd) => cmd.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
