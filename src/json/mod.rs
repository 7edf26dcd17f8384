//! JSON text as bytes, where serde would cost too much or change what was sent: the bytes that
//! matter found eight at a time ([`scan`]), whitespace removed and nothing else changed
//! ([`minify`]), and the records of a log of any size read one at a time ([`stream`]).

pub mod minify;
pub mod scan;
pub mod stream;
