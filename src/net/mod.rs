//! The network edge: listening sockets, the accept loops and the connection cap, the allowlist
//! checked before the TLS handshake, the PROXY protocol header a trusted load balancer sends
//! ahead of it, one connection's TLS handshake and HTTP protocol with their deadlines, and the
//! TLS configuration itself.
//!
//! Nothing here knows what a record is: a connection hands each request to [`crate::http`].

pub(crate) mod allow;
pub mod connection;
pub mod listener;
pub(crate) mod log_limit;
pub mod proxy;
pub mod tls;

#[cfg(test)]
mod tests;
