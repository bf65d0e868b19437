//! Job schedules: the wire type, validation of untrusted input, and next-fire computation (cron, time zones, DST).
//!
//! A [`Schedule`] is what a client sends and what the store keeps. [`Schedule::parse`] validates an untrusted JSON
//! value and names the offending field in every error; [`Schedule::compile`] turns a schedule into a
//! [`CompiledSchedule`] that answers "when does it fire next?" without parsing anything again.
//!
//! # Cron semantics
//!
//! Patterns have 5 fields (minute precision, seconds = 0) or 6 (a leading seconds field), or are one of the nicknames
//! `@yearly @annually @monthly @weekly @daily @midnight @hourly`. `croner` parses them and matches wall-clock times;
//! this module maps wall-clock times to instants itself, because croner's own DST handling does not follow SPEC §3
//! for patterns with lists or ranges in their time fields (it fires `0,30 1 * * *` twice on a fall-back day and skips
//! `0,30 2 * * *` on a spring-forward day).
//!
//! With both day-of-month and day-of-week restricted, a day matches when **either** matches (the POSIX/Vixie rule:
//! `0 0 13 * FRI` fires on every 13th and on every Friday). This is croner's default (`dom_and_dow = false`); a `+`
//! before the day-of-week field (a croner extension) asks for both instead.
//!
//! # Daylight saving time
//!
//! Patterns fall into two kinds, decided by how the time-of-day fields are written (Vixie cron's rule, extended to
//! the seconds field):
//!
//! - A **clock** pattern has a second, minute or hour field starting with `*` (`* * * * *`, `*/15 * * * *`,
//!   `0 * * * *`, `@hourly`). It repeats through the day, so it follows the clock as it is: it fires at every instant
//!   whose local wall time matches. Across a fall-back it fires in both passes of the repeated hour (so `*/15` keeps
//!   a steady 15-minute rate in UTC), and wall times skipped by a spring-forward simply do not happen.
//! - Any other pattern names **specific wall times** (`30 2 * * *`, `0 9,17 * * MON-FRI`, `0,30 1 * * *`). SPEC §3
//!   applies: a wall time that does not exist fires once, at the first instant after the gap (`30 2 * * *` in
//!   America/New_York on 2025-03-09 fires at 03:00 EDT); a wall time that happens twice fires once, at its first
//!   occurrence (`30 1 * * *` on 2025-11-02 fires at 01:30 EDT only). Several wall times in one gap fire together,
//!   once.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde_json::Value;

/// The default upper bound of an interval: ten Julian years (10 × 365.25 days) in seconds.
pub const DEFAULT_MAX_INTERVAL_SECONDS: u64 = 315_576_000;

/// A job's schedule, as it appears on the wire (camelCase JSON, tagged by "type").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Schedule {
    /// Fires once, at `executeAt`; a past instant fires at once.
    Once {
        /// The instant to fire at.
        #[serde(rename = "executeAt")]
        execute_at: DateTime<Utc>,
        /// The IANA zone it is said in (descriptions and local times); `None` says it in UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Fires at a fixed rate on the grid `anchor + k·seconds` (k ≥ 1), anchored at activation.
    Interval {
        /// The grid's spacing in seconds (at least 1).
        seconds: u64,
        /// Where it ends, if it does.
        #[serde(flatten)]
        bounds: Bounds,
    },
    /// Fires whenever the cron pattern matches the wall clock of `timezone`.
    Cron {
        /// A 5- or 6-field cron pattern, or a nickname such as `@daily`.
        expression: String,
        /// An IANA zone name; `None` means UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
        /// Where it ends, if it does.
        #[serde(flatten)]
        bounds: Bounds,
    },
}

/// Where a recurring schedule ends: no slot after `until`, and no more than `maxRuns` slots counted from its
/// activation (slots missed while no scheduler ran count too). After its last slot's run the job ends like a once
/// job. Without either it runs until it is deactivated.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    /// The last instant a slot may fall on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The most slots it fires, from its activation.
    #[serde(default, rename = "maxRuns", skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u32>,
}

impl Bounds {
    /// Whether the schedule ends.
    pub fn is_bounded(&self) -> bool {
        self.until.is_some() || self.max_runs.is_some()
    }
}

/// Server-configurable bounds used by validation.
#[derive(Clone, Debug)]
pub struct ScheduleLimits {
    /// The smallest accepted interval in seconds; values below 1 act as 1.
    pub min_interval_seconds: u64,
    /// The largest accepted interval in seconds.
    pub max_interval_seconds: u64,
}

impl Default for ScheduleLimits {
    fn default() -> Self {
        ScheduleLimits { min_interval_seconds: 1, max_interval_seconds: DEFAULT_MAX_INTERVAL_SECONDS }
    }
}

