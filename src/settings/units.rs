//! The units settings are written in: booleans, sizes and durations as an operator types them.
//!
//! Each parser returns the reason a value is refused; the caller names the setting.

use std::net::IpAddr;
use std::time::Duration;

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Bytes, or a number with a binary suffix: `1024`, `64KiB`, `16MiB`, `1GiB`, `16M`.
pub fn parse_size(s: &str) -> Result<u64, &'static str> {
    const REASON: &str = "not a size (bytes, or with KiB, MiB, GiB)";
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(REASON);
    }
    let n: u64 = digits.parse().map_err(|_| REASON)?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(REASON),
    };
    n.checked_mul(1u64 << shift).ok_or("too large")
}

/// A size argument of a subcommand (`--max-record 16MiB`): at least one byte.
pub fn parse_size_arg(s: &str) -> Result<usize, String> {
    let n = parse_size(s).map_err(str::to_string)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be at least 1 byte and fit this machine".into()),
    }
}

/// A duration argument of a subcommand (`--timeout 30s`).
pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(str::to_string)
}

/// Seconds, or a number with a unit: `10`, `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    const REASON: &str = "not a duration (seconds, or with ms, s, m, h)";
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(REASON);
    }
    let n: u64 = digits.parse().map_err(|_| REASON)?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or("too long")?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or("too long")?),
        _ => return Err(REASON),
    };
    if d.is_zero() {
        return Err("must be longer than zero");
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err("too long (a week at most)");
    }
    Ok(d)
}

pub fn parse_ip(s: &str) -> Result<IpAddr, &'static str> {
    let t = s.trim();
    let t = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
    t.parse::<IpAddr>().map_err(|_| "not an IP address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_accept_every_documented_spelling() {
        for (t, v) in [
            ("1", true),
            ("0", false),
            ("TRUE", true),
            ("no", false),
            ("on", true),
            ("off", false),
        ] {
            assert_eq!(parse_bool(t), Some(v), "{t}");
        }
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("2 G"), Ok(2 << 30));
        assert!(parse_size("1TiB").is_err());
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_ip("[::1]"), Ok("::1".parse().unwrap()));
    }
}
