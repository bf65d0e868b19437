//! Schedules said back in words, so an agent can read them to its user instead of doing time arithmetic.
//!
//! [`describe`] turns a schedule into plain English with its zone ("every weekday at 09:00 (America/New_York)",
//! "once on Tue 9 Dec 2026 at 15:00 (UTC)", "every 5 minutes"). Cron patterns that read naturally are put in words;
//! any other pattern is quoted as it is (`at times matching cron "0 0 13 * FRI" (UTC)`), so a description is never
//! wrong, only sometimes less friendly. [`next_runs`] lists fire instants in UTC and in the schedule's zone.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::schedule::{cron_fields, CompiledSchedule};
use crate::Schedule;

/// Full weekday names, Sunday first (cron's day-of-week numbering).
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
/// Short month names, January first.
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY_ABBREVIATIONS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_ABBREVIATIONS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// The schedule in plain English, with its zone for wall-clock schedules.
pub fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Once { execute_at, timezone } => {
            let zone = timezone.as_deref().and_then(|name| name.parse::<Tz>().ok()).unwrap_or(Tz::UTC);
            let name = if zone == Tz::UTC { "UTC" } else { zone.name() };
            format!("once on {} ({name})", date_and_time(&execute_at.with_timezone(&zone)))
        }
        Schedule::Interval { seconds, bounds } => format!("{}{}", every_interval(*seconds), end_words(bounds, Tz::UTC)),
        Schedule::Cron { expression, timezone, bounds } => {
            let zone = timezone.as_deref().unwrap_or("UTC");
            let tz = zone.parse::<Tz>().unwrap_or(Tz::UTC);
            let end = end_words(bounds, tz);
            match describe_cron(expression) {
                Some(words) => format!("{words} ({zone}){end}"),
                None => format!("at times matching cron \"{}\" ({zone}){end}", expression.trim()),
            }
        }
    }
}

/// How a recurring schedule ends, in words: `, 3 times`, `, until Thu 24 Dec 2026 at 09:00 (UTC)`.
fn end_words(bounds: &crate::schedule::Bounds, zone: Tz) -> String {
    let mut words = String::new();
    match bounds.max_runs {
        Some(1) => words.push_str(", once"),
        Some(runs) => words.push_str(&format!(", {runs} times")),
        None => {}
    }
    if let Some(until) = bounds.until {
        let zone_name = if zone == Tz::UTC { "UTC".to_owned() } else { zone.name().to_owned() };
        words.push_str(&format!(", until {} ({zone_name})", date_and_time(&until.with_timezone(&zone))));
    }
    words
}

/// Fire instants on the wire: `[{utc, local}]`, `local` in the schedule's zone with its offset.
pub fn runs_view(instants: &[DateTime<Utc>], zone: Tz) -> Value {
    Value::Array(
        instants
            .iter()
            .map(|at| {
                json!({
                    "utc": crate::wire::instant(*at),
                    "local": at.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                })
            })
            .collect(),
    )
}

/// The next `n` fire instants of an active job whose next slot is `next`, on the grid anchored at `anchor`.
pub fn next_runs(
    compiled: &CompiledSchedule,
    next: DateTime<Utc>,
    anchor: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    if n == 0 {
        return Vec::new();
    }
    let mut runs = vec![next];
    // `next` is stored to the millisecond; a once schedule's instant may be finer, and is the same run.
    runs.extend(
        compiled
            .preview(next, anchor, n - 1)
            .into_iter()
            .filter(|run| run.timestamp_millis() > next.timestamp_millis()),
    );
    runs
}

/// "Tue 9 Dec 2026 at 15:00" (seconds shown only when they are not zero).
pub(crate) fn date_and_time(at: &DateTime<Tz>) -> String {
    format!("{} at {}", date(at), clock_time(at.hour(), at.minute(), at.second()))
}

/// "Tue 9 Dec 2026".
pub(crate) fn date(at: &DateTime<Tz>) -> String {
    let weekday = &WEEKDAYS[at.weekday().num_days_from_sunday() as usize][..3];
    format!("{weekday} {} {} {}", at.day(), MONTHS[at.month0() as usize], at.year())
}

