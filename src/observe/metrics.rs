//! `GET /metrics`: the counters of [`Stats`] and [`OutputStats`] in the Prometheus text format.
//!
//! A prometheus-client [`Collector`] reads the atomics the daemon already keeps at scrape time,
//! so nothing is counted twice and the hot path does no more than its one atomic add. Every
//! name starts with `ml_api_logger_`. This module formats; it does not serve (that is
//! [`crate::http::admin`]) and it does not count.
//!
//! [`OutputStats`]: crate::output::OutputStats

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::observe::stats::{Histogram, Stats};
use crate::output::Output;

/// The `Content-Type` of a scrape: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The statuses a `POST /log` can be refused with (`IngestError::status`), and `other`.
const REFUSALS: [&str; 7] = ["400", "408", "413", "415", "422", "503", "other"];

/// The registry behind `/metrics`.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics read from `stats` and from `output`'s writer.
    pub fn new(stats: Arc<Stats>, output: Output) -> Metrics {
        let mut registry = Registry::with_prefix("ml_api_logger");
        registry.register_collector(Box::new(Source { stats, output }));
        Metrics { registry }
    }

    /// One scrape's text.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 << 10);
        // Writing to a String cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!("metrics: cannot encode: {e}");
        }
        text
    }
}

/// Where the values come from.
struct Source {
    stats: Arc<Stats>,
    output: Output,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ml_api_logger metrics source")
    }
}

/// Writes one metric family after another.
struct Out<'a> {
    enc: DescriptorEncoder<'a>,
}