/// Why a schedule is invalid: `field` is the full JSON path (e.g. "schedule.expression"), `reason` says why.
///
/// Display is "{field}: {reason}", e.g. `schedule.expression: expected 5 or 6 fields, got 4`,
/// `schedule.timezone: unknown IANA zone "Mars/Base"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ScheduleError {
    /// The JSON path of the offending field.
    pub field: String,
    /// Why the field is invalid: lowercase, no trailing full stop.
    pub reason: String,
}

impl ScheduleError {
    fn new(field: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError { field: field.to_string(), reason: reason.into() }
    }
}

const FIELD_SCHEDULE: &str = "schedule";
const FIELD_TYPE: &str = "schedule.type";
const FIELD_EXECUTE_AT: &str = "schedule.executeAt";
const FIELD_SECONDS: &str = "schedule.seconds";
const FIELD_EXPRESSION: &str = "schedule.expression";
const FIELD_TIMEZONE: &str = "schedule.timezone";
const FIELD_UNTIL: &str = "schedule.until";
const FIELD_MAX_RUNS: &str = "schedule.maxRuns";

impl Schedule {
    /// Validate and parse an untrusted JSON value (the `schedule` field of a request).
    ///
    /// Every error names the field: "schedule" (not an object / missing), "schedule.type" (missing or not one of
    /// once|interval|cron), "schedule.executeAt" (missing, not an RFC 3339 instant or epoch milliseconds),
    /// "schedule.seconds" (missing, not an integer, out of `limits`), "schedule.expression" (missing, not a string,
    /// wrong field count, a field croner rejects, a pattern that matches no date), "schedule.timezone" (not a
    /// string, unknown IANA zone). Unknown extra keys are ignored; `null` counts as absent.
    pub fn parse(value: &Value, limits: &ScheduleLimits) -> Result<Schedule, ScheduleError> {
        let object = match value {
            Value::Object(object) => object,
            Value::Null => return Err(ScheduleError::new(FIELD_SCHEDULE, "is required")),
            other => return Err(ScheduleError::new(FIELD_SCHEDULE, expected("an object", other))),
        };
        let field = |name: &str| object.get(name).filter(|value| !value.is_null());
        let kind = match field("type") {
            None => return Err(ScheduleError::new(FIELD_TYPE, "is required")),
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => return Err(ScheduleError::new(FIELD_TYPE, expected("a string", other))),
        };
        match kind {
            "once" => {
                let timezone = match field("timezone") {
                    None => None,
                    Some(Value::String(timezone)) => {
                        parse_zone(timezone)?;
                        Some(timezone.clone())
                    }
                    Some(other) => return Err(ScheduleError::new(FIELD_TIMEZONE, expected("a string", other))),
                };
                Ok(Schedule::Once { execute_at: parse_execute_at(field("executeAt"))?, timezone })
            }
            "interval" => Ok(Schedule::Interval {
                seconds: parse_seconds(field("seconds"), limits)?,
                bounds: parse_bounds(field("until"), field("maxRuns"))?,
            }),
            "cron" => {
                let expression = match field("expression") {
                    None => return Err(ScheduleError::new(FIELD_EXPRESSION, "is required")),
                    Some(Value::String(expression)) => expression.clone(),
                    Some(other) => return Err(ScheduleError::new(FIELD_EXPRESSION, expected("a string", other))),
                };
                let timezone = match field("timezone") {
                    None => None,
                    Some(Value::String(timezone)) => Some(timezone.clone()),
                    Some(other) => return Err(ScheduleError::new(FIELD_TIMEZONE, expected("a string", other))),
                };
                CronRule::compile(&expression, timezone.as_deref())?;
                Ok(Schedule::Cron { expression, timezone, bounds: parse_bounds(field("until"), field("maxRuns"))? })
            }
            other => Err(ScheduleError::new(
                FIELD_TYPE,
                format!(r#"expected one of "once", "interval", "cron", got {}"#, quoted(other)),
            )),
        }
    }

    /// Prepare for next-fire computation (parses the cron pattern and zone once). Errors as in [`Schedule::parse`]
    /// (without the server's interval limits: any interval of at least one second compiles).
    pub fn compile(&self) -> Result<CompiledSchedule, ScheduleError> {
        let (kind, bounds) = match self {
            Schedule::Once { execute_at, timezone } => {
                let zone = timezone.as_deref().map(parse_zone).transpose()?;
                return Ok(CompiledSchedule {
                    kind: Kind::Once(*execute_at),
                    bounds: Bounds::default(),
                    last: Arc::default(),
                    zone,
                });
            }
            Schedule::Interval { seconds: 0, .. } => {
                return Err(ScheduleError::new(FIELD_SECONDS, "must be at least 1"));
            }
            Schedule::Interval { seconds, bounds } => (Kind::Interval(*seconds), bounds.clone()),
            Schedule::Cron { expression, timezone, bounds } => {
                (Kind::Cron(Arc::new(CronRule::compile(expression, timezone.as_deref())?)), bounds.clone())
            }
        };
        Ok(CompiledSchedule { kind, bounds, last: Arc::default(), zone: None })
    }

    /// A once schedule at `execute_at`, said in UTC.
    pub fn once(execute_at: DateTime<Utc>) -> Schedule {
        Schedule::Once { execute_at, timezone: None }
    }

    /// An interval schedule of `seconds`, without an end.
    pub fn interval(seconds: u64) -> Schedule {
        Schedule::Interval { seconds, bounds: Bounds::default() }
    }

    /// A cron schedule read in `timezone` (UTC when `None`), without an end.
    pub fn cron(expression: impl Into<String>, timezone: Option<String>) -> Schedule {
        Schedule::Cron { expression: expression.into(), timezone, bounds: Bounds::default() }
    }

    /// Where a recurring schedule ends (`until`, `maxRuns`); nothing for a once schedule.
    pub fn bounds(&self) -> Option<&Bounds> {
        match self {
            Schedule::Once { .. } => None,
            Schedule::Interval { bounds, .. } | Schedule::Cron { bounds, .. } => Some(bounds),
        }
    }

    /// Whether the schedule fires more than once (interval and cron).
    pub fn is_recurring(&self) -> bool {
        !matches!(self, Schedule::Once { .. })
    }

    /// The IANA zone the schedule is read in: a cron's `timezone`, "UTC" by default.
    pub fn timezone_name(&self) -> &str {
        match self {
            Schedule::Cron { timezone: Some(timezone), .. } | Schedule::Once { timezone: Some(timezone), .. } => {
                timezone
            }
            _ => "UTC",
        }
    }
}

/// A schedule ready to compute fire instants.
#[derive(Clone, Debug)]
pub struct CompiledSchedule {
    kind: Kind,
    bounds: Bounds,
    /// The last slot allowed by `maxRuns` for the anchor it was computed for (a cron's takes a walk to find).
    last: Arc<std::sync::Mutex<Option<CountedEnd>>>,
    /// The zone a once schedule is said in.
    zone: Option<Tz>,
}

/// An anchor and the `maxRuns`-th slot after it (`None` past the end of time).
type CountedEnd = (DateTime<Utc>, Option<DateTime<Utc>>);

#[derive(Clone, Debug)]
enum Kind {
    Once(DateTime<Utc>),
    Interval(u64),
    /// Shared, so cloning a compiled schedule is cheap.
    Cron(Arc<CronRule>),
}

impl CompiledSchedule {
    /// The first slot of a schedule activated at `anchor` (activation time).
    ///
    /// once → `executeAt` even when it is in the past (the scheduler fires past-due once jobs at once);
    /// interval → `anchor + seconds`; cron → the first matching instant strictly after `anchor`.
    pub fn first_slot(&self, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let slot = match &self.kind {
            Kind::Once(at) => return Some(*at),
            Kind::Interval(seconds) => grid_slot(anchor, *seconds, 1),
            Kind::Cron(rule) => rule.next_after(anchor),
        };
        self.within_bounds(slot?, anchor)
    }

