//! A request body read whole, under the size limit and the daemon-wide memory budget.
//!
//! Each chunk is taken from the budget before it is kept, so the bodies of all connections
//! together never hold more memory than the budget allows; over the limit, the first `limit`
//! bytes are returned (for the rejects file) and the rest is left for the caller to drain.
//! The deadline is the caller's.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::ingest::budget::{Budget, Exhausted, Held};

/// Why a body could not be read whole.
pub enum BodyError {
    /// Over the limit; the first `limit` bytes.
    TooLarge(Bytes),
    /// The connection failed.
    Read(String),
    /// The body budget stayed spent.
    Busy(Exhausted),
}

/// Reads a whole body of at most `limit` bytes, taking each chunk from the budget first; over
/// the limit, returns the first `limit` bytes and reads no further.
pub async fn read_limited<B>(
    body: &mut B,
    limit: usize,
    budget: &Budget,
    held: &mut Held,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let keep = data.len().min(limit + 1 - len.min(limit + 1));
        budget.take(held, keep).await.map_err(BodyError::Busy)?;
        if len + data.len() > limit {
            chunks.push(data.slice(..limit - len));
            return Err(BodyError::TooLarge(concat(chunks, limit)));
        }
        len += data.len();
        chunks.push(data);
    }
    Ok(concat(chunks, len))
}

fn concat(mut chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut all = Vec::with_capacity(len);
    for c in &chunks {
        all.extend_from_slice(c);
    }
    Bytes::from(all)
}
