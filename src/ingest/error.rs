//! Every reason a `POST /log` is refused, and the one place that maps a refusal to its HTTP
//! status ([`IngestError::status`]), whether the refused body is kept, and whether the connection
//! can go on.

use http::StatusCode;

use crate::ingest::decode::DecodeError;
use crate::ingest::split::SplitError;
use crate::output::WriteError;
use crate::record::Nonconformity;

/// Seconds a client is told to wait after a `503`.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Why a `POST /log` was refused. Nothing of a refused request is written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Empty, not JSON, not objects, or `[]`.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// A body that cannot be decoded, or decodes too large.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The body as sent is over the limit.
    #[error("body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Strict mode: a record does not conform.
    #[error("{where_}does not conform: {problem}")]
    Nonconforming {
        /// `record 3 ` in a batch, empty for a single record.
        where_: String,
        /// The field and the reason.
        problem: Nonconformity,
    },
    /// The body did not arrive within the body timeout.
    #[error("body not received within {secs:.1}s")]
    BodyTimeout {
        /// The timeout.
        secs: f64,
    },
    /// The connection failed while the body was read.
    #[error("cannot read the body: {0}")]
    BodyRead(String),
    /// The memory budget for bodies is spent; retry later.
    #[error(transparent)]
    Busy(#[from] crate::ingest::budget::Exhausted),
    /// A copy of a record was still being written by another request when the body deadline came.
    #[error("the same record is still being written by another request; retry later")]
    InFlight,
    /// The output cannot take the records now.
    #[error("cannot write now ({0}); retry later")]
    Output(#[from] WriteError),
}

impl IngestError {
    /// The HTTP status for this refusal.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            IngestError::Split(_) | IngestError::BodyRead(_) => StatusCode::BAD_REQUEST,
            IngestError::Decode(DecodeError::Unsupported(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Decode(DecodeError::TooLarge { .. }) | IngestError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Decode(DecodeError::Corrupt { .. }) => StatusCode::BAD_REQUEST,
            IngestError::Nonconforming { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngestError::Output(_)
            | IngestError::Busy(_)
            | IngestError::InFlight
            | IngestError::Decode(DecodeError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// True for the refusals whose body the rejects file keeps (400, 413, 415, 422).
    pub(crate) fn keeps_body(&self) -> bool {
        !matches!(
            self,
            IngestError::BodyTimeout { .. }
                | IngestError::BodyRead(_)
                | IngestError::Output(_)
                | IngestError::InFlight
                | IngestError::Busy(_)
                | IngestError::Decode(DecodeError::Busy)
        )
    }

    /// True when the body may not have been read to its end (the connection must close).
    pub(crate) fn leaves_body_unread(&self) -> bool {
        matches!(
            self,
            IngestError::TooLarge { .. }
                | IngestError::BodyTimeout { .. }
                | IngestError::BodyRead(_)
                | IngestError::Busy(_)
        ) || matches!(self, IngestError::Decode(DecodeError::Unsupported(_)))
    }

    /// True when the rest of the body should be read and thrown away before the answer: the
    /// refusals decided before the body was read to its end, for a client that is still sending.
    pub(crate) fn drain_before_answer(&self) -> bool {
        matches!(
            self,
            IngestError::TooLarge { .. } | IngestError::Decode(DecodeError::Unsupported(_))
        )
    }

    /// `Retry-After` seconds, for refusals the client should retry.
    pub(crate) fn retry_after(&self) -> Option<u32> {
        (self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS)
    }
}
