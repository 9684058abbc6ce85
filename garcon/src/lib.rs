//! garcon: the Crostini container agent (library part; `main.rs` only wires it up).

pub mod app_publisher;
pub mod apps;
pub mod desktop;
pub mod mime;
pub mod watch;

// Icons and launching.
pub mod exec;
pub mod icons;
pub mod launch;

// Packages (PackageKit).
pub mod package_updates;
pub mod packages;

// Core (server lifecycle, host client, gRPC wiring).
pub mod ansible;
pub mod arc_sideload;
pub mod cli;
pub mod client;
pub mod cmdline;
pub mod config;
pub mod debug_info;
pub mod disk;
pub mod file_watch;
pub mod host;
pub mod service;
pub mod session_dbus;
pub mod sftp;
pub mod startup;
pub mod state;
pub mod token;
pub mod tools;

#[cfg(test)]
mod test_support;
