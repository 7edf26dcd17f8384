//! Several logs read as one, in the order their records were received: the files of daemons
//! behind one load balancer, each appending its own.
//!
//! A sensor's request and its response can land on different daemons (its daemon went down
//! between the two, and the balancer moved it), so reading the files one after another can meet
//! a response before its request. [`Merged`] reads every input at once and yields the records in
//! the order of their `_received_at` (what `--annotate` adds), a request before a response on a
//! tie. A daemon stamps a record when it arrives and writes it when it is checked, so within one
//! file the stamps are out of order by the time a request takes (milliseconds); a record is
//! yielded only once every other input has been read [`WINDOW`] past it. A record without
//! `_received_at` and a stretch that is no record are yielded at once, in their input's order, so
//! logs that are not annotated are read one after another, as before.
//!
//! Memory: the records within the window, at most [`MAX_BUFFERED`] of them and
//! [`MAX_BUFFERED_BYTES`] in all; past either, the earliest is yielded without waiting.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead};

use crate::json::stream::{Item, Problem, RecordReader};
use crate::observe::timefmt::parse_rfc3339_millis;

/// What marks the time a record was received, as the daemon writes it (minified).
const RECEIVED_AT: &[u8] = b"\"_received_at\":\"";
/// The longest `_received_at` value looked at.
const MAX_TIME_LEN: usize = 40;
/// How far past a record every input is read before it is yielded, in milliseconds.
pub const WINDOW: i64 = 5_000;
/// Most records held at once.
pub const MAX_BUFFERED: usize = 100_000;
/// Most bytes of records held at once.
pub const MAX_BUFFERED_BYTES: usize = 256 << 20;

/// Where an item goes in the merged order: untimed items first, in input order; then by time, a
/// request before a response, then in reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time: Option<i64>,
    response: bool,
    /// The input, for untimed items only (so that they come input after input).
    input: usize,
    /// Reading order.
    n: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Record(Vec<u8>),
    Problem(Problem),
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    key: Key,
    input: usize,
    line: u64,
    item: Owned,
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct Source<R> {
    name: String,
    reader: RecordReader<R>,
    done: bool,
    /// Its items held now.
    held: usize,
    /// The latest `_received_at` read from it.
    high: Option<i64>,
}

/// The records of several inputs, merged by `_received_at`.
pub struct Merged<R> {
    sources: Vec<Source<R>>,
    heap: BinaryHeap<Reverse<Entry>>,
    held_bytes: usize,
    /// The item handed out last.
    current: Option<Entry>,
    read: u64,
}

/// A read that failed, and the input it failed on.
#[derive(Debug)]
pub struct MergeError {
    /// The input's name.
    pub name: String,
    /// Why.
    pub error: io::Error,
}

impl<R: BufRead> Merged<R> {
    /// Merges `inputs`, each a name and its reader.
    pub fn new(inputs: Vec<(String, RecordReader<R>)>) -> Merged<R> {
        let sources = inputs
            .into_iter()
            .map(|(name, reader)| Source {
                name,
                reader,
                done: false,
                held: 0,
                high: None,
            })
            .collect();
        Merged {
            sources,
            heap: BinaryHeap::new(),
            held_bytes: 0,
            current: None,
            read: 0,
        }
    }

    /// Bytes read from every input so far.
    pub fn bytes_read(&self) -> u64 {
        self.sources.iter().map(|s| s.reader.bytes_read()).sum()
    }

