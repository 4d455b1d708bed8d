//! The transports' native parts, and the loop's table of them.

pub mod datagram;
pub mod sslproto;
pub mod stream;
pub mod table;
