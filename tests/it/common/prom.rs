//! A strict parser of the Prometheus text exposition format (0.0.4), for checking `/metrics`:
//! every line is a `# HELP`, a `# TYPE` or a sample; every sample belongs to a family declared
//! once, before its samples, with its samples together; no series twice; histogram buckets
//! cumulative, ending in `+Inf` equal to `_count`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Each series (`name{k="v",…}` with labels sorted) and its value.
    pub series: BTreeMap<String, f64>,
    /// Each family's type.
    pub types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly these labels; panics when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series_key(
            name,
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        *self.series.get(&key).unwrap_or_else(|| panic!("no series {key}"))
    }

    /// [`Scrape::get`] as a whole number.
    pub fn n(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let v = self.get(name, labels);
        assert!(v >= 0.0 && v.fract() == 0.0, "{name}: {v} is not a count");
        v as u64
    }
}

fn series_key(name: &str, mut labels: Vec<(String, String)>) -> String {
    labels.sort();
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses `name{labels} value [timestamp]`.
/// A sample: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without a value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            }
            let eq = r.find('=').ok_or("label without =")?;
            let lname = &r[..eq];
            if !valid_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            r = r[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((lname.to_string(), value));
            r = &r[end + 1..];
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            } else {
                return Err("unexpected text after a label".into());
            }
        }
        rest = r;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    let mut seen = HashSet::new();
    for (k, _) in &labels {
        if !seen.insert(k.clone()) {
            return Err(format!("label {k} twice"));
        }
    }
    Ok((name.to_string(), labels, value))
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return Some(base);
            }
        }
    }
    None
}

/// Parses a whole scrape, strictly.
pub fn parse(text: &str) -> Result<Scrape, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut out = Scrape::default();
    let mut helped = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    // Per histogram series (labels without le): buckets in order, for the cumulative check.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !valid_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let family_changes = current.as_deref() != Some(name);
            if family_changes {
                if let Some(prev) = current.take() {
                    finished.insert(prev);
                }
                if finished.contains(name) {
                    return Err(at(format!("family {name} declared again after other families")));
                }
                current = Some(name.to_string());
            }
            match kind {
                "HELP" => {
                    parts.next().ok_or_else(|| at("HELP without text".into()))?;
                    if !helped.insert(name.to_string()) {
                        return Err(at(format!("second HELP for {name}")));
                    }
                }
                "TYPE" => {
                    let t = parts.next().ok_or_else(|| at("TYPE without a type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if out.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                }
                _ => return Err(at(format!("unknown comment kind {kind:?}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment without a space".into()));
        }
        let (name, labels, value) = parse_sample(line).map_err(at)?;
        let family = family_of(&name, &out.types)
            .ok_or_else(|| at(format!("sample {name} of no declared family")))?
            .to_string();
        if current.as_deref() != Some(family.as_str()) {
            return Err(at(format!("sample of {family} away from its family")));
        }
        let t = out.types[&family].as_str();
        if t == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(at("negative counter".into()));
        }
        if t == "histogram" {
            let base: Vec<(String, String)> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            let key = series_key(&family, base);
            if name.ends_with("_bucket") {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or_else(|| at("bucket without le".into()))?;
                let le = parse_value(&le.1).map_err(at)?;
                buckets.entry(key).or_default().push((le, value));
            } else if name.ends_with("_count") {
                let b = buckets
                    .get(&key)
                    .ok_or_else(|| at("_count before buckets".into()))?;
                let last = b.last().unwrap();
                if last.0 != f64::INFINITY || last.1 != value {
                    return Err(at("+Inf bucket missing or not equal to _count".into()));
                }
            }
        }
        let key = series_key(&name, labels);
        if out.series.insert(key.clone(), value).is_some() {
            return Err(at(format!("series {key} twice")));
        }
    }
    for (key, b) in &buckets {
        for w in b.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!("{key}: buckets not ascending and cumulative: {b:?}"));
            }
        }
    }
    Ok(out)
}