    /// The next item of all inputs, with its input's name; `None` at the end of every input.
    pub fn next_item(&mut self) -> Result<Option<(&str, Item<'_>)>, MergeError> {
        self.current = None;
        loop {
            let earliest = self.heap.peek().map(|Reverse(e)| e.key.time);
            let full = self.heap.len() >= MAX_BUFFERED || self.held_bytes >= MAX_BUFFERED_BYTES;
            let mut progressed = false;
            for i in 0..self.sources.len() {
                let source = &self.sources[i];
                if source.done {
                    continue;
                }
                // Every open input has an item in the running; beyond that, inputs are read on
                // while they are within the window of the earliest record held.
                let behind = match (earliest, source.high) {
                    (Some(Some(t)), Some(high)) => high < t.saturating_add(WINDOW),
                    (Some(Some(_)), None) => true,
                    _ => false,
                };
                if source.held == 0 || (behind && !full) {
                    self.fill(i)?;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        let Some(Reverse(entry)) = self.heap.pop() else {
            return Ok(None);
        };
        self.sources[entry.input].held -= 1;
        if let Owned::Record(text) = &entry.item {
            self.held_bytes -= text.len();
        }
        let entry = self.current.insert(entry);
        let item = match &entry.item {
            Owned::Record(text) => Item::Record {
                line: entry.line,
                text,
            },
            Owned::Problem(problem) => Item::Problem {
                line: entry.line,
                problem: problem.clone(),
            },
        };
        Ok(Some((&self.sources[entry.input].name, item)))
    }

    /// Reads one item of input `i` into the heap.
    fn fill(&mut self, i: usize) -> Result<(), MergeError> {
        let source = &mut self.sources[i];
        let item = source.reader.next().map_err(|error| MergeError {
            name: source.name.clone(),
            error,
        })?;
        self.read += 1;
        let (line, item, time, response) = match item {
            None => {
                source.done = true;
                return Ok(());
            }
            Some(Item::Problem { line, problem }) => (line, Owned::Problem(problem), None, false),
            Some(Item::Record { line, text }) => {
                let time = received_at(text);
                let response = time.is_some() && find(text, b"\"response_status_code\"").is_some();
                self.held_bytes += text.len();
                (line, Owned::Record(text.to_vec()), time, response)
            }
        };
        if time.is_some() {
            source.high = source.high.max(time);
        }
        source.held += 1;
        let key = Key {
            time,
            response,
            input: if time.is_some() { 0 } else { i },
            n: self.read,
        };
        self.heap.push(Reverse(Entry {
            key,
            input: i,
            line,
            item,
        }));
        Ok(())
    }
}

/// The `_received_at` of a record's text, in milliseconds since the epoch: the daemon adds it
/// near the end, so the search starts there.
fn received_at(text: &[u8]) -> Option<i64> {
    let start = text.windows(RECEIVED_AT.len()).rposition(|w| w == RECEIVED_AT)? + RECEIVED_AT.len();
    let rest = text.get(start..)?;
    let len = rest.iter().take(MAX_TIME_LEN).position(|&b| b == b'"')?;
    parse_rfc3339_millis(std::str::from_utf8(&rest[..len]).ok()?)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(inputs: &[&str]) -> Vec<String> {
        let readers = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("f{i}"), RecordReader::new(text.as_bytes(), 1 << 20)))
            .collect();
        let mut m = Merged::new(readers);
        let mut out = Vec::new();
        while let Some((name, item)) = m.next_item().unwrap() {
            match item {
                Item::Record { text, .. } => {
                    let v: serde_json::Value = serde_json::from_slice(text).unwrap();
                    out.push(format!("{name}:{}", v["id"]));
                }
                Item::Problem { line, .. } => out.push(format!("{name}:problem@{line}")),
            }
        }
        out
    }

    #[test]
    fn records_come_out_in_the_order_they_were_received() {
        let a = concat!(
            r#"{"id":1,"sequence":1,"request":{},"_received_at":"2026-12-01T10:00:00.100Z","_peer":"192.0.2.1:1"}"#,
            "\n",
            r#"{"id":4,"sequence":2,"response_status_code":200,"_received_at":"2026-12-01T10:00:00.400Z","_peer":"192.0.2.1:1"}"#,
            "\n"
        );
        let b = concat!(
            r#"{"id":3,"sequence":1,"response_status_code":200,"_received_at":"2026-12-01T10:00:00.200Z","_peer":"192.0.2.1:2"}"#,
            "\n",
            // The same millisecond as a's next: the request first.
            r#"{"id":2,"sequence":2,"request":{},"_received_at":"2026-12-01T10:00:00.400Z","_peer":"192.0.2.1:2"}"#,
            "\n"
        );
        assert_eq!(merged(&[a, b]), ["f0:1", "f1:3", "f1:2", "f0:4"]);
        assert_eq!(merged(&[b, a]), ["f1:1", "f0:3", "f0:2", "f1:4"]);
    }

    #[test]
    fn stamps_out_of_order_within_a_file_are_sorted_across_the_window() {
        let a = concat!(
            r#"{"id":3,"sequence":8,"request":{},"_received_at":"2026-12-01T10:00:00.105Z"}"#,
            "\n",
            r#"{"id":1,"sequence":9,"request":{},"_received_at":"2026-12-01T10:00:00.103Z"}"#,
            "\n",
            r#"{"id":5,"sequence":10,"request":{},"_received_at":"2026-12-01T10:00:09.000Z"}"#,
            "\n"
        );
        let b = concat!(
            r#"{"id":2,"sequence":9,"response_status_code":200,"_received_at":"2026-12-01T10:00:00.104Z"}"#,
            "\n",
            r#"{"id":4,"sequence":8,"response_status_code":200,"_received_at":"2026-12-01T10:00:01.000Z"}"#,
            "\n"
        );
        assert_eq!(merged(&[a, b]), ["f0:1", "f1:2", "f0:3", "f1:4", "f0:5"]);
    }

    #[test]
    fn logs_without_annotations_are_read_one_after_another() {
        let a = "{\"id\":1}\n{\"id\":2}\n";
        let b = "{\"id\":3}\nnot json\n{\"id\":4}\n";
        assert_eq!(merged(&[a, b]), ["f0:1", "f0:2", "f1:3", "f1:problem@2", "f1:4"]);
        assert!(merged(&[]).is_empty());
        assert!(merged(&["", ""]).is_empty());
    }
}