/// "09:00", or "09:00:30" when the seconds are not zero.
pub(crate) fn clock_time(hour: u32, minute: u32, second: u32) -> String {
    if second == 0 {
        format!("{hour:02}:{minute:02}")
    } else {
        format!("{hour:02}:{minute:02}:{second:02}")
    }
}

/// "every 5 minutes", "every second", "every 90 seconds", "every 2 days".
fn every_interval(seconds: u64) -> String {
    let (count, unit) = if seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else if seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    every(count, unit)
}

fn every(count: u64, unit: &str) -> String {
    if count == 1 {
        format!("every {unit}")
    } else {
        format!("every {count} {unit}s")
    }
}

/// One cron field, as far as a description cares.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// `*` or `?`.
    Any,
    /// `*/n`.
    Step(u32),
    /// `a-b`.
    Range(u32, u32),
    /// `a,b,c` (one value or several), ascending.
    Values(Vec<u32>),
}

/// Reads a field: numbers, or names from `names` (numbered from `first`); `None` for anything else.
fn part(text: &str, names: &[&str], first: u32) -> Option<Part> {
    let value = |word: &str| -> Option<u32> {
        if let Ok(number) = word.parse::<u32>() {
            return Some(number);
        }
        names.iter().position(|name| *name == word).and_then(|index| u32::try_from(index).ok()).map(|i| i + first)
    };
    if text == "*" || text == "?" {
        return Some(Part::Any);
    }
    if let Some(step) = text.strip_prefix("*/") {
        return step.parse().ok().filter(|step| *step > 0).map(Part::Step);
    }
    if let Some((from, to)) = text.split_once('-') {
        let (from, to) = (value(from)?, value(to)?);
        return (from <= to).then_some(Part::Range(from, to));
    }
    let mut values: Vec<u32> = text.split(',').map(value).collect::<Option<_>>()?;
    values.sort_unstable();
    values.dedup();
    Some(Part::Values(values))
}

/// A cron pattern in words without its zone, or `None` when it does not read naturally.
fn describe_cron(expression: &str) -> Option<String> {
    let fields = cron_fields(expression).ok()?;
    let text: Vec<&str> = fields.iter().map(|field| field.upper.as_str()).collect();
    let [second, minute, hour] = [part(text[0], &[], 0)?, part(text[1], &[], 0)?, part(text[2], &[], 0)?];
    let month = part(text[4], &MONTH_ABBREVIATIONS, 1)?;
    let weekday = match part(text[5], &DAY_ABBREVIATIONS, 0)? {
        // 7 is Sunday too.
        Part::Values(values) => {
            let mut values: Vec<u32> = values.into_iter().map(|day| day % 7).collect();
            values.sort_unstable();
            values.dedup();
            Part::Values(values)
        }
        other => other,
    };
    let days = describe_days(text[3], &month, &weekday)?;
    match describe_times(&second, &minute, &hour)? {
        Times::At(times) if days == "every day" => Some(format!("every day at {times}")),
        Times::At(times) => Some(format!("{days} at {times}")),
        Times::Every(period) if days == "every day" => Some(period),
        Times::Every(period) => Some(format!("{period}, {days}")),
    }
}

enum Times {
    /// Specific wall times: "09:00 and 17:30".
    At(String),
    /// A repeating period within the day: "every 5 minutes".
    Every(String),
}

