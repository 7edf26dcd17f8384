//! The report as one HTML page: inline CSS and SVG, nothing fetched from anywhere (its
//! Content-Security-Policy forbids it), readable with JavaScript off; a few lines of inline
//! script, allowed by their hash alone, only make tables sortable.
//!
//! The first screen answers what was sent, when, by which sensor, and whether the log is
//! intact; the sections below give the numbers behind it. Every number that `inspect --json`
//! also reports carries `data-count="<its name there>"` (and `data-key` for a URI or status
//! code), so a test can compare the two. Everything taken from the log is escaped.

use std::fmt::Write;

use aws_lc_rs::digest;
use time::OffsetDateTime;

use super::collect::{BodyRow, Collector, Place, MAX_BUCKETS, WAIT_BOUNDS_MS};
use super::svg::{self, escape, thousands, Series, PALETTE};
use super::SealStatus;
use crate::commands::progress;
use crate::summary::Summary;

/// What the page is made from.
pub struct PageInput<'a> {
    /// The heading.
    pub title: &'a str,
    /// When the report was made (Unix ms).
    pub generated_ms: i64,
    /// The counts `inspect` gives.
    pub summary: &'a Summary,
    /// The rest.
    pub collector: &'a Collector,
    /// Each file's seal state, in the order of `collector.files`.
    pub seals: &'a [SealStatus],
}

/// Rows in the sensors table (and series in the timeline, the rest as "others").
const SENSOR_ROWS: usize = 20;
const TIMELINE_SERIES: usize = 7;

