//! oxloop's Python-free core: the epoll [`poller`] and its [`registry`] of watched descriptors,
//! the [`timers`] heap and the write [`buffers`].
//!
//! Nothing in this crate knows about Python or asyncio; the `oxloop` extension crate builds the
//! event loop on top of it. Everything here is unit-tested with `cargo test -p oxloop-core`.

pub mod buffers;
pub mod poller;
pub mod registry;
pub mod timers;