    /// The last instant a slot may fall on (`until`, the `maxRuns`-th slot from `anchor`), if the schedule ends.
    fn end(&self, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let counted = self.bounds.max_runs.and_then(|runs| self.last_counted_slot(anchor, runs));
        match (self.bounds.until, counted) {
            (Some(until), Some(counted)) => Some(until.min(counted)),
            (until, counted) => until.or(counted),
        }
    }

    /// `slot` when the schedule's end (`until`, `maxRuns` from `anchor`) allows it.
    fn within_bounds(&self, slot: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.bounds.until.is_some_and(|until| slot > until) {
            return None;
        }
        // A `maxRuns`-th slot past the end of time bounds nothing.
        match self.bounds.max_runs.and_then(|runs| self.last_counted_slot(anchor, runs)) {
            Some(last) => (slot <= last).then_some(slot),
            None => Some(slot),
        }
    }

    /// The `runs`-th slot after `anchor` (remembered for the last anchor asked about).
    fn last_counted_slot(&self, anchor: DateTime<Utc>, runs: u32) -> Option<DateTime<Utc>> {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached_anchor, slot)) = *last {
            if cached_anchor == anchor {
                return slot;
            }
        }
        let slot = match &self.kind {
            Kind::Once(at) => Some(*at),
            Kind::Interval(seconds) => grid_slot(anchor, *seconds, u64::from(runs)),
            Kind::Cron(rule) => {
                let mut slot = rule.next_after(anchor);
                for _ in 1..runs {
                    slot = slot.and_then(|at| rule.next_after(at));
                }
                slot
            }
        };
        *last = Some((anchor, slot));
        slot
    }

    /// The first slot strictly after `after`.
    ///
    /// once → `None` (a once job has one slot, see [`CompiledSchedule::first_slot`]); interval → the next point of
    /// the fixed grid `anchor + k·seconds` (k ≥ 1) strictly after `after`, so a slow run never shifts the grid;
    /// cron → the next match strictly after `after`. `None` when there is no further slot.
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let slot = match &self.kind {
            Kind::Once(_) => None,
            Kind::Interval(seconds) => {
                let k = grid_slots_until(anchor, *seconds, after).checked_add(1)?;
                grid_slot(anchor, *seconds, k)
            }
            Kind::Cron(rule) => rule.next_after(after),
        };
        self.within_bounds(slot?, anchor)
    }

    /// Number of slots in the half-open range `(from, to]`, at most `cap` (used to count missed slots after
    /// downtime). once → 0 or 1; interval → computed from the grid; cron → counted by iterating, stopping at `cap`.
    pub fn count_slots(&self, from: DateTime<Utc>, to: DateTime<Utc>, anchor: DateTime<Utc>, cap: u64) -> u64 {
        let to = match self.end(anchor) {
            Some(end) => to.min(end),
            None => to,
        };
        if to <= from {
            return 0;
        }
        let count = match &self.kind {
            Kind::Once(at) => u64::from(from < *at && *at <= to),
            Kind::Interval(seconds) => {
                grid_slots_until(anchor, *seconds, to) - grid_slots_until(anchor, *seconds, from)
            }
            Kind::Cron(rule) => {
                let mut count = 0;
                let mut cursor = from;
                while count < cap {
                    match rule.next_after(cursor) {
                        Some(slot) if slot <= to => {
                            count += 1;
                            cursor = slot;
                        }
                        _ => break,
                    }
                }
                count
            }
        };
        count.min(cap)
    }

    /// The next `n` slots strictly after `after` (for the preview endpoint). A once schedule shows `executeAt`
    /// when it lies after `after`.
    pub fn preview(&self, after: DateTime<Utc>, anchor: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::new();
        let mut next = match &self.kind {
            Kind::Once(at) => Some(*at).filter(|at| *at > after),
            _ => self.next_after(after, anchor),
        };
        while let Some(slot) = next {
            if slots.len() >= n {
                break;
            }
            slots.push(slot);
            next = self.next_after(slot, anchor);
        }
        slots
    }

    /// What daylight saving time does to the next `n` slots after `after`, in words: a wall time that does not
    /// exist and where it fires instead, a wall time that happens twice and which pass fires. Empty for once and
    /// interval schedules and for zones without daylight saving time.
    pub fn dst_notes(&self, after: DateTime<Utc>, n: usize) -> Vec<String> {
        match &self.kind {
            Kind::Cron(rule) => rule.dst_notes(after, n),
            _ => Vec::new(),
        }
    }

    /// The zone the schedule is read in (UTC for once and interval schedules).
    pub fn timezone(&self) -> Tz {
        match &self.kind {
            Kind::Cron(rule) => rule.zone,
            _ => self.zone.unwrap_or(Tz::UTC),
        }
    }
}