const STYLE: &str = r#"
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:18px;margin:32px 0 8px;padding-top:8px;border-top:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 14px}
.verdict{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px;margin:12px 0}
.check{border:1px solid var(--line);border-left-width:6px;border-radius:6px;padding:8px 12px;background:var(--soft)}
.check b{display:block;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.check.ok{border-left-color:var(--ok)}.check.warn{border-left-color:var(--warn)}.check.bad{border-left-color:var(--bad)}.check.na{border-left-color:var(--line)}
.check .state{font-weight:600}.ok .state{color:var(--ok)}.warn .state{color:var(--warn)}.bad .state{color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin:12px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card .n{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right}
td.code,span.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:4px 0 0;padding:0;list-style:none}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.chart{max-width:100%;height:auto;display:block}
.chart .lab{font-size:11px;fill:var(--muted)}.chart .small{font-size:10px}
.chart .grid{stroke:#eaeef2}.chart .axis,.chart .tick{stroke:#8c959f}
.two{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:900px){.two{grid-template-columns:1fr}}
.note{color:var(--muted);font-size:13px}
.bad-text{color:var(--bad)}
th.sort{cursor:pointer}
@media print{h2{break-before:auto}.check,.card{break-inside:avoid}}
"#;

/// Sorts a table by the column whose heading is clicked: numbers by their `data-v`.
const SCRIPT: &str = r#"document.querySelectorAll("table.sortable").forEach(function(t){t.querySelectorAll("th").forEach(function(th,i){th.classList.add("sort");th.title="Sort";th.addEventListener("click",function(){var b=t.tBodies[0],rows=Array.from(b.rows),d=th.dataset.dir==="a"?-1:1;th.dataset.dir=d===1?"a":"d";rows.sort(function(x,y){var p=x.cells[i],q=y.cells[i];var u=p.dataset.v,v=q.dataset.v;if(u!==undefined&&v!==undefined){return d*(Number(v)-Number(u));}return d*p.textContent.localeCompare(q.textContent);});rows.forEach(function(r){b.appendChild(r);});});});});"#;

/// The page.
pub fn render(input: &PageInput<'_>) -> String {
    let s = input.summary;
    let c = input.collector;
    let mut h = String::with_capacity(256 << 10);
    let script_hash = base64(digest::digest(&digest::SHA256, SCRIPT.as_bytes()).as_ref());
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="generator" content="ml_api_logger {version}">
<title>{title}</title><style>{STYLE}</style></head>
<body><main>
<h1>{title}</h1>
"#,
        version = env!("CARGO_PKG_VERSION"),
        title = escape(input.title),
    );
    let files = c.files.len();
    let _ = writeln!(
        h,
        r#"<p class="sub">{} · {} {} read ({}) · made {} UTC by ml_api_logger {}</p>"#,
        period_text(c.period_ms),
        files,
        if files == 1 { "file" } else { "files" },
        progress::bytes(s.bytes),
        utc(input.generated_ms, true),
        env!("CARGO_PKG_VERSION")
    );
    first_screen(&mut h, input);
    sensors_section(&mut h, c);
    what_was_sent(&mut h, s, c);
    waits_section(&mut h, c);
    problems_section(&mut h, s, c);
    marks_section(&mut h, c);
    bodies_section(&mut h, c);
    files_section(&mut h, input);
    counts_section(&mut h, s);
    let _ = writeln!(h, "</main><script>{SCRIPT}</script></body></html>");
    h
}

/// The verdict, the key numbers and the timeline.
fn first_screen(h: &mut String, input: &PageInput<'_>) {
    let s = input.summary;
    let c = input.collector;
    h.push_str(r#"<section aria-label="At a glance"><div class="verdict">"#);
    // Records: do they all conform, and is all of the input records?
    let (class, state, detail) = if s.clean() {
        (
            "ok",
            "Every record conforms".to_string(),
            format!(
                r#"<span data-count="records">{}</span> records, none unreadable."#,
                thousands(s.records)
            ),
        )
    } else {
        (
            "bad",
            "Records that do not conform".to_string(),
            format!(
                r##"<span data-count="nonconforming">{}</span> of <span data-count="records">{}</span> records {} not conform; <span data-count="unreadable">{}</span> {} of the input {} no record. <a href="#problems">The first problems</a>."##,
                thousands(s.nonconforming),
                thousands(s.records),
                if s.nonconforming == 1 { "does" } else { "do" },
                thousands(s.unreadable),
                if s.unreadable == 1 { "stretch" } else { "stretches" },
                if s.unreadable == 1 { "is" } else { "are" }
            ),
        )
    };
    check(h, class, "Records", &state, &detail);
    // Seals: does the log show tampering?
    let failed = input.seals.iter().filter(|x| x.failed()).count();
    let verified = input
        .seals
        .iter()
        .filter(|x| matches!(x, SealStatus::Verified { .. }))
        .count();
    let unchecked = input
        .seals
        .iter()
        .filter(|x| matches!(x, SealStatus::NotChecked { .. }))
        .count();
    let partial: u64 = c.files.iter().filter_map(|f| f.partial_bytes).sum();
    let (class, state, detail) = if failed > 0 {
        (
            "bad",
            "Seals do not verify",
            format!(
                r##"{failed} of {} files changed after they were sealed. <a href="#files">Which, and where</a>."##,
                input.seals.len()
            ),
        )
    } else if verified == input.seals.len() && verified > 0 {
        (
            "ok",
            "Seals verify",
            "Every file verifies against its seals.".to_string(),
        )
    } else if unchecked > 0 {
        (
            "warn",
            "Seals not checked",
            format!(
                "{unchecked} {} sealed; give <span class=\"code\">--key</span> to check {}.",
                if unchecked == 1 { "file is" } else { "files are" },
                if unchecked == 1 { "it" } else { "them" }
            ),
        )
    } else {
        (
            "na",
            "Not sealed",
            "No .seal files beside the logs: changes to them cannot be detected.".to_string(),
        )
    };
    let detail = if partial > 0 {
        format!(
            "{detail} {} cut short by a crash were kept aside in .partial files.",
            progress::bytes(partial)
        )
    } else {
        detail
    };
    check(h, class, "Tampering", state, &detail);
    // Correlation: was everything answered?
    let gaps = s.unanswered_requests + s.orphan_responses;
    let class = if gaps == 0 && s.sequence_resets == 0 {
        "ok"
    } else {
        "warn"
    };
    let state = if gaps == 0 {
        "Every request answered"
    } else {
        "Gaps in the exchanges"
    };
    let detail = format!(
        r#"<span data-count="unanswered_requests">{}</span> unanswered, <span data-count="orphan_responses">{}</span> orphan {}, <span data-count="sequence_resets">{}</span> sequence {} (sensor restarts)."#,
        thousands(s.unanswered_requests),
        thousands(s.orphan_responses),
        plural(s.orphan_responses, "response", "responses"),
        thousands(s.sequence_resets),
        plural(s.sequence_resets, "reset", "resets")
    );
    check(h, class, "Exchanges", state, &detail);
    h.push_str("</div>");

    // What was sent: the key numbers.
    h.push_str(r#"<div class="cards">"#);
    card(h, "requests", s.requests, "requests sent");
    card(h, "responses", s.responses, "responses received");
    card(h, "pairs", s.pairs, "exchanges matched");
    // Past the caps the numbers are lower bounds: "10,000+".
    let more = |m: bool| if m { "+" } else { "" };
    let _ = write!(
        h,
        r#"<div class="card"><div class="n"><span data-count="distinct_request_uris">{}</span>{}</div><div class="k">distinct URIs</div></div>"#,
        thousands(s.distinct_request_uris),
        more(s.other_request_uris > 0)
    );
    let (sensors, past_cap) = c.sensor_count();
    let _ = write!(
        h,
        r#"<div class="card"><div class="n">{}{}</div><div class="k">{}</div></div>"#,
        thousands(sensors as u64),
        more(past_cap),
        if sensors == 1 && !past_cap {
            "sensor"
        } else {
            "sensors"
        }
    );
    let _ = write!(
        h,
        r#"<div class="card"><div class="n">{}</div><div class="k">request bodies, total</div></div>"#,
        progress::bytes(c.request_body_bytes)
    );
    h.push_str("</div>");

    // When, and by which sensor.
    h.push_str(r#"<h3>Requests over time, by sensor</h3>"#);
    timeline(h, c);
    h.push_str("</section>");
}

fn check(h: &mut String, class: &str, what: &str, state: &str, detail: &str) {
    let _ = write!(
        h,
        r#"<div class="check {class}"><b>{what}</b><div class="state">{state}</div><div>{detail}</div></div>"#
    );
}

fn card(h: &mut String, name: &str, n: u64, what: &str) {
    let _ = write!(
        h,
        r#"<div class="card"><div class="n" data-count="{name}">{}</div><div class="k">{what}</div></div>"#,
        thousands(n)
    );
}

/// The stacked timeline of requests per sensor, or why there is none.
fn timeline(h: &mut String, c: &Collector) {
    let (width_s, range) = c.timeline();
    let Some((lo, hi)) = range else {
        h.push_str(r#"<p class="note">No request carries a receive time (<span class="code">_received_at</span>): the log was not written with <span class="code">--annotate</span>, so it cannot say when anything was sent.</p>"#);
        return;
    };
    let n = (hi - lo + 1).clamp(1, MAX_BUCKETS as i64) as usize;
    let sensors = c.sensors(TIMELINE_SERIES);
    let labels: Vec<String> = (0..n)
        .map(|i| {
            utc(
                (lo + i as i64).saturating_mul(width_s).saturating_mul(1000),
                width_s < 86_400,
            )
        })
        .collect();
    let ticks = time_ticks(lo, n, width_s);
    let series: Vec<Series<'_>> = sensors
        .iter()
        .map(|s| Series {
            name: &s.name,
            values: (0..n)
                .map(|i| s.series.get(&(lo + i as i64)).copied().unwrap_or(0))
                .collect(),
        })
        .collect();
    h.push_str(&svg::stacked_columns(
        &format!("Requests per {} by sensor", duration_text(width_s * 1000)),
        &labels,
        &ticks,
        &series,
        1130,
        240,
    ));
    h.push_str(r#"<ul class="legend">"#);
    for (k, s) in sensors.iter().enumerate() {
        let _ = write!(
            h,
            r#"<li><i style="background:{}"></i>{} ({})</li>"#,
            PALETTE[k.min(PALETTE.len() - 1)],
            escape(&s.name),
            thousands(s.requests)
        );
    }
    let untimed: u64 = sensors.iter().map(|s| s.untimed).sum();
    let _ = write!(
        h,
        r#"</ul><p class="note">Each column is {} (UTC), by the time the logger received the request. {}</p>"#,
        duration_text(width_s * 1000),
        if untimed > 0 {
            format!(
                "{} requests carry no receive time and are not shown.",
                thousands(untimed)
            )
        } else {
            String::new()
        }
    );
}

fn sensors_section(h: &mut String, c: &Collector) {
    h.push_str(r#"<h2 id="sensors">Sensors</h2>"#);
    let sensors = c.sensors(SENSOR_ROWS);
    let (_, range) = c.timeline();
    h.push_str(r#"<p class="note">A sensor is the certificate name of its client certificate (<span class="code">_client</span>) or its address (<span class="code">_peer</span> without the port), as the logger annotated each record. Requests and responses count every conforming record, duplicates included, as <span class="code">inspect</span> does.</p>"#);
    h.push_str(r#"<table class="sortable"><thead><tr><th>sensor</th><th class="num">requests</th><th class="num">responses</th><th class="num">matched</th><th class="num">unanswered</th><th class="num">orphans</th><th class="num">duplicates</th><th class="num">resets</th><th>over time</th></tr></thead><tbody>"#);
    for s in &sensors {
        let spark = match range {
            Some((lo, hi)) => {
                let n = (hi - lo + 1).clamp(1, MAX_BUCKETS as i64);
                let values: Vec<u64> = (0..n)
                    .map(|i| s.series.get(&(lo + i)).copied().unwrap_or(0))
                    .collect();
                svg::sparkline(&values, 160, 22)
            }
            None => String::new(),
        };
        let _ = write!(
            h,
            r#"<tr><td class="code">{}</td>{}{}{}{}{}{}{}<td>{spark}</td></tr>"#,
            escape(&s.name),
            num(s.requests),
            num(s.responses),
            num(s.pairs),
            num(s.unanswered),
            num(s.orphans),
            num(s.duplicates),
            num(s.resets)
        );
    }
    h.push_str("</tbody></table>");
}

fn num(n: u64) -> String {
    format!(r#"<td class="num" data-v="{n}">{}</td>"#, thousands(n))
}

fn what_was_sent(h: &mut String, s: &Summary, c: &Collector) {
    h.push_str(r#"<h2 id="sent">What was sent</h2><div class="two"><div>"#);
    // Methods.
    let methods = c.methods();
    h.push_str("<h3>Methods</h3>");
    let mut rows: Vec<(String, u64)> = methods.clone();
    if c.other_methods > 0 {
        rows.push(("(others)".into(), c.other_methods));
    }
    if rows.is_empty() {
        h.push_str(r#"<p class="note">No requests.</p>"#);
    } else {
        h.push_str(&svg::bars("Requests by method", &rows, 540));
    }
    // Status codes.
    h.push_str("</div><div><h3>Response status codes</h3>");
    let rows: Vec<(String, u64)> = s
        .top_status_codes
        .iter()
        .map(|x| (x.value.clone(), x.count))
        .collect();
    if rows.is_empty() {
        h.push_str(r#"<p class="note">No responses.</p>"#);
    } else {
        h.push_str(&svg::bars("Responses by status code", &rows, 540));
        h.push_str(r#"<table><thead><tr><th>status</th><th class="num">responses</th></tr></thead><tbody>"#);
        for x in &s.top_status_codes {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="num" data-count="top_status_codes" data-key="{}">{}</td></tr>"#,
                escape(&x.value),
                escape(&x.value),
                thousands(x.count)
            );
        }
        let shown: u64 = s.top_status_codes.iter().map(|x| x.count).sum();
        if s.responses > shown {
            let _ = write!(
                h,
                r#"<tr><td>others</td><td class="num">{}</td></tr>"#,
                thousands(s.responses - shown)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</div></div>");
    // URIs.
    h.push_str("<h3>Most requested URIs</h3>");
    if s.top_request_uris.is_empty() {
        h.push_str(r#"<p class="note">No requests.</p>"#);
        return;
    }
    let rows: Vec<(String, u64)> = s
        .top_request_uris
        .iter()
        .map(|x| (x.value.clone(), x.count))
        .collect();
    h.push_str(&svg::bars("Requests by RequestURI", &rows, 1130));
    h.push_str(r#"<table class="sortable"><thead><tr><th>RequestURI</th><th class="num">requests</th><th class="num">share</th></tr></thead><tbody>"#);
    for x in &s.top_request_uris {
        let _ = write!(
            h,
            r#"<tr><td class="code">{}</td><td class="num" data-v="{}" data-count="top_request_uris" data-key="{}">{}</td><td class="num" data-v="{}">{}</td></tr>"#,
            escape(&x.value),
            x.count,
            escape(&x.value),
            thousands(x.count),
            x.count,
            percent(x.count, s.requests)
        );
    }
    let shown: u64 = s.top_request_uris.iter().map(|x| x.count).sum();
    if s.requests > shown {
        let _ = write!(
            h,
            r#"<tr><td>others ({} more distinct URIs{})</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td></tr>"#,
            thousands(
                s.distinct_request_uris
                    .saturating_sub(s.top_request_uris.len() as u64)
            ),
            if s.other_request_uris > 0 {
                ", and URIs past the counted ones"
            } else {
                ""
            },
            s.requests - shown,
            thousands(s.requests - shown),
            s.requests - shown,
            percent(s.requests - shown, s.requests)
        );
    }
    h.push_str("</tbody></table>");
}

fn plural<'a>(n: u64, one: &'a str, more: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        more
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".into();
    }
    format!("{:.1} %", 100.0 * part as f64 / whole as f64)
}

fn waits_section(h: &mut String, c: &Collector) {
    h.push_str(r#"<h2 id="waits">Response wait times</h2>"#);
    let w = &c.waits;
    if w.count == 0 {
        h.push_str(r#"<p class="note">No matched exchange has receive times on both sides (<span class="code">_received_at</span>, written with <span class="code">--annotate</span>).</p>"#);
        return;
    }
    h.push_str(r#"<div class="cards">"#);
    for (label, p) in [
        ("median", 50.0),
        ("90th percentile", 90.0),
        ("99th percentile", 99.0),
    ] {
        let _ = write!(
            h,
            r#"<div class="card"><div class="n">≤ {}</div><div class="k">{label}</div></div>"#,
            duration_text(w.percentile(p).unwrap_or(0))
        );
    }
    let _ = write!(
        h,
        r#"<div class="card"><div class="n">{}</div><div class="k">longest</div></div><div class="card"><div class="n" data-wait-count>{}</div><div class="k">exchanges timed</div></div></div>"#,
        duration_text(w.max_ms),
        thousands(w.count)
    );
    let mut buckets = Vec::new();
    let mut low = 0i64;
    for (i, up) in WAIT_BOUNDS_MS.iter().enumerate() {
        buckets.push((format!("<{}", duration_text(*up)), w.buckets[i]));
        low = *up;
    }
    buckets.push((
        format!("≥{}", duration_text(low)),
        w.buckets[WAIT_BOUNDS_MS.len()],
    ));
    h.push_str(&svg::histogram(
        "Wait from request to response",
        &buckets,
        1130,
        220,
    ));
    let _ = write!(
        h,
        r#"<p class="note">From the logger's receipt of a request to its receipt of the response, by <span class="code">_received_at</span> (millisecond precision); percentiles within about 3 %. {}{}</p>"#,
        if c.untimed_pairs > 0 {
            format!(
                "{} matched exchanges lack a time and are not counted. ",
                thousands(c.untimed_pairs)
            )
        } else {
            String::new()
        },
        if w.negative > 0 {
            format!(
                "{} responses were received before their request (two loggers' clocks disagree) and are not counted.",
                thousands(w.negative)
            )
        } else {
            String::new()
        }
    );
}

fn place(c: &Collector, p: Place) -> String {
    let name = c
        .files
        .get(p.file as usize)
        .map(|f| f.name.as_str())
        .unwrap_or("?");
    format!("{}:{}", escape(name), p.line)
}

fn problems_section(h: &mut String, s: &Summary, c: &Collector) {
    h.push_str(r#"<h2 id="problems">Nonconforming records and gaps</h2>"#);
    let _ = write!(
        h,
        r#"<h3>Problems</h3><p><span data-count="problems_total">{}</span> {}: <span data-count="nonconforming">{}</span> not conforming to the record format, <span data-count="unreadable">{}</span> {} of input that {} no record.</p>"#,
        thousands(s.problems_total),
        plural(s.problems_total, "problem", "problems"),
        thousands(s.nonconforming),
        thousands(s.unreadable),
        plural(s.unreadable, "stretch", "stretches"),
        plural(s.unreadable, "is", "are")
    );
    if !s.problems.is_empty() {
        let _ = write!(
            h,
            r#"<table><thead><tr><th>where</th><th>what is wrong (the first {})</th></tr></thead><tbody>"#,
            s.problems.len()
        );
        for p in &s.problems {
            let _ = write!(
                h,
                r#"<tr><td class="code">{}:{}</td><td>{}</td></tr>"#,
                escape(&p.file),
                p.line,
                escape(&p.error)
            );
        }
        h.push_str("</tbody></table>");
    }
    let unanswered = c.unanswered();
    let _ = write!(
        h,
        r#"<h3>Requests never answered</h3><p>Requests that never got a response in these files: <span data-count="unanswered_requests">{}</span>. Responses with no request waiting (orphans): <span data-count="orphan_responses">{}</span>. Records repeated (a sensor's retries, counted once): <span data-count="duplicates">{}</span>. Records that reuse a sequence with other content: <span data-count="sequence_reuses">{}</span>, after <span data-count="sequence_resets">{}</span> {} restarting {} numbering.</p>"#,
        thousands(s.unanswered_requests),
        thousands(s.orphan_responses),
        thousands(s.duplicates),
        thousands(s.sequence_reuses),
        thousands(s.sequence_resets),
        plural(s.sequence_resets, "sensor", "sensors"),
        plural(s.sequence_resets, "its", "their")
    );
    if !unanswered.is_empty() {
        let _ = write!(
            h,
            r#"<table><thead><tr><th>where (the first {})</th><th>sensor</th><th>received</th><th class="num">sequence</th><th>request</th></tr></thead><tbody>"#,
            unanswered.len()
        );
        for u in &unanswered {
            let _ = write!(
                h,
                r#"<tr><td class="code">{}</td><td class="code">{}</td><td>{}</td><td class="num">{}</td><td class="code">{} {}</td></tr>"#,
                place(c, u.place),
                escape(&u.sensor),
                u.time_ms.map(|t| utc(t, true)).unwrap_or_else(|| "–".into()),
                u.sequence,
                escape(&u.method),
                escape(u.uri.as_deref().unwrap_or("(not remembered)"))
            );
        }
        h.push_str("</tbody></table>");
    }
}

fn marks_section(h: &mut String, c: &Collector) {
    h.push_str(r#"<h2 id="redacted">Redacted credentials</h2>"#);
    if c.marks_total == 0 {
        h.push_str(r#"<p class="note">No redaction marks (<span class="code">[redacted hmac:…]</span>) in these files.</p>"#);
        return;
    }
    let _ = write!(
        h,
        r#"<p><span data-marks-total>{}</span> credential values were written as redaction marks, <span data-marks-distinct>{}</span> distinct. A mark stands for one value: the same mark means the same credential was sent again; a new mark, that it changed. The values themselves are not in the log.</p>"#,
        thousands(c.marks_total),
        thousands(c.distinct_marks() as u64)
    );
    h.push_str(r#"<table class="sortable"><thead><tr><th>mark</th><th>header</th><th class="num">times seen</th><th>first seen</th></tr></thead><tbody>"#);
    for (hex, m) in c.marks(20) {
        let _ = write!(
            h,
            r#"<tr><td class="code">[redacted hmac:{}]</td><td class="code">{}</td><td class="num" data-v="{}" data-mark="{}">{}</td><td class="code">{}</td></tr>"#,
            escape(&hex),
            escape(m.header.as_deref().unwrap_or("(not in a header)")),
            m.count,
            escape(&hex),
            thousands(m.count),
            place(c, m.first)
        );
    }
    h.push_str("</tbody></table>");
    if c.marks_uncounted > 0 {
        let _ = write!(
            h,
            r#"<p class="note">{} more marks past the first 10,000 distinct are counted only in the total.</p>"#,
            thousands(c.marks_uncounted)
        );
    }
}

fn bodies_section(h: &mut String, c: &Collector) {
    h.push_str(r#"<h2 id="bodies">Largest bodies</h2><p class="note">Sizes of <span class="code">request_body</span> and <span class="code">response_body</span> as logged (JSON, whitespace removed).</p>"#);
    for (what, rows) in [
        ("Request bodies", &c.request_bodies),
        ("Response bodies", &c.response_bodies),
    ] {
        let _ = write!(h, "<h3>{what}</h3>");
        if rows.is_empty() {
            h.push_str(r#"<p class="note">None.</p>"#);
            continue;
        }
        h.push_str(r#"<table><thead><tr><th class="num">size</th><th>RequestURI</th><th>sensor</th><th>received</th><th class="num">sequence</th><th>where</th></tr></thead><tbody>"#);
        for r in rows.iter() {
            body_row(h, c, r);
        }
        h.push_str("</tbody></table>");
    }
}

fn body_row(h: &mut String, c: &Collector, r: &BodyRow) {
    let _ = write!(
        h,
        r#"<tr><td class="num" title="{} bytes">{}</td><td class="code">{}</td><td class="code">{}</td><td>{}</td><td class="num">{}</td><td class="code">{}</td></tr>"#,
        r.size,
        progress::bytes(r.size),
        escape(r.uri.as_deref().unwrap_or("(no request)")),
        escape(&r.sensor),
        r.time_ms.map(|t| utc(t, true)).unwrap_or_else(|| "–".into()),
        r.sequence,
        place(c, r.place)
    );
}

fn files_section(h: &mut String, input: &PageInput<'_>) {
    let c = input.collector;
    h.push_str(r#"<h2 id="files">Files read</h2><table><thead><tr><th>file</th><th class="num">size</th><th class="num">lines</th><th class="num">records</th><th class="num">problems</th><th>earliest</th><th>latest</th><th>seals</th></tr></thead><tbody>"#);
    for (i, f) in c.files.iter().enumerate() {
        let seal = match input.seals.get(i) {
            Some(SealStatus::NotSealed) | None => "not sealed".to_string(),
            Some(SealStatus::NotChecked { why }) => format!("sealed, not checked: {}", escape(why)),
            Some(SealStatus::Verified { notes }) => {
                let mut t = "<b>verified</b>".to_string();
                for n in notes {
                    let _ = write!(t, "<br>{}", escape(n));
                }
                t
            }
            Some(SealStatus::Failed { failures }) => {
                let mut t = r#"<b class="bad-text">does not verify</b>"#.to_string();
                for n in failures.iter().take(20) {
                    let _ = write!(t, "<br>{}", escape(n));
                }
                t
            }
        };
        let partial = f
            .partial_bytes
            .map(|b| {
                format!(
                    r#"<br><span class="note">.partial beside it: {}</span>"#,
                    progress::bytes(b)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<tr><td class="code">{}{partial}</td><td class="num" title="{} bytes">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{seal}</td></tr>"#,
            escape(&f.name),
            f.bytes,
            progress::bytes(f.size.unwrap_or(f.bytes)),
            thousands(f.lines),
            thousands(f.records),
            thousands(f.nonconforming + f.unreadable),
            f.first_ms.map(|t| utc(t, true)).unwrap_or_else(|| "–".into()),
            f.last_ms.map(|t| utc(t, true)).unwrap_or_else(|| "–".into()),
        );
    }
    h.push_str("</tbody></table>");
}

/// Every count of `inspect --json`, named as there.
fn counts_section(h: &mut String, s: &Summary) {
    h.push_str(r#"<h2 id="counts">All counts</h2><p class="note">As <span class="code">ml_api_logger inspect --json</span> reports them for the same files; records are paired by "#);
    h.push_str(&escape(&s.keyed_by));
    h.push_str(r#".</p><table><tbody>"#);
    let opt = |v: Option<u64>| v.map(|n| n.to_string());
    let some = |n: u64| Some(n.to_string());
    let rows: [(&str, &str, Option<String>); 20] = [
        ("bytes", "bytes read", some(s.bytes)),
        ("records", "records (JSON objects)", some(s.records)),
        ("requests", "requests", some(s.requests)),
        ("responses", "responses", some(s.responses)),
        ("conforming", "conforming", some(s.conforming)),
        ("nonconforming", "not conforming", some(s.nonconforming)),
        ("unreadable", "unreadable stretches", some(s.unreadable)),
        ("problems_total", "problems", some(s.problems_total)),
        ("pairs", "matched pairs", some(s.pairs)),
        ("orphan_responses", "orphan responses", some(s.orphan_responses)),
        (
            "unanswered_requests",
            "unanswered requests",
            some(s.unanswered_requests),
        ),
        ("duplicates", "duplicates", some(s.duplicates)),
        ("sequence_reuses", "sequence reuses", some(s.sequence_reuses)),
        ("sequence_resets", "sequence resets", some(s.sequence_resets)),
        ("sequence_min", "lowest sequence", opt(s.sequence_min)),
        ("sequence_max", "highest sequence", opt(s.sequence_max)),
        (
            "distinct_request_uris",
            "distinct RequestURIs",
            some(s.distinct_request_uris),
        ),
        (
            "other_request_uris",
            "requests past the URI cap",
            some(s.other_request_uris),
        ),
        (
            "redacted_values",
            "redacted header values",
            some(s.redacted_values),
        ),
        (
            "distinct_redaction_marks",
            "distinct redaction marks",
            some(s.distinct_redaction_marks),
        ),
    ];
    for (name, label, value) in rows {
        // A count that does not exist (no sequence at all) is shown, but not marked as one.
        let _ = match value {
            Some(v) => write!(
                h,
                r#"<tr><th>{label}</th><td class="num" data-count="{name}">{v}</td></tr>"#
            ),
            None => write!(h, r#"<tr><th>{label}</th><td class="num">–</td></tr>"#),
        };
    }
    h.push_str("</tbody></table>");
}

/// Labels under a timeline of `n` buckets of `width_s` from bucket `lo`: at round times (whole
/// hours, days, …), at most eight; the date where it changes, else the time of day.
fn time_ticks(lo: i64, n: usize, width_s: i64) -> Vec<(usize, String)> {
    const PERIODS: [i64; 14] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 2_419_200,
    ];
    let span = width_s.saturating_mul(n as i64);
    let period = PERIODS
        .iter()
        .copied()
        .find(|p| *p >= width_s && span / p <= 8)
        .unwrap_or_else(|| (span / 8).max(width_s));
    let mut ticks = Vec::new();
    let mut last_day = None;
    for i in 0..n {
        let start = (lo + i as i64).saturating_mul(width_s);
        if start.rem_euclid(period) >= width_s && !(i == 0 && n < 3) {
            continue;
        }
        let Ok(t) = OffsetDateTime::from_unix_timestamp(start) else {
            continue;
        };
        let day = (t.year(), t.ordinal());
        let text = if period >= 86_400 {
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        } else if last_day != Some(day) {
            format!(
                "{:02}-{:02} {:02}:{:02}",
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        } else {
            format!("{:02}:{:02}", t.hour(), t.minute())
        };
        last_day = Some(day);
        ticks.push((i, text));
    }
    ticks
}

/// `2026-11-25 15:35:22` (UTC) or `2026-11-25`.
fn utc(ms: i64, with_time: bool) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return "?".into();
    };
    if with_time {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    } else {
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    }
}

fn period_text(period: Option<(i64, i64)>) -> String {
    match period {
        Some((a, b)) => format!(
            "{} to {} UTC ({})",
            utc(a, true),
            utc(b, true),
            duration_text(b.saturating_sub(a))
        ),
        None => "period unknown (no receive times in the log)".into(),
    }
}

/// `250 ms`, `1.5 s`, `3 min`, `2 h 5 min`, `3 days`.
fn duration_text(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        return if ms % 1000 == 0 {
            format!("{} s", ms / 1000)
        } else {
            format!("{s:.1} s")
        };
    }
    let min = ms / 60_000;
    if min < 60 {
        return format!("{min} min");
    }
    let (h, m) = (min / 60, min % 60);
    if h < 48 {
        return if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        };
    }
    format!("{} days", h / 24)
}

/// Standard base64 with padding, for the script's hash in the page's policy.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_durations() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(duration_text(5), "5 ms");
        assert_eq!(duration_text(1500), "1.5 s");
        assert_eq!(duration_text(3_600_000), "1 h");
        assert_eq!(duration_text(7_500_000), "2 h 5 min");
    }

    #[test]
    fn timeline_ticks_fall_on_round_times() {
        // Five-minute buckets from 08:00 for five hours: a label each hour, the date first.
        let lo = 1_764_489_600 / 300;
        let ticks = time_ticks(lo, 60, 300);
        let texts: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(texts, ["11-30 08:00", "09:00", "10:00", "11:00", "12:00"]);
        assert_eq!(ticks[1].0, 12);
        // Weeks of days: dates.
        let days = time_ticks(1_764_460_800 / 86_400, 60, 86_400);
        assert!(days.len() <= 9 && days[0].1.starts_with("2025-"), "{days:?}");
    }

    #[test]
    fn an_empty_log_makes_a_page() {
        let summary = Summary::default();
        let c = Collector::new();
        let page = render(&PageInput {
            title: "<t>",
            generated_ms: 0,
            summary: &summary,
            collector: &c,
            seals: &[],
        });
        assert!(page.contains("<h1>&lt;t&gt;</h1>"));
        assert!(!page.contains("<script src"));
    }
}
