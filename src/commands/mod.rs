//! The operator's commands besides the daemon, one module each: `cert`, `send`, `inspect`,
//! `report`, `seal-keys`, `verify`, `completions` and `man`, and the progress line the long ones
//! show on a terminal.

pub mod cert;
pub mod completions;
pub mod inspect;
pub mod man;
pub(crate) mod progress;
pub mod report;
pub mod seal_keys;
pub mod send;
pub mod verify;