/// The grid point `anchor + k·seconds`, or `None` past the end of time.
fn grid_slot(anchor: DateTime<Utc>, seconds: u64, k: u64) -> Option<DateTime<Utc>> {
    let offset = i64::try_from(seconds.checked_mul(k)?).ok()?;
    anchor.checked_add_signed(TimeDelta::try_seconds(offset)?)
}

/// How many grid points `anchor + k·seconds` (k ≥ 1) lie at or before `t`.
fn grid_slots_until(anchor: DateTime<Utc>, seconds: u64, t: DateTime<Utc>) -> u64 {
    if t <= anchor || seconds == 0 {
        return 0;
    }
    // A positive duration's whole seconds are its floor, and the grid is in whole seconds.
    let elapsed = u64::try_from((t - anchor).num_seconds()).unwrap_or(0);
    elapsed / seconds
}

/// A compiled cron pattern with its zone.
#[derive(Clone, Debug)]
struct CronRule {
    /// Matches wall-clock times (it is only ever given `NaiveDateTime`s, so croner's own DST logic never runs).
    cron: Cron,
    zone: Tz,
    /// A clock pattern (see the module documentation): fires in both passes of a repeated hour and not at all for
    /// wall times in a gap.
    clock: bool,
}

/// The six fields of a pattern (seconds first), for naming the field an error is in.
const FIELD_NAMES: [&str; 6] = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"];
const MONTH_NAMES: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * SUN"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl CronRule {
    fn compile(expression: &str, timezone: Option<&str>) -> Result<CronRule, ScheduleError> {
        let fields = cron_fields(expression)?;
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            // POSIX rule: with both day fields restricted, either may match (see the module documentation).
            .dom_and_dow(false)
            .build();
        let pattern: Vec<&str> = fields.iter().map(|field| field.upper.as_str()).collect();
        let cron = parser.parse(&pattern.join(" ")).map_err(|error| field_error(&parser, &fields, &error))?;
        if !matches_some_date(&parser, &fields) {
            return Err(ScheduleError::new(
                FIELD_EXPRESSION,
                "never fires: no date matches the day-of-month, month and day-of-week fields",
            ));
        }
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => parse_zone(name)?,
        };
        let clock = fields[..3].iter().any(|field| field.upper.starts_with('*'));
        Ok(CronRule { cron, zone, clock })
    }

    /// The first instant strictly after `after` at which the pattern fires.
    ///
    /// Every matching wall time W has a *primary* instant: its only instant, the earlier of two in a repeated
    /// range, or (specific patterns only) the first instant after a gap it falls in. Primary instants never
    /// decrease as W grows, so walking wall times forward from `after`'s own finds the first primary instant after
    /// `after`. Clock patterns also fire at the *later* instant of a repeated wall time; those lie between the
    /// primaries of the repeated range and of the wall time that follows it, and are tracked in `best`.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zone = self.zone;
        let start = self.wall_time(after)?.with_nanosecond(0)?;
        let mut best: Option<DateTime<Utc>> = None;
        let mut on_later_pass = false;
        if let LocalResult::Ambiguous(earlier, later) = zone.from_local_datetime(&start) {
            if after >= later {
                on_later_pass = true;
            } else if self.clock {
                // `after` is on the first pass of a repeated range: the second pass of every matching wall time in
                // the range still lies ahead, starting from the range's first wall time.
                let overlap = later.signed_duration_since(earlier);
                let overlap_start = self.overlap_start(after, overlap);
                if let Some(wall) = overlap_start.and_then(|start| self.wall_match(start, true)) {
                    if let LocalResult::Ambiguous(_, later) = zone.from_local_datetime(&wall) {
                        best = Some(later.with_timezone(&Utc));
                    }
                }
            }
        }
        let earliest =
            |best: Option<DateTime<Utc>>, instant: DateTime<Utc>| Some(best.map_or(instant, |best| best.min(instant)));
        let mut cursor = start;
        let mut inclusive = true;
        loop {
            let Some(wall) = self.wall_match(cursor, inclusive) else {
                return best;
            };
            cursor = wall;
            inclusive = false;
            match zone.from_local_datetime(&wall) {
                LocalResult::Single(instant) => {
                    let instant = instant.with_timezone(&Utc);
                    if instant > after {
                        return earliest(best, instant);
                    }
                }
                LocalResult::Ambiguous(earlier, later) => {
                    let (earlier, later) = (earlier.with_timezone(&Utc), later.with_timezone(&Utc));
                    if earlier > after {
                        return earliest(best, earlier);
                    }
                    if self.clock && later > after {
                        if on_later_pass {
                            // Nothing else can come sooner: the rest of this range's first pass is behind us, and
                            // its later wall times' second passes and everything after it come later.
                            return Some(later);
                        }
                        best = earliest(best, later);
                    }
                }
                LocalResult::None => {
                    if !self.clock {
                        if let Some(instant) = self.gap_end(wall).filter(|instant| *instant > after) {
                            return earliest(best, instant);
                        }
                    }
                }
            }
        }
    }

    /// See [`CompiledSchedule::dst_notes`]. Walks matching wall times as [`CronRule::next_after`] does, counting the
    /// slots they make, and says what each wall time in a gap or a repeated range becomes.
    fn dst_notes(&self, after: DateTime<Utc>, n: usize) -> Vec<String> {
        use crate::describe::{clock_time, date};
        let mut notes: Vec<String> = Vec::new();
        let Some(start) = self.wall_time(after).and_then(|wall| wall.with_nanosecond(0)) else { return notes };
        let zone = self.zone;
        let wall_words = |wall: &NaiveDateTime| clock_time(wall.hour(), wall.minute(), wall.second());
        let mut note = |text: String| {
            if !notes.contains(&text) {
                notes.push(text);
            }
        };
        let (mut cursor, mut slots) = (start, 0);
        // A clock pattern walks every matching wall time of a gap without making a slot: bound the walk.
        for _ in 0..(n * 4 + 100_000) {
            if slots >= n {
                break;
            }
            let Some(wall) = self.wall_match(cursor, false) else { break };
            cursor = wall;
            match zone.from_local_datetime(&wall) {
                LocalResult::Single(_) => slots += 1,
                LocalResult::Ambiguous(earlier, later) => {
                    let day = date(&earlier);
                    if self.clock {
                        slots += 2;
                        note(format!(
                            "clocks go back on {day}: wall times repeated then fire in both passes ({} and {})",
                            earlier.format("%Z"),
                            later.format("%Z")
                        ));
                    } else {
                        slots += 1;
                        note(format!(
                            "{} happens twice on {day} (clocks go back); runs once, at the first ({})",
                            wall_words(&wall),
                            earlier.format("%Z")
                        ));
                    }
                }
                LocalResult::None => {
                    let Some(instead) = self.gap_end(wall).map(|instant| instant.with_timezone(&zone)) else {
                        continue;
                    };
                    let day = date(&instead);
                    if self.clock {
                        note(format!("clocks go forward on {day}: wall times in the gap do not exist and do not fire"));
                    } else {
                        slots += 1;
                        note(format!(
                            "{} does not exist on {day} (clocks go forward); runs at {} {}",
                            wall_words(&wall),
                            clock_time(instead.hour(), instead.minute(), instead.second()),
                            instead.format("%Z")
                        ));
                    }
                }
            }
        }
        notes
    }

    /// The zone's wall time at `instant`, or `None` at the edges of chrono's range (where `naive_local` panics).
    fn wall_time(&self, instant: DateTime<Utc>) -> Option<NaiveDateTime> {
        let offset = self.zone.offset_from_utc_datetime(&instant.naive_utc()).fix();
        instant.naive_utc().checked_add_offset(offset)
    }

    /// The next wall time matching the pattern at or after (`inclusive`) or strictly after `wall`.
    fn wall_match(&self, wall: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&wall, inclusive).ok()
    }

    /// The first wall time of the repeated range whose first pass holds `after`, which is that long (`overlap`).
    fn overlap_start(&self, after: DateTime<Utc>, overlap: TimeDelta) -> Option<NaiveDateTime> {
        // The clock goes back exactly once between `after` and `after + overlap`: find that instant by bisection.
        let offset_at = |seconds: i64| {
            DateTime::from_timestamp(seconds, 0)
                .map(|instant| self.zone.offset_from_utc_datetime(&instant.naive_utc()).fix())
        };
        let mut before = after.timestamp();
        let mut since = before.checked_add(overlap.num_seconds())?;
        let first_offset = offset_at(before)?;
        if offset_at(since)? == first_offset {
            return None;
        }
        while since - before > 1 {
            let middle = before + (since - before) / 2;
            if offset_at(middle)? == first_offset {
                before = middle;
            } else {
                since = middle;
            }
        }
        self.wall_time(DateTime::from_timestamp(since, 0)?)
    }

    /// The first instant after the gap that the wall time `wall` falls in (the instant the clock jumps forward).
    fn gap_end(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let exists = |seconds: i64| {
            let candidate = wall.checked_add_signed(TimeDelta::try_seconds(seconds)?)?;
            Some(!matches!(self.zone.from_local_datetime(&candidate), LocalResult::None))
        };
        // Widen until a wall time exists (no gap lasts days), then bisect to the first one.
        let mut missing = 0_i64;
        let mut present = 1_i64;
        while !exists(present)? {
            missing = present;
            present = present.checked_mul(2).filter(|seconds| *seconds <= 4 * 86_400)?;
        }
        while present - missing > 1 {
            let middle = missing + (present - missing) / 2;
            if exists(middle)? {
                present = middle;
            } else {
                missing = middle;
            }
        }
        let first = wall.checked_add_signed(TimeDelta::try_seconds(present)?)?;
        self.zone.from_local_datetime(&first).earliest().map(|instant| instant.with_timezone(&Utc))
    }
}

