//! What the report shows beyond the summary's counts, gathered one record at a time as an
//! [`Observer`] of the shared [`Inspector`](crate::summary::Inspector): the files read, the
//! period, each sensor's exchanges over time, methods, wait times, redaction marks, the largest
//! bodies and the first unanswered requests.
//!
//! Everything here is bounded whatever the log: sensors, URIs, methods and marks are counted
//! up to a cap (the rest as "others"), the timeline coarsens its buckets so that there are never
//! more than [`MAX_BUCKETS`], and the wait-time histogram has fixed buckets. Text taken from
//! the log is kept truncated; escaping it is the page's job.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::correlate::canonical;
use crate::observe::timefmt::parse_rfc3339_millis;
use crate::record::Record;
use crate::summary::Observer;

/// Sensors counted one by one; later ones are counted together as "others".
pub const MAX_SENSORS: usize = 256;
/// Time buckets at most: the bucket width grows when the period would need more.
pub const MAX_BUCKETS: usize = 240;
/// Distinct `RequestURI`s remembered for the tables of bodies and unanswered requests.
const MAX_URIS: usize = 10_000;
/// Distinct methods counted; later ones are counted together.
const MAX_METHODS: usize = 64;
/// Distinct redaction marks counted; later ones are only tallied.
const MAX_MARKS: usize = 10_000;
/// Text from the log (a URI, a method, a sensor or header name) is kept to this many bytes.
const MAX_TEXT: usize = 256;
/// Rows of the largest bodies and the first unanswered requests.
pub const TOP_ROWS: usize = 10;

/// The bucket widths of the timeline, in seconds, each a multiple of the one before, so that
/// buckets aligned to the Unix epoch merge whole into the next width; past the last, doubling.
const WIDTHS: [i64; 11] = [
    60, 300, 600, 1800, 3600, 7200, 21_600, 43_200, 86_400, 604_800, 2_419_200,
];

/// Upper bounds (exclusive, milliseconds) of the wait-time histogram's buckets; one more bucket
/// holds everything longer.
pub const WAIT_BOUNDS_MS: [i64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// Where a record is: which input (index into [`Collector::files`]) and which line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// The input's index.
    pub file: u32,
    /// The line its `{` is on.
    pub line: u64,
}

/// One input file.
#[derive(Debug, Clone, Default)]
pub struct FileStats {
    /// As named on the command line, or `stdin`.
    pub name: String,
    /// Its size when it is a regular file.
    pub size: Option<u64>,
    /// Bytes read.
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// JSON objects in it.
    pub records: u64,
    /// Of those, not conforming.
    pub nonconforming: u64,
    /// Stretches that are no record.
    pub unreadable: u64,
    /// The earliest `_received_at` in it (Unix ms): a file of several daemons is not in order.
    pub first_ms: Option<i64>,
    /// The latest.
    pub last_ms: Option<i64>,
    /// Bytes in `FILE.partial`: cut-short writes moved out at a restart (SPEC 4.4).
    pub partial_bytes: Option<u64>,
}

/// One sensor's counts; they add up, over all sensors, to the summary's.
#[derive(Debug, Clone, Default)]
pub struct SensorStats {
    /// `_client` (the certificate subject), the `_peer` address, or a name for the rest.
    pub name: String,
    /// Conforming requests, duplicates included (as the summary counts them).
    pub requests: u64,
    /// Conforming responses, duplicates included.
    pub responses: u64,
    /// Requests answered.
    pub pairs: u64,
    /// Requests never answered.
    pub unanswered: u64,
    /// Responses with no request waiting.
    pub orphans: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// Times its numbering went back: restarts.
    pub resets: u64,
    /// Requests with no `_received_at`, so not on the timeline.
    pub untimed: u64,
    /// Requests per time bucket (bucket index at the timeline's width).
    pub series: BTreeMap<i64, u64>,
}

