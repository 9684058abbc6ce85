//! Pieces shared by tremplin, garcon and crostini-host: the address type, the transport layer
//! (the only code that knows sockets), logging, stop signals, and bounded reads of untrusted files.

pub mod address;
pub mod logging;
pub mod signals;
#[doc(hidden)]
pub mod test_rng;
pub mod transport;
pub mod untrusted_file;

pub use address::{Address, AddressError};
pub use transport::{lazy_channel, request_peer, Listener, Peer, Stream, TransportError};