/// One field of a pattern: as written (for messages) and upper-cased (for croner).
pub(crate) struct Field {
    text: String,
    pub(crate) upper: String,
}

/// Splits a pattern into its six fields (seconds first), expanding nicknames and checking the field count and
/// where month and day names appear (croner would otherwise read `JAN` in the day-of-week field as Monday).
pub(crate) fn cron_fields(expression: &str) -> Result<Vec<Field>, ScheduleError> {
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err(ScheduleError::new(FIELD_EXPRESSION, "must not be empty"));
    }
    let expanded = if trimmed.starts_with('@') {
        let expansion = NICKNAMES.iter().find(|(nickname, _)| nickname.eq_ignore_ascii_case(trimmed));
        match expansion {
            Some((_, expansion)) => *expansion,
            None => {
                let known: Vec<&str> = NICKNAMES.iter().map(|(nickname, _)| *nickname).collect();
                return Err(ScheduleError::new(
                    FIELD_EXPRESSION,
                    format!("unknown nickname {} (expected one of {})", quoted(trimmed), known.join(", ")),
                ));
            }
        }
    } else {
        trimmed
    };
    let field = |text: &str| Field { text: text.to_string(), upper: text.to_ascii_uppercase() };
    let mut fields: Vec<Field> = expanded.split_whitespace().map(field).collect();
    match fields.len() {
        5 => fields.insert(0, field("0")),
        6 => {}
        count => {
            return Err(ScheduleError::new(FIELD_EXPRESSION, format!("expected 5 or 6 fields, got {count}")));
        }
    }
    for (index, field) in fields.iter().enumerate() {
        for word in field.upper.split(|c: char| !c.is_ascii_alphabetic()).filter(|word| !word.is_empty()) {
            let misplaced = if MONTH_NAMES.contains(&word) && index != 4 {
                Some("month names belong in the month field")
            } else if DAY_NAMES.contains(&word) && index != 5 {
                Some("day names belong in the day-of-week field")
            } else {
                None
            };
            if let Some(reason) = misplaced {
                return Err(ScheduleError::new(
                    FIELD_EXPRESSION,
                    format!("{} field {}: {reason}", FIELD_NAMES[index], quoted(&field.text)),
                ));
            }
        }
    }
    Ok(fields)
}

