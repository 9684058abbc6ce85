//! The `crostini-host` command line: `serve`, and one-shot calls into tremplin and garcon.

pub mod garcon;
pub mod output;
pub mod serve;
pub mod tremplin;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "crostini-host",
    version,
    about = "The host side of Crostini (a cicerone stand-in): serves the listeners garcon and tremplin report to, and calls them"
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve ContainerListener and TremplinListener; print every received call as a JSON line.
    Serve(serve::ServeArgs),
    /// Call tremplin (the VM agent).
    Tremplin(tremplin::TremplinArgs),
    /// Call garcon (the container agent).
    Garcon(garcon::GarconArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Tremplin(args) => tremplin::run(args, cli.json).await,
        Command::Garcon(args) => garcon::run(args, cli.json).await,
    }
}
