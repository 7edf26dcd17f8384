//! Timestamps as RFC 3339 text (UTC, milliseconds) and ASN.1 times as Unix seconds.
//!
//! Small and dependency-free on purpose: the daemon needs exactly these two conversions.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-25T15:35:22.123Z` for the given time.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day, h, mi, s) = civil_from_unix(secs);
    format!(
        "{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

/// `2026-11-25T15:35:22Z` for Unix seconds.
pub fn rfc3339_secs(secs: i64) -> String {
    let (y, mo, day, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Splits Unix seconds into year, month, day, hour, minute, second (proleptic Gregorian, UTC).
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix seconds for a UTC date and time.
pub fn unix_from_civil(y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_678_150_650), "2023-03-07T00:57:30Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_678_150_650_123);
        assert_eq!(rfc3339_millis(t), "2023-03-07T00:57:30.123Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn civil_round_trips() {
        for secs in [
            0i64,
            951_782_400,
            1_678_150_650,
            4_102_444_800,
            253_402_300_799,
            -86_400,
        ] {
            let (y, m, d, h, mi, s) = civil_from_unix(secs);
            assert_eq!(unix_from_civil(y, m, d, h, mi, s), secs);
        }
    }
}
