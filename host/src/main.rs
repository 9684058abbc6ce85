use clap::Parser;
use crostini_common::logging::{self, LogTarget};
use crostini_host::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A command piped into `head` ends quietly when the reader goes away, as other tools do,
    // instead of panicking in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any other thread uses it.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    logging::init("crostini-host", LogTarget::Stderr, "warn");
    match cli::run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crostini-host: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
