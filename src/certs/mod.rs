//! Certificates outside the TLS handshake: making a CA and a server certificate (the embedded
//! default and the `cert` command, [`generate`]), describing one for the operator ([`x509`]),
//! and whom a client of this project (`send`) trusts ([`client_tls`]).

pub mod client_tls;
pub(crate) mod generate;
pub(crate) mod x509;
