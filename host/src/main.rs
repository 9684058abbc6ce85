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
            eprintln!("crostini-host: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error chain, with a gRPC status shown as its code and message only: tonic's own Display
/// repeats the transport error's whole source chain, several times over.
fn describe(error: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in error.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            parts.push(format!("{:?}: {}", status.code(), status.message()));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}
