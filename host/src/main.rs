use clap::Parser;
use crostini_common::logging::{self, LogTarget};
use crostini_host::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    logging::init("crostini-host", LogTarget::Stderr, "warn");
    match cli::run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crostini-host: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
