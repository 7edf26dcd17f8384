//! JSON text as bytes, where serde would cost too much or change what was sent: the bytes that
//! matter found eight at a time ([`scan`]), whitespace removed and nothing else changed
//! ([`minify`]), the records of a log of any size read one at a time ([`stream`]), and several logs read as one
//! in the order their records were received ([`merge`]).

pub(crate) mod merge;
pub mod minify;
pub(crate) mod scan;
pub(crate) mod stream;