/// Whether the day-of-month, month and day-of-week fields match any date at all (`0 0 30 2 *` matches none).
///
/// Without a year field, which dates match depends only on each year's length and the weekday it starts on; the 28
/// years 2000–2027 hold every such kind of year. The scan stops at the first matching date, so it only runs long
/// (about ten thousand cheap checks) for a pattern that is about to be rejected.
fn matches_some_date(parser: &CronParser, fields: &[Field]) -> bool {
    let date_fields: Vec<&str> = fields[3..].iter().map(|field| field.upper.as_str()).collect();
    let Ok(dates) = parser.parse(&format!("0 0 0 {}", date_fields.join(" "))) else {
        return false;
    };
    let (Some(first), Some(last)) = (NaiveDate::from_ymd_opt(2000, 1, 1), NaiveDate::from_ymd_opt(2027, 12, 31)) else {
        return false;
    };
    first
        .iter_days()
        .take_while(|date| *date <= last)
        .any(|date| dates.is_time_matching(&date.and_time(NaiveTime::MIN)).unwrap_or(false))
}

/// Turns a croner parse error into a `schedule.expression` error naming the field it comes from.
fn field_error(parser: &CronParser, fields: &[Field], error: &CronError) -> ScheduleError {
    // Parse each field alone (the others `*`) to find the one croner objects to.
    for (index, field) in fields.iter().enumerate() {
        let mut probe = vec!["*"; fields.len()];
        probe[index] = &field.upper;
        if let Err(error) = parser.parse(&probe.join(" ")) {
            return ScheduleError::new(
                FIELD_EXPRESSION,
                format!("{} field {}: {}", FIELD_NAMES[index], quoted(&field.text), croner_reason(&error, &field.text)),
            );
        }
    }
    ScheduleError::new(FIELD_EXPRESSION, croner_reason(error, ""))
}

