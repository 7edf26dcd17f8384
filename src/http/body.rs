//! What is left of a refused request's body, read and thrown away before the answer.
//!
//! An answer sent while the client is still sending its body reaches it as a reset on HTTP/1.1
//! (the kernel answers unread data with RST) and as a stream error on HTTP/2 (curl shows no
//! status at all); reading a small body first lets the client read the answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

/// At most this much of a refused body is read and thrown away before the answer: enough for
/// any small request a person or a test tool sends, too little to be worth an attacker's while.
pub const DRAIN_MAX: usize = 64 << 10;
/// For at most this long.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads and discards what is left of a refused body, within [`DRAIN_MAX`] and [`DRAIN_TIME`],
/// so that a client still sending reads the refusal rather than a connection reset (closing a
/// socket with unread data makes the kernel send RST, which can destroy the answer in flight).
pub async fn drain<B>(body: &mut B)
where
    B: Body<Data = Bytes> + Unpin,
{
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_MAX {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}
