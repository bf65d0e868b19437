//! Times as a model says them, read by the server so that the model never does time zone arithmetic: a wall-clock
//! time in an IANA zone (`2026-12-24T09:00` in `America/New_York`), an instant with an offset, or a delay
//! (`15m`, `2h30m`). Every error names the argument and says what would be right.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The longest delay `in` takes: ten years.
const MAX_DELAY_SECONDS: i64 = 10 * 366 * 86_400;

/// An IANA zone, or an error naming `field`.
pub fn zone(name: &str, field: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("{field}: unknown time zone {name:?}; use an IANA zone name such as America/New_York or Europe/Paris")
    })
}

/// The instant `text` names: an RFC 3339 instant with an offset (`2026-12-24T14:00:00Z`,
/// `2026-12-24T09:00:00-05:00`), or a wall-clock time (`2026-12-24T09:00`, seconds optional) read in `timezone`.
/// A wall-clock time without a zone is an error, never silently UTC; one that does not exist (clocks going forward)
/// is an error naming the gap; one that happens twice (clocks going back) is its first pass.
pub fn instant(text: &str, timezone: Option<&str>, field: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(|| {
            format!(
                "{field}: {text:?} is not a time; give a wall-clock time such as 2026-12-24T09:00 (with timezone) or \
                 an instant with an offset such as 2026-12-24T14:00:00Z"
            )
        })?;
    let Some(timezone) = timezone else {
        return Err(format!(
            "{field}: {text:?} is a wall-clock time and needs `timezone` (the user's IANA zone, such as \
             America/New_York); Sundial never guesses UTC"
        ));
    };
    let tz = zone(timezone, "timezone")?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{field}: {text} does not exist in {timezone} (the clocks go forward over it); choose a time outside the \
             gap, such as an hour later"
        )),
    }
}

/// Seconds of a delay such as `90s`, `15m`, `2h30m`, `1d12h` or `1w` (parts in that order, at least one).
pub fn delay_seconds(text: &str, field: &str) -> Result<i64, String> {
    let bad = || {
        format!("{field}: {text:?} is not a delay; write it like 90s, 15m, 2h30m, 1d or 1w (weeks, days, hours, minutes, seconds)")
    };
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    if compact.is_empty() {
        return Err(bad());
    }
    let units = [('w', 7 * 86_400), ('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut total: i64 = 0;
    let mut rest = compact.as_str();
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let position = units.iter().skip(next_unit).position(|(name, _)| *name == unit).ok_or_else(bad)? + next_unit;
        total = total.saturating_add(number.saturating_mul(units[position].1));
        next_unit = position + 1;
        rest = &rest[digits + 1..];
    }
    if total <= 0 {
        return Err(format!("{field}: a delay must be at least one second"));
    }
    if total > MAX_DELAY_SECONDS {
        return Err(format!("{field}: a delay may be at most ten years"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_times_are_read_in_their_zone() {
        let at = instant("2026-12-24T09:00", Some("America/New_York"), "at").expect("winter");
        assert_eq!(at.to_rfc3339(), "2026-12-24T14:00:00+00:00");
        let at = instant("2026-07-04 09:30:15", Some("America/New_York"), "at").expect("summer");
        assert_eq!(at.to_rfc3339(), "2026-07-04T13:30:15+00:00");
        assert_eq!(
            instant("2026-12-24T09:00:00-05:00", None, "at").expect("offset").to_rfc3339(),
            "2026-12-24T14:00:00+00:00"
        );
        assert!(instant("2026-12-24T09:00", None, "at").expect_err("no zone").contains("needs `timezone`"));
        assert!(instant("2026-03-08T02:30", Some("America/New_York"), "at")
            .expect_err("gap")
            .contains("does not exist"));
        let first = instant("2026-11-01T01:30", Some("America/New_York"), "at").expect("repeated hour");
        assert_eq!(first.to_rfc3339(), "2026-11-01T05:30:00+00:00", "the first pass (EDT)");
        assert!(instant("tomorrow", Some("UTC"), "at").expect_err("words").contains("not a time"));
        assert!(zone("Mars/Base", "timezone").expect_err("zone").contains("unknown time zone"));
    }

    #[test]
    fn delays_are_read_in_units() {
        assert_eq!(delay_seconds("2s", "in"), Ok(2));
        assert_eq!(delay_seconds("15m", "in"), Ok(900));
        assert_eq!(delay_seconds("2h30m", "in"), Ok(9_000));
        assert_eq!(delay_seconds("1d 12h", "in"), Ok(129_600));
        assert_eq!(delay_seconds("1W", "in"), Ok(604_800));
        for bad in ["", "15", "m", "30m2h", "2h2h", "1.5h", "-5m", "0s", "soon"] {
            assert!(delay_seconds(bad, "in").is_err(), "{bad:?}");
        }
        assert!(delay_seconds("11000d", "in").expect_err("too long").contains("ten years"));
    }
}
