//! garcon binary: parses the command line and wires the library parts together.

use std::process::ExitCode;

use crostini_common::logging::{self, LogTarget};
use crostini_common::signals::{StopSignal, StopSignals};
use garcon::cli::{self, Invocation, USAGE};
use garcon::client::Exit;
use garcon::startup::{self, ServerExit};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let invocation = match cli::parse_invocation(&argv) {
        Ok(invocation) => invocation,
        Err(error) => {
            eprintln!("garcon: {error}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("garcon: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    let exit = match invocation {
        Invocation::Help => {
            println!("{USAGE}");
            Exit::Success
        }
        Invocation::Client(options) => {
            logging::init("garcon", LogTarget::Stderr, "info");
            let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
            let mut stdout = std::io::stdout();
            runtime.block_on(cli::run_client(options, &cwd, &mut stdout))
        }
        Invocation::Server(config, listen_options) => {
            // Before anything binds: garcon's gRPC and sftp listeners use these options.
            if crostini_common::transport::set_process_listen_options(listen_options).is_err() {
                eprintln!("garcon: listen options were already set");
                return ExitCode::from(Exit::Failure.code());
            }
            let target = if config.log_stderr {
                LogTarget::Stderr
            } else {
                LogTarget::Syslog
            };
            logging::init("garcon", target, "info");
            runtime.block_on(async move {
                // Only SIGTERM is handled; SIGINT/SIGHUP keep their default action (no
                // ContainerShutdown), as upstream.
                let mut signals = match StopSignals::install(&[StopSignal::Term]) {
                    Ok(signals) => signals,
                    Err(error) => {
                        eprintln!("garcon: cannot install the SIGTERM handler: {error}");
                        return Exit::Failure;
                    }
                };
                let stop = async move {
                    signals.recv().await;
                };
                match startup::run_server(*config, stop, None).await {
                    Ok(ServerExit::Stopped { .. }) | Ok(ServerExit::StoppedDuringStartup) => {
                        Exit::Success
                    }
                    Err(error) => {
                        tracing::error!("{error}");
                        eprintln!("garcon: {error}");
                        Exit::Failure
                    }
                }
            })
        }
    };
    // Background tasks (watchers, lazy channels) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(exit.code())
}