/// A body, for the table of the largest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRow {
    /// Its size in bytes, minified.
    pub size: u64,
    /// The `RequestURI` of its exchange, when known.
    pub uri: Option<String>,
    /// `_received_at`, when annotated.
    pub time_ms: Option<i64>,
    /// Its sender's name.
    pub sensor: String,
    /// The record's `sequence`.
    pub sequence: u64,
    /// Where it is.
    pub place: Place,
}

/// A request never answered, for the table of the first ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnansweredRow {
    /// Where it is.
    pub place: Place,
    /// Its `sequence`.
    pub sequence: u64,
    /// Its method.
    pub method: String,
    /// Its `RequestURI`, when remembered.
    pub uri: Option<String>,
    /// `_received_at`, when annotated.
    pub time_ms: Option<i64>,
    /// Its sender's name.
    pub sensor: String,
}

/// One redaction mark and where it was seen.
#[derive(Debug, Clone)]
pub struct MarkStats {
    /// The header it was found under (as first seen), or `None` outside a header.
    pub header: Option<String>,
    /// Times seen.
    pub count: u64,
    /// Where it was first seen.
    pub first: Place,
}

/// The wait from a request's arrival to its response's, from `_received_at`.
#[derive(Debug, Clone, Default)]
pub struct Waits {
    /// Counts per bucket of [`WAIT_BOUNDS_MS`], and one past the last.
    pub buckets: [u64; WAIT_BOUNDS_MS.len() + 1],
    /// Pairs whose response arrived before their request (clocks of two daemons).
    pub negative: u64,
    /// Pairs timed.
    pub count: u64,
    /// The longest wait.
    pub max_ms: i64,
    /// Fine log-scale counts, for percentiles within about 3 %.
    fine: Vec<u64>,
}

impl Waits {
    fn add(&mut self, ms: i64) {
        if ms < 0 {
            self.negative += 1;
            return;
        }
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
        let b = WAIT_BOUNDS_MS
            .iter()
            .position(|&u| ms < u)
            .unwrap_or(WAIT_BOUNDS_MS.len());
        self.buckets[b] += 1;
        let f = fine_bin(ms);
        if self.fine.len() <= f {
            self.fine.resize(f + 1, 0);
        }
        self.fine[f] += 1;
    }

