//! Timestamps as the daemon prints them: RFC 3339, UTC, with milliseconds for records and
//! whole seconds for certificates; and RFC 3339 text read back (`_received_at` in a log).
//!
//! The calendar and the formats are the `time` crate's; this module only fixes which format.

use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339 with exactly three fractional digits, so that lines sort as text.
const MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
/// RFC 3339 in whole seconds.
const SECS: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `2026-11-25T15:35:22.123Z` for the given time.
pub fn rfc3339_millis(t: SystemTime) -> String {
    // Formatting a UTC time into a String with this description cannot fail.
    OffsetDateTime::from(t).format(MILLIS).unwrap_or_default()
}

/// `2026-11-25T15:35:22Z` for Unix seconds (or the Unix epoch's text for an impossible one).
pub fn rfc3339_secs(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(SECS)
        .unwrap_or_default()
}

/// Unix milliseconds of an RFC 3339 timestamp (any offset, any precision), or `None`.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_678_150_650), "2023-03-07T00:57:30Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_678_150_650_123);
        assert_eq!(rfc3339_millis(t), "2023-03-07T00:57:30.123Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_678_150_650_000);
        assert_eq!(rfc3339_millis(t), "2023-03-07T00:57:30.000Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        let t = UNIX_EPOCH + Duration::from_millis(1_678_150_650_123);
        assert_eq!(parse_rfc3339_millis(&rfc3339_millis(t)), Some(1_678_150_650_123));
        assert_eq!(
            parse_rfc3339_millis("2023-03-07T01:57:30.5+01:00"),
            Some(1_678_150_650_500)
        );
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
    }
}
