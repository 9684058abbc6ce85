//! tremplin: the Crostini VM agent. Serves `vm_tools.tremplin.Tremplin` for the host
//! (cicerone), drives LXD over its REST socket and reports progress to the host's
//! `TremplinListener`.
//!
//! Layout: [`config`] (flags), [`server`] (startup/shutdown), [`service`] (gRPC translation),
//! [`listener`] (host listener client), [`daemon`] (shared state), [`lxd_setup`] (StartLxd),
//! [`containers`] (per-RPC behaviour), and the pure domain modules [`passwd`],
//! [`os_release`], [`milestone`], [`ports`], [`ipv4`].

pub mod archive;
pub mod config;
pub mod container_fs;
pub mod containers;
pub mod daemon;
pub mod devices;
pub mod events;
pub mod ipv4;
pub mod listener;
pub mod lxd_setup;
pub mod milestone;
pub mod os_release;
pub mod passwd;
pub mod ports;
pub mod profile;
pub mod server;
pub mod service;
pub mod supervisor;
pub mod transactions;
pub mod usb;
pub mod yaml;

pub use config::Config;
pub use daemon::Daemon;
pub use server::{run, RunningTremplin, StartupError, StopKind};
