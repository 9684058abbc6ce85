//! Protobuf messages and gRPC clients/servers for the Crostini guest agents.
//!
//! Generated at build time (protox + tonic-prost-build) from the `.proto`
//! files in `protos/`, which were written from the normative spec tables.
//!
//! Module layout mirrors the protobuf packages:
//!
//! | proto package        | Rust module                         | services                           |
//! |----------------------|-------------------------------------|------------------------------------|
//! | `vm_tools`           | [`vm_tools`]                        | (`EmptyMessage` only)              |
//! | `vm_tools.container` | [`vm_tools::container`] ([`container`]) | `Garcon`, `ContainerListener` |
//! | `vm_tools.tremplin`  | [`vm_tools::tremplin`] ([`tremplin`])   | `Tremplin`, `TremplinListener` |
//! | `vm_tools.cicerone`  | [`vm_tools::cicerone`] ([`cicerone`])   | `CrashListener`                |
//!
//! Nested protobuf types live in snake_case modules named after their parent
//! message, e.g. `CreateContainerResponse.Status` is
//! [`tremplin::create_container_response::Status`].

/// Package `vm_tools` (`common.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    rustdoc::all
)]
pub mod vm_tools {
    include!(concat!(env!("OUT_DIR"), "/vm_tools.rs"));

    /// Package `vm_tools.container` (`container_guest.proto` and
    /// `container_host.proto`): services `Garcon` and `ContainerListener`.
    pub mod container {
        include!(concat!(env!("OUT_DIR"), "/vm_tools.container.rs"));
    }

    /// Package `vm_tools.tremplin` (`tremplin.proto`): services `Tremplin`
    /// and `TremplinListener`. Has its own `EmptyMessage`.
    pub mod tremplin {
        include!(concat!(env!("OUT_DIR"), "/vm_tools.tremplin.rs"));
    }

    /// Package `vm_tools.cicerone` (`vm_crash.proto`): service
    /// `CrashListener`.
    pub mod cicerone {
        include!(concat!(env!("OUT_DIR"), "/vm_tools.cicerone.rs"));
    }
}

pub use vm_tools::cicerone;
pub use vm_tools::container;
pub use vm_tools::tremplin;
pub use vm_tools::EmptyMessage;

/// Encoded `google.protobuf.FileDescriptorSet` of every `.proto` in this
/// crate (with imports and source info). Usable with gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/crostini_descriptor.bin"));

/// Directory holding the generated Rust sources (used by the contract tests
/// that inspect generated gRPC method paths).
#[doc(hidden)]
pub const GENERATED_OUT_DIR: &str = env!("OUT_DIR");