/// croner's message in this module's style: lowercase, no "Component error:" prefix, no trailing full stop.
/// `text` is the field as written, to show an illegal character the way the user typed it (croner upper-cases).
fn croner_reason(error: &CronError, text: &str) -> String {
    let message = match error {
        CronError::IllegalCharacters(message) => {
            // croner says "… illegal character 'X' in part '…'" about the upper-cased field.
            let upper = message.split_once("character '").and_then(|(_, rest)| rest.chars().next());
            let written = upper.and_then(|upper| text.chars().find(|c| c.to_ascii_uppercase() == upper)).or(upper);
            return match written {
                Some(c) => format!("illegal character {c:?}"),
                None => "illegal character".to_string(),
            };
        }
        CronError::InvalidPattern(message) | CronError::ComponentError(message) => message.clone(),
        other => other.to_string(),
    };
    let message = message.trim().trim_end_matches('.').replace(". Use", "; use");
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "invalid pattern".to_string(),
    }
}

/// The earliest instant a `once` schedule takes: 0000-01-01T00:00:00Z (RFC 3339 has four-digit years).
pub const MIN_EXECUTE_AT_MILLIS: i64 = -62_167_219_200_000;
/// The latest: 9999-12-31T23:59:59.999Z.
pub const MAX_EXECUTE_AT_MILLIS: i64 = 253_402_300_799_999;

fn parse_execute_at(value: Option<&Value>) -> Result<DateTime<Utc>, ScheduleError> {
    parse_bounded_instant(value, FIELD_EXECUTE_AT)
}

/// An instant between the years 0000 and 9999.
fn parse_bounded_instant(value: Option<&Value>, field: &str) -> Result<DateTime<Utc>, ScheduleError> {
    let instant = parse_instant(value, field)?;
    if !(MIN_EXECUTE_AT_MILLIS..=MAX_EXECUTE_AT_MILLIS).contains(&instant.timestamp_millis()) {
        return Err(ScheduleError::new(field, "must lie between the years 0000 and 9999"));
    }
    Ok(instant)
}

/// The largest `maxRuns`.
pub const MAX_RUNS: u32 = 100_000;