fn describe_times(second: &Part, minute: &Part, hour: &Part) -> Option<Times> {
    use Part::*;
    let zero = Values(vec![0]);
    match (second, minute, hour) {
        (Values(seconds), Values(minutes), Values(hours)) if seconds.len() == 1 => {
            let count = minutes.len() * hours.len();
            if count == 0 || count > 6 {
                return None;
            }
            let times: Vec<String> = hours
                .iter()
                .flat_map(|hour| minutes.iter().map(move |minute| clock_time(*hour, *minute, seconds[0])))
                .collect();
            Some(Times::At(list(&times)))
        }
        (Any, Any, Any) => Some(Times::Every("every second".into())),
        (Step(step), Any, Any) => Some(Times::Every(every(u64::from(*step), "second"))),
        (second, Any, Any) if *second == zero => Some(Times::Every("every minute".into())),
        (second, Step(step), Any) if *second == zero => Some(Times::Every(every(u64::from(*step), "minute"))),
        (second, Values(minutes), Any) if *second == zero && minutes.len() == 1 => {
            Some(Times::Every(format!("every hour at minute {}", minutes[0])))
        }
        (second, Values(minutes), Step(step)) if *second == zero && minutes.len() == 1 => {
            Some(Times::Every(format!("{} at minute {}", every(u64::from(*step), "hour"), minutes[0])))
        }
        (second, Any, Range(from, to)) if *second == zero => {
            Some(Times::Every(format!("every minute from {} to {}", clock_time(*from, 0, 0), clock_time(*to, 59, 0))))
        }
        (second, Step(step), Range(from, to)) if *second == zero => Some(Times::Every(format!(
            "{} from {} to {}",
            every(u64::from(*step), "minute"),
            clock_time(*from, 0, 0),
            clock_time(*to, 59, 0)
        ))),
        (second, Values(minutes), Range(from, to)) if *second == zero && minutes.len() == 1 => Some(Times::Every(
            format!("every hour from {} to {}", clock_time(*from, minutes[0], 0), clock_time(*to, minutes[0], 0)),
        )),
        _ => None,
    }
}

fn describe_days(day_of_month: &str, month: &Part, weekday: &Part) -> Option<String> {
    use Part::*;
    let restricted_weekday = *weekday != Any;
    let in_months = match month {
        Any => String::new(),
        Values(months) => format!(" in {}", list(&month_names(months)?)),
        Range(from, to) => format!(" from {} to {}", month_name(*from)?, month_name(*to)?),
        Step(_) => return None,
    };
    match (day_of_month, restricted_weekday) {
        ("*" | "?", false) if *month == Any => Some("every day".into()),
        ("*" | "?", false) => Some(format!("every day{in_months}")),
        ("*" | "?", true) => {
            let days = match weekday {
                Range(1, 5) => "every weekday".to_string(),
                Values(days) if *days == [1, 2, 3, 4, 5] => "every weekday".to_string(),
                Values(days) => {
                    // Monday first, Sunday last, as people list a week.
                    let mut days = days.clone();
                    days.sort_by_key(|day| (day + 6) % 7);
                    format!("every {}", list(&weekday_names(&days)?))
                }
                Range(from, to) => {
                    format!("every {} to {}", WEEKDAYS.get(*from as usize)?, WEEKDAYS.get(*to as usize % 7)?)
                }
                _ => return None,
            };
            Some(format!("{days}{in_months}"))
        }
        // With both day fields restricted, either matches (POSIX): quoted rather than put in words.
        (_, true) => None,
        ("L", false) => Some(format!("on the last day of {}", of_months(month)?)),
        (days, false) => match part(days, &[], 0)? {
            Values(days) => {
                let numbers: Vec<String> = days.iter().map(u32::to_string).collect();
                let noun = if days.len() == 1 { "day" } else { "days" };
                match month {
                    Values(months) if months.len() == 1 && days.len() == 1 => {
                        Some(format!("every year on {} {}", days[0], month_name(months[0])?))
                    }
                    _ => Some(format!("on {noun} {} of {}", list(&numbers), of_months(month)?)),
                }
            }
            _ => None,
        },
    }
}

/// "every month", "Jan and Jul", "every month from Mar to Oct".
fn of_months(month: &Part) -> Option<String> {
    match month {
        Part::Any => Some("every month".into()),
        Part::Values(months) => Some(list(&month_names(months)?)),
        Part::Range(from, to) => Some(format!("every month from {} to {}", month_name(*from)?, month_name(*to)?)),
        Part::Step(_) => None,
    }
}

fn month_name(month: u32) -> Option<String> {
    MONTHS.get(month.checked_sub(1)? as usize).map(|name| (*name).to_string())
}

fn month_names(months: &[u32]) -> Option<Vec<String>> {
    months.iter().map(|month| month_name(*month)).collect()
}

fn weekday_names(days: &[u32]) -> Option<Vec<String>> {
    days.iter().map(|day| WEEKDAYS.get(*day as usize).map(|name| (*name).to_string())).collect()
}

/// "a", "a and b", "a, b and c".
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