impl Out<'_> {
    fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        self.enc
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, u64, u64>(&v, None)
    }

    fn counters<L: EncodeLabelSet>(&mut self, name: &str, help: &str, values: &[(L, u64)]) -> fmt::Result {
        let mut m = self
            .enc
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in values {
            m.encode_family(labels)?
                .encode_counter::<NoLabelSet, u64, u64>(v, None)?;
        }
        Ok(())
    }

    fn gauge(&mut self, name: &str, help: &str, v: i64) -> fmt::Result {
        self.enc
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&v)
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> fmt::Result {
        let counts = h.buckets();
        let buckets: Vec<(f64, u64)> = h
            .bounds()
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        let count = counts.iter().sum();
        self.enc
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum_f64(), count, &buckets, None)
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Source {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.stats;
        let g = Stats::get;
        let o = self.output.stats();
        let mut out = Out { enc };

        out.enc
            .encode_descriptor("build", "The running version (always 1).", None, MetricType::Info)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        // Records.
        let written = g(&s.records_written);
        let requests = g(&s.requests_written);
        let responses = g(&s.responses_written);
        out.counters(
            "records",
            "Records received in accepted POST /log bodies, by kind and outcome: written, or a \
             sender's retry not written again (duplicate). kind=\"nonconforming\" are records \
             written though they do not conform (no kind can be told).",
            &[
                ([("kind", "request"), ("outcome", "written")], requests),
                ([("kind", "response"), ("outcome", "written")], responses),
                (
                    [("kind", "nonconforming"), ("outcome", "written")],
                    written.saturating_sub(requests + responses),
                ),
                (
                    [("kind", "request"), ("outcome", "duplicate")],
                    g(&s.duplicate_requests),
                ),
                (
                    [("kind", "response"), ("outcome", "duplicate")],
                    g(&s.duplicate_responses),
                ),
            ],
        )?;
        out.counter(
            "redacted_values",
            "Header values written as keyed marks instead of as sent (LOGGER_REDACT), in the records \
             written.",
            g(&s.redacted_values),
        )?;
        out.counter(
            "posts_accepted",
            "POST /log requests answered 200.",
            g(&s.posts_accepted),
        )?;
        out.counters(
            "posts_refused",
            "POST /log requests refused (nothing of them written), by status.",
            &s.posts_refused_by_status
                .snapshot()
                .into_iter()
                .filter(|(status, _)| REFUSALS.contains(status))
                .map(|(status, v)| ([("status", status)], v))
                .collect::<Vec<_>>(),
        )?;
        out.counters(
            "http_responses",
            "Answers of the TLS listener, by status.",
            &s.http_answers
                .snapshot()
                .into_iter()
                .map(|(status, v)| ([("status", status)], v))
                .collect::<Vec<_>>(),
        )?;

        // The output.
        out.counter("output_bytes", "Bytes written to the output.", g(&o.bytes))?;
        out.counter(
            "output_write_batches",
            "Writes to the output; each gathers every request waiting at that moment.",
            g(&o.batches),
        )?;
        out.counter(
            "output_write_failures",
            "Writes that failed and were rolled back (their requests answered 503).",
            g(&o.failures),
        )?;
        out.histogram(
            "output_batch_records",
            "Records gathered into one write.",
            &o.batch_records,
        )?;
        out.histogram(
            "output_write_seconds",
            "Time to hand one batch to the kernel (write(2)).",
            &o.write_seconds,
        )?;
        out.histogram(
            "output_sync_seconds",
            "Time of one fdatasync(2) (LOGGER_FSYNC=on).",
            &o.sync_seconds,
        )?;
        let (queued, queued_bytes) = self.output.queue_depth();
        out.gauge(
            "output_queue_requests",
            "Requests waiting for the writer.",
            i(queued),
        )?;
        out.gauge(
            "output_queue_bytes",
            "Bytes waiting for the writer.",
            i(queued_bytes),
        )?;
        out.gauge(
            "output_healthy",
            "1 while records can be written; 0 from a failed write until the next one succeeds.",
            i64::from(self.output.healthy()),
        )?;

        // Connections.
        out.gauge(
            "connections_open",
            "TLS listener connections open now.",
            i(g(&s.connections_open)),
        )?;
        out.counter(
            "connections",
            "TLS listener connections accepted (before the handshake).",
            g(&s.connections_total),
        )?;
        out.counters(
            "connections_refused",
            "Connections closed before HTTP: the peer is not on LOGGER_ALLOW (allowlist), the \
             connection cap stayed full (cap), the PROXY protocol header was missing, malformed, \
             oversized or sent by a peer not on LOGGER_PROXY_PROTOCOL (proxy), or the TLS \
             handshake failed or timed out (tls).",
            &[
                ([("reason", "allowlist")], g(&s.connections_refused_allowlist)),
                ([("reason", "cap")], g(&s.connections_refused_cap)),
                ([("reason", "proxy")], g(&s.connections_refused_proxy)),
                ([("reason", "tls")], g(&s.tls_failures)),
            ],
        )?;
        out.counter(
            "connections_timed_out",
            "Connections closed for the header or idle timeout.",
            g(&s.timeouts),
        )?;

        // Correlation.
        out.counter(
            "correlation_requests",
            "Request records correlated (written).",
            g(&s.requests_seen),
        )?;
        out.counter(
            "correlation_responses",
            "Response records correlated (written).",
            g(&s.responses_seen),
        )?;
        out.counter(
            "correlation_matched",
            "Responses that completed a waiting request.",
            g(&s.matched),
        )?;
        out.counter(
            "correlation_orphan_responses",
            "Responses with no request waiting.",
            g(&s.orphan_responses),
        )?;
        out.counter(
            "correlation_unanswered",
            "Requests with no response within LOGGER_RESPONSE_TIMEOUT, or dropped at LOGGER_MAX_PENDING.",
            g(&s.unanswered),
        )?;
        out.counter(
            "correlation_duplicates",
            "Records received again (a sender's retry) and not written again.",
            g(&s.duplicates),
        )?;
        out.counter(
            "correlation_sequence_reuses",
            "Records with the sequence and kind of a recent one but other bytes (the sender restarted its numbering).",
            g(&s.sequence_reuses),
        )?;
        out.gauge(
            "correlation_pending",
            "Requests waiting for their response now.",
            i(g(&s.pending)),
        )?;
        out.histogram(
            "response_wait_seconds",
            "Time from a request record's arrival to its response's.",
            &s.response_wait,
        )?;

        // The certificate.
        out.gauge(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (notAfter), Unix time; 0 when unreadable.",
            s.cert_not_after.load(std::sync::atomic::Ordering::Relaxed),
        )?;

        // Sealing (LOGGER_SEAL); zero while it is off.
        out.counter(
            "seal_entries",
            "Seal entries appended to OUTPUT.seal (start, seal, reopen, stop, repair).",
            g(&s.seal_entries),
        )?;
        out.counter(
            "seal_failures",
            "Attempts to seal that failed; the range stays pending and is sealed at the next try.",
            g(&s.seal_failures),
        )?;
        out.gauge(
            "seal_last_timestamp_seconds",
            "When the last seal entry was appended, Unix time; 0 before the first.",
            s.seal_last_unix.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::OutputTarget;

    #[tokio::test]
    async fn every_family_is_named_and_typed() {
        let path = std::env::temp_dir().join(format!("mlal-metrics-{}", std::process::id()));
        let (output, writer) = Output::open(&OutputTarget::File(path.clone()), false).unwrap();
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.records_written, 3);
        Stats::add(&stats.requests_written, 2);
        Stats::add(&stats.redacted_values, 4);
        stats.http_answers.count(200);
        output.write(b"{}\n{}\n".to_vec()).await.unwrap();
        let text = Metrics::new(stats, output).render();
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let _ = std::fs::remove_file(&path);
        for line in [
            "ml_api_logger_build_info{version=\"",
            "ml_api_logger_records_total{kind=\"request\",outcome=\"written\"} 2\n",
            "ml_api_logger_records_total{kind=\"nonconforming\",outcome=\"written\"} 1\n",
            "ml_api_logger_http_responses_total{status=\"200\"} 1\n",
            "ml_api_logger_redacted_values_total 4\n",
            "# TYPE ml_api_logger_output_batch_records histogram\n",
            "ml_api_logger_output_batch_records_bucket{le=\"2\"} 1\n",
            "ml_api_logger_output_batch_records_bucket{le=\"+Inf\"} 1\n",
            "ml_api_logger_output_batch_records_sum 2.0\n",
            "ml_api_logger_output_healthy 1\n",
            "ml_api_logger_output_bytes_total 6\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(text
            .lines()
            .all(|l| l.starts_with("# ") || l.starts_with("ml_api_logger_")));
    }
}