    /// The wait below which `p` percent of the pairs fall (an upper bound, within about 3 %).
    pub fn percentile(&self, p: f64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let want = ((self.count as f64) * p / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bin, c) in self.fine.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(fine_upper(bin).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

/// Milliseconds below 64 are their own bin; above, 32 bins per power of two.
fn fine_bin(ms: i64) -> usize {
    let v = ms.max(0) as u64;
    if v < 64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= 6
    let mantissa = ((v >> (exp - 5)) & 31) as usize;
    64 + (exp - 6) * 32 + mantissa
}

/// The largest value in a fine bin.
fn fine_upper(bin: usize) -> i64 {
    if bin < 64 {
        return bin as i64;
    }
    let exp = (bin - 64) / 32 + 6;
    let mantissa = ((bin - 64) % 32) as u64;
    let low = (32 + mantissa) << (exp - 5);
    let width = 1u64 << (exp - 5);
    i64::try_from(low + width - 1).unwrap_or(i64::MAX)
}

/// What the current record told the collector, for the hooks that follow it.
#[derive(Debug, Default)]
struct Current {
    place: Option<Place>,
    sensor: u32,
    time_ms: Option<i64>,
    sequence: u64,
    body: Option<u64>,
    uri: u32,
    method: u32,
}

/// What is kept with a waiting request.
#[derive(Debug, Clone, Copy)]
pub struct WaitingRequest {
    place: Place,
    sensor: u32,
    time_ms: Option<i64>,
    sequence: u64,
    uri: u32,
    method: u32,
}

/// An interned, capped table of names: an id each, `u32::MAX` when the table is full.
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    const NONE: u32 = u32::MAX;

    fn id(&mut self, name: &str, cap: usize) -> u32 {
        let name = truncate(name, MAX_TEXT);
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.names.len() >= cap {
            return Self::NONE;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        id
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }
}

/// The members of a record the report reads besides the record check's; each as raw JSON, so
/// that a member of an unexpected type never hides the others.
#[derive(Deserialize)]
struct Extras<'a> {
    #[serde(rename = "_received_at", borrow, default)]
    received_at: Option<&'a RawValue>,
    #[serde(rename = "_peer", borrow, default)]
    peer: Option<&'a RawValue>,
    #[serde(rename = "_client", borrow, default)]
    client: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request_body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_body: Option<&'a RawValue>,
}

fn raw_str(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    raw.and_then(|r| serde_json::from_str::<Cow<'_, str>>(r.get()).ok())
}

/// Gathers what the page shows beyond the summary.
#[derive(Debug)]
pub struct Collector {
    /// The inputs, in the order read.
    pub files: Vec<FileStats>,
    /// The sensors, in the order first seen; the last may be "others".
    sensors: Vec<SensorStats>,
    sensor_ids: HashMap<Box<str>, u32>,
    /// The id of "others", once the sensor cap is reached.
    others: Option<u32>,
    /// Seconds per timeline bucket.
    width_s: i64,
    /// First and last bucket holding a request.
    bucket_range: Option<(i64, i64)>,
    /// The earliest and latest `_received_at` of any record.
    pub period_ms: Option<(i64, i64)>,
    /// Conforming requests by method.
    methods: Names,
    method_counts: Vec<u64>,
    /// Requests whose method came after the cap.
    pub other_methods: u64,
    uris: Names,
    /// Request to response waits.
    pub waits: Waits,
    /// Pairs without a time on both sides.
    pub untimed_pairs: u64,
    /// Redaction marks by their 16 hex digits.
    marks: HashMap<[u8; 16], MarkStats>,
    /// Marks seen in all, counted ones or not.
    pub marks_total: u64,
    /// Marks not counted one by one (past the cap).
    pub marks_uncounted: u64,
    /// Bytes of request bodies, over the requests correlated (not duplicates).
    pub request_body_bytes: u64,
    /// The largest request bodies, largest first.
    pub request_bodies: Vec<BodyRow>,
    /// The largest response bodies, largest first.
    pub response_bodies: Vec<BodyRow>,
    unanswered: Vec<(Place, WaitingRequest)>,
    current: Current,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Collector {
        Collector {
            files: Vec::new(),
            sensors: Vec::new(),
            sensor_ids: HashMap::new(),
            others: None,
            width_s: WIDTHS[0],
            bucket_range: None,
            period_ms: None,
            methods: Names::default(),
            method_counts: Vec::new(),
            other_methods: 0,
            uris: Names::default(),
            waits: Waits::default(),
            untimed_pairs: 0,
            marks: HashMap::new(),
            marks_total: 0,
            marks_uncounted: 0,
            request_body_bytes: 0,
            request_bodies: Vec::new(),
            response_bodies: Vec::new(),
            unanswered: Vec::new(),
            current: Current::default(),
        }
    }

    /// The next input begins.
    pub fn begin_file(&mut self, name: &str, size: Option<u64>, partial_bytes: Option<u64>) {
        self.files.push(FileStats {
            name: name.to_string(),
            size,
            partial_bytes,
            ..FileStats::default()
        });
    }

    /// The current input ended after `bytes` bytes and `lines` lines.
    pub fn end_file(&mut self, bytes: u64, lines: u64) {
        if let Some(f) = self.files.last_mut() {
            f.bytes = bytes;
            f.lines = lines;
        }
    }

    /// A stretch of the current input that is no record.
    pub fn unreadable(&mut self) {
        if let Some(f) = self.files.last_mut() {
            f.unreadable += 1;
        }
    }

    /// The sensors, most requests first, at most `n`; the rest summed into one row named
    /// "others" (with the capped ones), which comes last.
    pub fn sensors(&self, n: usize) -> Vec<SensorStats> {
        let mut order: Vec<&SensorStats> = self
            .sensors
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i as u32) != self.others)
            .map(|(_, s)| s)
            .collect();
        order.sort_by(|a, b| {
            (b.requests + b.responses)
                .cmp(&(a.requests + a.responses))
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut rest: Vec<&SensorStats> = order.split_off(order.len().min(n));
        if let Some(o) = self.others {
            rest.push(&self.sensors[o as usize]);
        }
        let mut out: Vec<SensorStats> = order.into_iter().cloned().collect();
        if !rest.is_empty() {
            let mut sum = SensorStats {
                name: format!("others ({} more)", rest.len()),
                ..SensorStats::default()
            };
            if self.others.is_some() {
                sum.name = format!(
                    "others ({} more and those past the first {MAX_SENSORS})",
                    rest.len() - 1
                );
            }
            for s in rest {
                sum.requests += s.requests;
                sum.responses += s.responses;
                sum.pairs += s.pairs;
                sum.unanswered += s.unanswered;
                sum.orphans += s.orphans;
                sum.duplicates += s.duplicates;
                sum.resets += s.resets;
                sum.untimed += s.untimed;
                for (b, c) in &s.series {
                    *sum.series.entry(*b).or_default() += c;
                }
            }
            out.push(sum);
        }
        out
    }

    /// How many sensors were seen, and whether there were more (past the cap, not told apart).
    pub fn sensor_count(&self) -> (usize, bool) {
        (self.sensor_ids.len(), self.others.is_some())
    }

    /// Seconds per timeline bucket, and the first and last bucket (indexes at that width).
    pub fn timeline(&self) -> (i64, Option<(i64, i64)>) {
        (self.width_s, self.bucket_range)
    }

    /// Requests by method, most first, and the count of those past the cap.
    pub fn methods(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .methods
            .names
            .iter()
            .zip(&self.method_counts)
            .map(|(n, c)| (n.to_string(), *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Redaction marks, most frequent first: (the 16 hex digits, what was seen), at most `n`.
    pub fn marks(&self, n: usize) -> Vec<(String, MarkStats)> {
        let mut v: Vec<(&[u8; 16], &MarkStats)> = self.marks.iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.1.first.cmp(&b.1.first)));
        v.into_iter()
            .take(n)
            .map(|(k, m)| (String::from_utf8_lossy(k).into_owned(), m.clone()))
            .collect()
    }

    /// Distinct marks counted.
    pub fn distinct_marks(&self) -> usize {
        self.marks.len()
    }

    /// The first unanswered requests, by place in the input.
    pub fn unanswered(&self) -> Vec<UnansweredRow> {
        self.unanswered
            .iter()
            .map(|(_, w)| UnansweredRow {
                place: w.place,
                sequence: w.sequence,
                method: self.methods.name(w.method).unwrap_or("(other)").to_string(),
                uri: self.uris.name(w.uri).map(str::to_string),
                time_ms: w.time_ms,
                sensor: self.sensor_name(w.sensor),
            })
            .collect()
    }

    fn sensor_name(&self, id: u32) -> String {
        self.sensors
            .get(id as usize)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn sensor_id(&mut self, name: &str) -> u32 {
        let name = truncate(name, MAX_TEXT);
        if let Some(id) = self.sensor_ids.get(name) {
            return *id;
        }
        if self.sensor_ids.len() >= MAX_SENSORS {
            if let Some(o) = self.others {
                return o;
            }
            let id = self.sensors.len() as u32;
            self.sensors.push(SensorStats {
                name: "others".into(),
                ..SensorStats::default()
            });
            self.others = Some(id);
            return id;
        }
        let id = self.sensors.len() as u32;
        self.sensor_ids.insert(name.into(), id);
        self.sensors.push(SensorStats {
            name: name.to_string(),
            ..SensorStats::default()
        });
        id
    }

    fn sensor(&mut self, id: u32) -> &mut SensorStats {
        // Every id handed out indexes `sensors`; a hook before any record has none to touch.
        if self.sensors.is_empty() {
            self.sensor_id("all (not annotated)");
        }
        let last = self.sensors.len() - 1;
        &mut self.sensors[(id as usize).min(last)]
    }

    /// Puts a request at `ms` on the timeline, coarsening it when the span grows too wide.
    fn plot(&mut self, sensor: u32, ms: i64) {
        let secs = ms.div_euclid(1000);
        let mut bucket = secs.div_euclid(self.width_s);
        let (mut lo, mut hi) = self.bucket_range.unwrap_or((bucket, bucket));
        lo = lo.min(bucket);
        hi = hi.max(bucket);
        while (hi as i128 - lo as i128 + 1) > MAX_BUCKETS as i128 {
            let next = WIDTHS
                .iter()
                .copied()
                .find(|w| *w > self.width_s)
                .unwrap_or(self.width_s.saturating_mul(2));
            let factor = next / self.width_s;
            if factor < 2 {
                // The widest bucket there is (never reached by real times: they span ±10,000 years).
                break;
            }
            self.width_s = next;
            for s in &mut self.sensors {
                let old = std::mem::take(&mut s.series);
                for (b, c) in old {
                    *s.series.entry(b.div_euclid(factor)).or_default() += c;
                }
            }
            lo = lo.div_euclid(factor);
            hi = hi.div_euclid(factor);
            bucket = secs.div_euclid(self.width_s);
        }
        self.bucket_range = Some((lo, hi));
        *self.sensor(sensor).series.entry(bucket).or_default() += 1;
    }

    fn keep_body(rows: &mut Vec<BodyRow>, row: BodyRow) {
        if rows.len() >= TOP_ROWS && rows.last().is_some_and(|l| l.size >= row.size) {
            return;
        }
        let at = rows.iter().position(|r| r.size < row.size).unwrap_or(rows.len());
        rows.insert(at, row);
        rows.truncate(TOP_ROWS);
    }

    fn body_row(&self, size: u64, uri: u32, time_ms: Option<i64>, sensor: u32) -> BodyRow {
        BodyRow {
            size,
            uri: self.uris.name(uri).map(str::to_string),
            time_ms,
            sensor: self.sensor_name(sensor),
            sequence: self.current.sequence,
            place: self.current.place.unwrap_or(Place { file: 0, line: 0 }),
        }
    }

    fn count_marks(&mut self, text: &[u8], place: Place) {
        const NEEDLE: &[u8] = b"\"[redacted hmac:";
        let mut from = 0;
        while let Some(at) = find(&text[from..], NEEDLE).map(|i| i + from) {
            from = at + NEEDLE.len();
            let Some(rest) = text.get(from..from + 18) else {
                break;
            };
            if !(rest[..16]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                && &rest[16..] == b"]\"")
            {
                continue;
            }
            self.marks_total += 1;
            let mut key = [0u8; 16];
            key.copy_from_slice(&rest[..16]);
            if let Some(m) = self.marks.get_mut(&key) {
                m.count += 1;
            } else if self.marks.len() < MAX_MARKS {
                let header = header_of(text, at).map(|h| truncate(&h, MAX_TEXT).to_string());
                self.marks.insert(
                    key,
                    MarkStats {
                        header,
                        count: 1,
                        first: place,
                    },
                );
            } else {
                self.marks_uncounted += 1;
            }
        }
    }
}

impl Observer for Collector {
    type Waiting = WaitingRequest;

    fn record(&mut self, _file: &str, line: u64, text: &[u8], record: Option<&Record<'_>>) {
        let file = self.files.len().saturating_sub(1) as u32;
        let place = Place { file, line };
        let extras: Option<Extras<'_>> = serde_json::from_slice(text).ok();
        let time_ms = extras
            .as_ref()
            .and_then(|e| raw_str(e.received_at))
            .and_then(|t| parse_rfc3339_millis(&t));
        let name: Option<String> = extras.as_ref().and_then(|e| {
            raw_str(e.client).map(|c| c.into_owned()).or_else(|| {
                raw_str(e.peer).map(|p| match p.parse::<std::net::SocketAddr>() {
                    Ok(sa) => canonical(sa.ip()).to_string(),
                    Err(_) => match p.parse::<std::net::IpAddr>() {
                        Ok(ip) => canonical(ip).to_string(),
                        Err(_) => p.into_owned(),
                    },
                })
            })
        });
        // Only conforming records are counted by sender: a row for a sender of nothing but
        // broken records would show zeros.
        let sensor = match record {
            Some(_) => self.sensor_id(name.as_deref().unwrap_or("all (not annotated)")),
            None => Names::NONE,
        };
        if let Some(f) = self.files.last_mut() {
            f.records += 1;
            if record.is_none() {
                f.nonconforming += 1;
            }
            if let Some(t) = time_ms {
                f.first_ms = Some(f.first_ms.map_or(t, |m| m.min(t)));
                f.last_ms = Some(f.last_ms.map_or(t, |m| m.max(t)));
            }
        }
        if let Some(t) = time_ms {
            let (lo, hi) = self.period_ms.unwrap_or((t, t));
            self.period_ms = Some((lo.min(t), hi.max(t)));
        }
        self.count_marks(text, place);
        let body = extras.as_ref().and_then(|e| match record {
            Some(Record::Request(_)) => e.request_body.map(|b| b.get().len() as u64),
            Some(Record::Response(_)) => e.response_body.map(|b| b.get().len() as u64),
            None => None,
        });
        self.current = Current {
            place: Some(place),
            sensor,
            time_ms,
            sequence: record.map(|r| r.sequence()).unwrap_or(0),
            body,
            uri: Names::NONE,
            method: Names::NONE,
        };
        match record {
            Some(Record::Request(r)) => {
                self.current.uri = self.uris.id(&r.request.request_uri, MAX_URIS);
                let m = self.methods.id(&r.request.method, MAX_METHODS);
                match self.method_counts.get_mut(m as usize) {
                    Some(c) => *c += 1,
                    None if m != Names::NONE => self.method_counts.push(1),
                    None => self.other_methods += 1,
                }
                self.current.method = m;
                let s = self.sensor(sensor);
                s.requests += 1;
                match time_ms {
                    Some(t) => self.plot(sensor, t),
                    None => self.sensor(sensor).untimed += 1,
                }
            }
            Some(Record::Response(_)) => self.sensor(sensor).responses += 1,
            None => {}
        }
    }

    fn duplicate(&mut self) {
        self.sensor(self.current.sensor).duplicates += 1;
    }

    fn reset(&mut self) {
        self.sensor(self.current.sensor).resets += 1;
    }

    fn waiting(&mut self) -> WaitingRequest {
        let c = &self.current;
        let w = WaitingRequest {
            place: c.place.unwrap_or(Place { file: 0, line: 0 }),
            sensor: c.sensor,
            time_ms: c.time_ms,
            sequence: c.sequence,
            uri: c.uri,
            method: c.method,
        };
        if let Some(size) = c.body {
            self.request_body_bytes += size;
            let row = self.body_row(size, c.uri, c.time_ms, c.sensor);
            Self::keep_body(&mut self.request_bodies, row);
        }
        w
    }

    fn unanswered(&mut self, request: WaitingRequest) {
        self.sensor(request.sensor).unanswered += 1;
        // The first ones by place: a small sorted list.
        let key = request.place;
        if self.unanswered.len() >= TOP_ROWS && self.unanswered.last().is_some_and(|(p, _)| *p <= key) {
            return;
        }
        let at = self
            .unanswered
            .iter()
            .position(|(p, _)| *p > key)
            .unwrap_or(self.unanswered.len());
        self.unanswered.insert(at, (key, request));
        self.unanswered.truncate(TOP_ROWS);
    }

    fn answered(&mut self, request: WaitingRequest) {
        let (sensor, time_ms, body) = (self.current.sensor, self.current.time_ms, self.current.body);
        self.sensor(request.sensor).pairs += 1;
        match (request.time_ms, time_ms) {
            (Some(a), Some(b)) => self.waits.add(b.saturating_sub(a)),
            _ => self.untimed_pairs += 1,
        }
        if let Some(size) = body {
            let row = self.body_row(size, request.uri, time_ms, sensor);
            Self::keep_body(&mut self.response_bodies, row);
        }
    }

    fn orphan(&mut self) {
        let c = &self.current;
        let (sensor, time_ms, body) = (c.sensor, c.time_ms, c.body);
        self.sensor(sensor).orphans += 1;
        if let Some(size) = body {
            let row = self.body_row(size, Names::NONE, time_ms, sensor);
            Self::keep_body(&mut self.response_bodies, row);
        }
    }
}

/// The first index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()].iter().position(|b| *b == first) {
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

/// The header name a mark at `at` (its opening quote) is a value of, in minified text:
/// `"Name":["…","[redacted hmac:…]"]`. `None` when the mark is not in a header's array.
fn header_of(text: &[u8], at: usize) -> Option<String> {
    let floor = at.saturating_sub(4096);
    let mut j = at; // an opening quote of an array element
    loop {
        if j < floor + 3 {
            return None;
        }
        match (text[j - 3], text[j - 2], text[j - 1]) {
            (b'"', b':', b'[') => {
                let end = j - 3;
                let start = opening_quote(text, end, floor)?;
                let name: String = serde_json::from_slice(&text[start..=end]).ok()?;
                return Some(name);
            }
            (_, b'"', b',') => j = opening_quote(text, j - 2, floor)?,
            _ => return None,
        }
    }
}

/// The opening quote of the string whose closing quote is at `end`.
fn opening_quote(text: &[u8], end: usize, floor: usize) -> Option<usize> {
    let mut i = end;
    while i > floor {
        i -= 1;
        if text[i] == b'"' {
            let slashes = text[floor..i].iter().rev().take_while(|b| **b == b'\\').count();
            if slashes % 2 == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_with_their_header() {
        let text = br#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"Authorization":["x","[redacted hmac:0123456789abcdef]"],"Cookie":["[redacted hmac:0123456789abcdef]"]}},"note":"[redacted hmac:zz]"}"#;
        let mut c = Collector::new();
        c.begin_file("t", None, None);
        c.count_marks(text, Place { file: 0, line: 1 });
        assert_eq!(c.marks_total, 2);
        let m = c.marks(10);
        assert_eq!(m[0].0, "0123456789abcdef");
        assert_eq!(m[0].1.count, 2);
        assert_eq!(m[0].1.header.as_deref(), Some("Authorization"));
        let body = br#"{"x":"[redacted hmac:0123456789abcdef]"}"#;
        assert_eq!(header_of(body, 5), None);
    }

    #[test]
    fn the_timeline_coarsens_and_keeps_every_count() {
        let mut c = Collector::new();
        c.begin_file("t", None, None);
        let id = c.sensor_id("a");
        for h in 0..48 {
            c.plot(id, h * 3_600_000);
        }
        let (w, range) = c.timeline();
        let (lo, hi) = range.unwrap();
        assert!(hi - lo < MAX_BUCKETS as i64, "{w} {lo} {hi}");
        assert_eq!(w, 1800, "48 hours: half-hour buckets");
        assert_eq!(c.sensors[0].series.values().sum::<u64>(), 48);
        // A hostile span (year 1 to year 9999) still fits.
        c.plot(id, -62_135_596_800_000);
        c.plot(id, 253_402_300_799_000);
        let (_, range) = c.timeline();
        let (lo, hi) = range.unwrap();
        assert!(hi - lo < MAX_BUCKETS as i64);
        assert_eq!(c.sensors[0].series.values().sum::<u64>(), 50);
    }

    #[test]
    fn percentiles_are_close() {
        let mut w = Waits::default();
        for ms in 1..=1000 {
            w.add(ms);
        }
        let p50 = w.percentile(50.0).unwrap();
        assert!((500..=516).contains(&p50), "{p50}");
        assert_eq!(w.percentile(100.0), Some(1000));
        for v in [0, 63, 64, 65, 1000, 123_456_789] {
            assert!(fine_upper(fine_bin(v)) >= v);
            assert!(fine_upper(fine_bin(v)) as f64 <= v as f64 * 1.04 + 1.0);
        }
    }
}
