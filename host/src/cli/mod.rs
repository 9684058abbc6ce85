//! The `crostini-host` command line: `serve`, and one-shot calls into tremplin and garcon.

pub mod garcon;
pub mod output;
pub mod reports;
pub mod serve;
pub mod status;
pub mod tremplin;

use clap::{Parser, Subcommand};

use crate::state_dir::StateDir;

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
    /// Directory where `serve` records what it receives; other commands read the app list from
    /// it and follow progress reports in it.
    #[arg(long, global = true, env = "CROSTINI_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
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
    /// Show every VM and container `serve` knows: state, address, user, garcon endpoint and
    /// the time of the latest app list (needs --state-dir).
    Status,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let state_dir = match &cli.state_dir {
        Some(dir) => Some(StateDir::open(dir)?),
        None => None,
    };
    match cli.command {
        Command::Serve(args) => serve::run(args, state_dir).await,
        Command::Tremplin(args) => tremplin::run(args, state_dir.as_ref(), cli.json).await,
        Command::Garcon(args) => garcon::run(args, state_dir.as_ref(), cli.json).await,
        Command::Status => status::run(state_dir.as_ref(), cli.json),
    }
}