/// The optional end of a recurring schedule (`until`, `maxRuns`).
fn parse_bounds(until: Option<&Value>, max_runs: Option<&Value>) -> Result<Bounds, ScheduleError> {
    let until = match until {
        None => None,
        Some(until @ Value::String(_)) => Some(parse_bounded_instant(Some(until), FIELD_UNTIL)?),
        Some(other) => return Err(ScheduleError::new(FIELD_UNTIL, expected("an RFC 3339 instant (a string)", other))),
    };
    let max_runs = match max_runs {
        None => None,
        Some(Value::Number(number)) => {
            let runs = number.as_u64().or_else(|| {
                number.as_f64().filter(|runs| runs.fract() == 0.0 && *runs >= 0.0 && *runs < 1e15).map(|r| r as u64)
            });
            match runs.and_then(|runs| u32::try_from(runs).ok()).filter(|runs| (1..=MAX_RUNS).contains(runs)) {
                Some(runs) => Some(runs),
                None => {
                    return Err(ScheduleError::new(
                        FIELD_MAX_RUNS,
                        format!("must be a whole number from 1 to {MAX_RUNS}, got {number}"),
                    ))
                }
            }
        }
        Some(other) => return Err(ScheduleError::new(FIELD_MAX_RUNS, expected("a whole number", other))),
    };
    Ok(Bounds { until, max_runs })
}

fn parse_instant(value: Option<&Value>, field: &str) -> Result<DateTime<Utc>, ScheduleError> {
    match value {
        None => Err(ScheduleError::new(field, "is required")),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map(|instant| instant.with_timezone(&Utc))
            .map_err(|error| ScheduleError::new(field, format!("invalid RFC 3339 instant {} ({error})", quoted(text)))),
        Some(Value::Number(number)) => {
            let millis = match number.as_i64() {
                Some(millis) => Some(millis),
                None => number
                    .as_f64()
                    .filter(|millis| millis.fract() == 0.0 && millis.abs() < 9.0e15)
                    // The guard above keeps the value integral and well inside i64.
                    .map(|millis| millis as i64),
            };
            match millis {
                Some(millis) => DateTime::from_timestamp_millis(millis)
                    .ok_or_else(|| ScheduleError::new(field, format!("{millis} epoch milliseconds is out of range"))),
                None if number.as_f64().is_some_and(|millis| millis.fract() != 0.0) => {
                    Err(ScheduleError::new(field, format!("expected whole epoch milliseconds, got {number}")))
                }
                None => Err(ScheduleError::new(field, format!("{number} epoch milliseconds is out of range"))),
            }
        }
        Some(other) => Err(ScheduleError::new(field, expected("an RFC 3339 string or epoch milliseconds", other))),
    }
}

/// An IANA zone name, or an error naming `schedule.timezone`.
fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| ScheduleError::new(FIELD_TIMEZONE, format!("unknown IANA zone {}", quoted(name))))
}

fn parse_seconds(value: Option<&Value>, limits: &ScheduleLimits) -> Result<u64, ScheduleError> {
    let min = limits.min_interval_seconds.max(1);
    let max = limits.max_interval_seconds;
    let too_small = || ScheduleError::new(FIELD_SECONDS, format!("must be at least {min}"));
    let too_large = || ScheduleError::new(FIELD_SECONDS, format!("must be at most {max}"));
    let number = match value {
        None => return Err(ScheduleError::new(FIELD_SECONDS, "is required")),
        Some(Value::Number(number)) => number,
        Some(other) => return Err(ScheduleError::new(FIELD_SECONDS, expected("an integer", other))),
    };
    let seconds = if let Some(seconds) = number.as_u64() {
        seconds
    } else if number.as_i64().is_some() {
        return Err(too_small());
    } else {
        let value = number.as_f64().unwrap_or(f64::NAN);
        if !value.is_finite() || value.fract() != 0.0 {
            return Err(ScheduleError::new(FIELD_SECONDS, format!("expected an integer, got {number}")));
        }
        if value < 0.0 {
            return Err(too_small());
        }
        if value >= u64::MAX as f64 {
            return Err(too_large());
        }
        // Integral, non-negative and below u64::MAX: the conversion is exact.
        value as u64
    };
    match (seconds.cmp(&min), seconds.cmp(&max)) {
        (Ordering::Less, _) => Err(too_small()),
        (_, Ordering::Greater) => Err(too_large()),
        _ => Ok(seconds),
    }
}

/// "expected {what}, got {the JSON type of value}".
fn expected(what: &str, value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("expected {what}, got {kind}")
}

/// Quotes untrusted text for an error message, cut short so a huge input cannot make a huge message.
fn quoted(text: &str) -> String {
    const LIMIT: usize = 64;
    if text.chars().count() <= LIMIT {
        return format!("{text:?}");
    }
    let mut short: String = text.chars().take(LIMIT).collect();
    short.push('…');
    format!("{short:?}")
}
