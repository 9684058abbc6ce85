//! The host side of the Crostini protocol: what ChromeOS's cicerone does for tremplin and garcon,
//! for development, for the tests, and for running the suite on any Linux machine with LXD.
//!
//! - [`server::RunningHost`] serves ContainerListener and TremplinListener with cicerone's
//!   validation (token registry, caller checks, rate limits) and records every call ([`events`]).
//! - [`clients`] dials the guest services with cicerone's deadlines.

pub mod cli;
pub mod clients;
pub mod container_listener;
pub mod events;
pub mod handlers;
pub mod rate_limit;
pub mod ready;
pub mod registry;
pub mod server;
pub mod state;
pub mod state_dir;
pub mod tremplin_listener;
pub mod url;

pub use events::{Event, Payload};
pub use server::{HostConfig, RunningHost};
