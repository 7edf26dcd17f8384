//! The answers both listeners give, built in one place: JSON bodies, the health answer, a
//! refusal with its status and headers, and what a `POST /log` accepted.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::ingest::{Accepted, IngestError};
use crate::output::Output;

/// The response type of every answer.
pub type Answer = Response<Full<Bytes>>;

/// An answer with a body of type `content_type`.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    with_body(status, "application/json", body)
}

/// `answer` with one more header.
pub fn with_header(mut answer: Answer, name: HeaderName, value: &str) -> Answer {
    if let Ok(v) = HeaderValue::from_str(value) {
        answer.headers_mut().insert(name, v);
    }
    answer
}

/// `405` naming the methods allowed.
pub fn method_not_allowed(allow: &'static str) -> Answer {
    let body = format!(
        r#"{{"error":"method not allowed; use {}"}}"#,
        allow.replace(", HEAD", "")
    );
    with_header(
        json(StatusCode::METHOD_NOT_ALLOWED, body),
        http::header::ALLOW,
        allow,
    )
}

/// `GET /healthz`: `200` while records can be written, `503` from a failed write until the next
/// write succeeds.
///
/// A seal that cannot be written (LOGGER_SEAL) leaves the answer `200`, with
/// `"seal":"failing"`: records are still written and acknowledged, and what they add stays
/// pending until the next seal succeeds, so a balancer should keep sending here. Taking the daemon
/// out of rotation would stop the evidence being collected at all, and would move the load onto
/// daemons that likely share the cause (a full or read-only disk). The metric
/// `ml_api_logger_seal_failures_total` is what should page someone.
pub fn health(output: &Output) -> Answer {
    match (output.healthy(), output.seal_failing()) {
        (true, false) => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (true, true) => json(StatusCode::OK, r#"{"status":"ok","seal":"failing"}"#),
        (false, false) => json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"output failing"}"#),
        (false, true) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"output failing","seal":"failing"}"#,
        ),
    }
}

/// `200` with what was accepted: `{"accepted":N}`, and the nonconforming and duplicate counts
/// when there are any.
pub fn accepted(a: &Accepted) -> Answer {
    if (a.records, a.nonconforming, a.duplicates) == (1, 0, 0) {
        // The answer to almost every request a sensor sends.
        return json(StatusCode::OK, Bytes::from_static(br#"{"accepted":1}"#));
    }
    let mut body = format!(r#"{{"accepted":{}"#, a.records);
    if a.nonconforming > 0 {
        body.push_str(&format!(r#","nonconforming":{}"#, a.nonconforming));
    }
    if a.duplicates > 0 {
        body.push_str(&format!(r#","duplicates":{}"#, a.duplicates));
    }
    body.push('}');
    json(StatusCode::OK, body)
}

/// The answer for a refusal: its status, `{"error": …}`, and `Retry-After` when it applies.
pub fn refusal(e: &IngestError) -> Answer {
    let body = serde_json::json!({ "error": e.to_string() }).to_string();
    let mut answer = json(e.status(), body);
    if let Some(secs) = e.retry_after() {
        answer = with_header(answer, RETRY_AFTER, &secs.to_string());
    }
    if e.leaves_body_unread() {
        // The rest of the body may still be coming; the connection cannot be reused.
        answer = with_header(answer, CONNECTION, "close");
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::OutputTarget;

    #[test]
    fn a_failing_seal_keeps_health_up_and_says_so() {
        let path = std::env::temp_dir().join(format!("mlal-health-{}", std::process::id()));
        let (output, _writer) = Output::open(&OutputTarget::File(path.clone()), false).unwrap();
        assert_eq!(health(&output).status(), StatusCode::OK);
        let (tap, _) = output.tap_for_sealing().unwrap().unwrap();
        tap.set_failing(true);
        let answer = health(&output);
        assert_eq!(answer.status(), StatusCode::OK);
        let body = format!("{:?}", answer.body());
        assert!(body.contains("seal") && body.contains("failing"), "{body}");
        tap.set_failing(false);
        assert!(!format!("{:?}", health(&output).body()).contains("seal"));
        let _ = std::fs::remove_file(path);
    }
}
