//! `tremplin -lxd_subnet 100.115.92.193/28 [--listen ADDR] [--host-address ADDR] ...`

use crostini_common::logging::{self, LogTarget};
use tremplin::config::{Config, ConfigError};

#[tokio::main]
async fn main() {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Usage(text)) => {
            // clap's own text (help, version or usage error).
            let is_error = !(text.starts_with("Crostini") || text.starts_with("tremplin "));
            eprint!("{text}");
            std::process::exit(if is_error { 2 } else { 0 });
        }
        Err(e) => {
            eprintln!("tremplin: {e}");
            std::process::exit(2);
        }
    };
    let target = if config.log_stderr {
        LogTarget::Stderr
    } else {
        LogTarget::Syslog
    };
    logging::init("tremplin", target, "info");
    let log_stderr = config.log_stderr;
    if let Err(e) = tremplin::run(config).await {
        tracing::error!("{e}");
        if !log_stderr {
            eprintln!("tremplin: {e}");
        }
        std::process::exit(1);
    }
}
