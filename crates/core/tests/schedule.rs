//! Pins schedule validation and next-fire computation (SPEC §3) as readable text: fire instants in UTC and local time.

use chrono::{DateTime, Utc};
use expect_test::{expect, Expect};
use sundial_core::{Schedule, ScheduleLimits};

/// Runs `ask` against `schedule` (JSON text) and compares the printed answer with `expect`.
///
/// `ask` is one of:
/// - `parse` or `parse min=60 max=3600`: validate with the default (or given) limits and print the wire JSON,
///   or the error;
/// - `compile`: deserialize without validation, then compile, printing `ok` or the error;
/// - `first ANCHOR`: the first slot of a schedule activated at ANCHOR;
/// - `next N after T [anchor A]`: the preview of the next N slots strictly after T (the anchor defaults to T);
/// - `after T anchor A`: the single next slot strictly after T;
/// - `count FROM TO anchor A cap C`: the number of slots in (FROM, TO];
/// - `describe`: the schedule in words;
/// - `dst N after T`: the daylight saving notes for the next N slots strictly after T.
///
/// Every other ask validates the schedule first, with the default limits.
fn check(schedule: &str, ask: &str, expect: Expect) {
    let value: serde_json::Value = serde_json::from_str(schedule).expect("test schedule is JSON");
    let words: Vec<&str> = ask.split_whitespace().collect();
    let actual = match words.as_slice() {
        ["parse", limits @ ..] => {
            let mut parsed_limits = ScheduleLimits::default();
            for limit in limits {
                match limit.split_once('=') {
                    Some(("min", n)) => parsed_limits.min_interval_seconds = n.parse().expect("min"),
                    Some(("max", n)) => parsed_limits.max_interval_seconds = n.parse().expect("max"),
                    _ => panic!("unknown limit {limit}"),
                }
            }
            match Schedule::parse(&value, &parsed_limits) {
                Ok(parsed) => format!(
                    "{}\nrecurring={} zone={}\n",
                    serde_json::to_string(&parsed).expect("serializes"),
                    parsed.is_recurring(),
                    parsed.timezone_name(),
                ),
                Err(error) => format!("error: {error}\n"),
            }
        }
        ["compile"] => {
            let schedule: Schedule = serde_json::from_value(value).expect("test schedule deserializes");
            match schedule.compile() {
                Ok(_) => "ok\n".to_string(),
                Err(error) => format!("error: {error}\n"),
            }
        }
        _ => {
            let parsed = Schedule::parse(&value, &ScheduleLimits::default()).expect("test schedule is valid");
            let compiled = parsed.compile().expect("valid schedules compile");
            let zone = compiled.timezone();
            let show = |instant: DateTime<Utc>| {
                let local = instant.with_timezone(&zone);
                format!("{}  {}\n", instant.format("%Y-%m-%dT%H:%M:%SZ"), local.format("%a %Y-%m-%d %H:%M:%S %Z (%:z)"))
            };
            match words.as_slice() {
                ["first", anchor] => compiled.first_slot(instant(anchor)).map_or("none\n".to_string(), show),
                ["next", n, "after", after, rest @ ..] => {
                    let anchor = match rest {
                        [] => instant(after),
                        ["anchor", anchor] => instant(anchor),
                        _ => panic!("bad ask {ask}"),
                    };
                    let slots = compiled.preview(instant(after), anchor, n.parse().expect("n"));
                    if slots.is_empty() {
                        "none\n".to_string()
                    } else {
                        slots.into_iter().map(show).collect()
                    }
                }
                ["after", after, "anchor", anchor] => {
                    compiled.next_after(instant(after), instant(anchor)).map_or("none\n".to_string(), show)
                }
                ["describe"] => format!("{}\n", sundial_core::describe::describe(&parsed)),
                ["dst", n, "after", after] => compiled
                    .dst_notes(instant(after), n.parse().expect("n"))
                    .iter()
                    .map(|note| format!("{note}\n"))
                    .collect(),
                ["count", from, to, "anchor", anchor, "cap", cap] => {
                    let count =
                        compiled.count_slots(instant(from), instant(to), instant(anchor), cap.parse().expect("cap"));
                    format!("{count}\n")
                }
                _ => panic!("bad ask {ask}"),
            }
        }
    };
    expect.assert_eq(&actual);
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test instant is RFC 3339").with_timezone(&Utc)
}

fn cron(expression: &str, timezone: &str) -> String {
    serde_json::json!({"type": "cron", "expression": expression, "timezone": timezone}).to_string()
}

// America/New_York, spring forward: 2025-03-09 02:00 EST becomes 03:00 EDT (07:00Z).

#[test]
fn new_york_spring_forward_missing_time_fires_after_the_gap() {
    check(
        &cron("30 2 * * *", "America/New_York"),
        "next 3 after 2025-03-08T12:00:00Z",
        expect![[r#"
            2025-03-09T07:00:00Z  Sun 2025-03-09 03:00:00 EDT (-04:00)
            2025-03-10T06:30:00Z  Mon 2025-03-10 02:30:00 EDT (-04:00)
            2025-03-11T06:30:00Z  Tue 2025-03-11 02:30:00 EDT (-04:00)
        "#]],
    );
}

#[test]
fn new_york_spring_forward_existing_time_is_unaffected() {
    check(
        &cron("30 1 * * *", "America/New_York"),
        "next 3 after 2025-03-08T12:00:00Z",
        expect![[r#"
            2025-03-09T06:30:00Z  Sun 2025-03-09 01:30:00 EST (-05:00)
            2025-03-10T05:30:00Z  Mon 2025-03-10 01:30:00 EDT (-04:00)
            2025-03-11T05:30:00Z  Tue 2025-03-11 01:30:00 EDT (-04:00)
        "#]],
    );
}

#[test]
fn new_york_spring_forward_hourly_skips_the_missing_hour() {
    check(
        &cron("0 * * * *", "America/New_York"),
        "next 4 after 2025-03-09T05:30:00Z",
        expect![[r#"
            2025-03-09T06:00:00Z  Sun 2025-03-09 01:00:00 EST (-05:00)
            2025-03-09T07:00:00Z  Sun 2025-03-09 03:00:00 EDT (-04:00)
            2025-03-09T08:00:00Z  Sun 2025-03-09 04:00:00 EDT (-04:00)
            2025-03-09T09:00:00Z  Sun 2025-03-09 05:00:00 EDT (-04:00)
        "#]],
    );
}

#[test]
fn new_york_spring_forward_quarter_hours_keep_a_steady_utc_rate() {
    check(
        &cron("*/15 * * * *", "America/New_York"),
        "next 4 after 2025-03-09T06:30:00Z",
        expect![[r#"
            2025-03-09T06:45:00Z  Sun 2025-03-09 01:45:00 EST (-05:00)
            2025-03-09T07:00:00Z  Sun 2025-03-09 03:00:00 EDT (-04:00)
            2025-03-09T07:15:00Z  Sun 2025-03-09 03:15:00 EDT (-04:00)
            2025-03-09T07:30:00Z  Sun 2025-03-09 03:30:00 EDT (-04:00)
        "#]],
    );
}

#[test]
fn new_york_spring_forward_several_missing_times_fire_once() {
    check(
        &cron("0,30 2 * * *", "America/New_York"),
        "next 4 after 2025-03-08T12:00:00Z",
        expect![[r#"
            2025-03-09T07:00:00Z  Sun 2025-03-09 03:00:00 EDT (-04:00)
            2025-03-10T06:00:00Z  Mon 2025-03-10 02:00:00 EDT (-04:00)
            2025-03-10T06:30:00Z  Mon 2025-03-10 02:30:00 EDT (-04:00)
            2025-03-11T06:00:00Z  Tue 2025-03-11 02:00:00 EDT (-04:00)
        "#]],
    );
}

// America/New_York, fall back: 2025-11-02 02:00 EDT becomes 01:00 EST (06:00Z); 01:00–01:59 happens twice.

#[test]
fn new_york_fall_back_repeated_time_fires_once_at_first_occurrence() {
    check(
        &cron("30 1 * * *", "America/New_York"),
        "next 3 after 2025-11-01T12:00:00Z",
        expect![[r#"
            2025-11-02T05:30:00Z  Sun 2025-11-02 01:30:00 EDT (-04:00)
            2025-11-03T06:30:00Z  Mon 2025-11-03 01:30:00 EST (-05:00)
            2025-11-04T06:30:00Z  Tue 2025-11-04 01:30:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_repeated_time_does_not_fire_again_from_inside_the_second_pass() {
    // Asked from 01:10 EST (the second pass), the next 01:30 is the next day's.
    check(
        &cron("30 1 * * *", "America/New_York"),
        "after 2025-11-02T06:10:00Z anchor 2025-11-01T00:00:00Z",
        expect![[r#"
            2025-11-03T06:30:00Z  Mon 2025-11-03 01:30:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_time_after_the_overlap_is_unaffected() {
    check(
        &cron("30 2 * * *", "America/New_York"),
        "next 2 after 2025-11-01T12:00:00Z",
        expect![[r#"
            2025-11-02T07:30:00Z  Sun 2025-11-02 02:30:00 EST (-05:00)
            2025-11-03T07:30:00Z  Mon 2025-11-03 02:30:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_hourly_fires_every_real_hour() {
    check(
        &cron("0 * * * *", "America/New_York"),
        "next 4 after 2025-11-02T04:30:00Z",
        expect![[r#"
            2025-11-02T05:00:00Z  Sun 2025-11-02 01:00:00 EDT (-04:00)
            2025-11-02T06:00:00Z  Sun 2025-11-02 01:00:00 EST (-05:00)
            2025-11-02T07:00:00Z  Sun 2025-11-02 02:00:00 EST (-05:00)
            2025-11-02T08:00:00Z  Sun 2025-11-02 03:00:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_quarter_hours_fire_in_both_passes() {
    check(
        &cron("*/15 * * * *", "America/New_York"),
        "next 10 after 2025-11-02T05:20:00Z",
        expect![[r#"
            2025-11-02T05:30:00Z  Sun 2025-11-02 01:30:00 EDT (-04:00)
            2025-11-02T05:45:00Z  Sun 2025-11-02 01:45:00 EDT (-04:00)
            2025-11-02T06:00:00Z  Sun 2025-11-02 01:00:00 EST (-05:00)
            2025-11-02T06:15:00Z  Sun 2025-11-02 01:15:00 EST (-05:00)
            2025-11-02T06:30:00Z  Sun 2025-11-02 01:30:00 EST (-05:00)
            2025-11-02T06:45:00Z  Sun 2025-11-02 01:45:00 EST (-05:00)
            2025-11-02T07:00:00Z  Sun 2025-11-02 02:00:00 EST (-05:00)
            2025-11-02T07:15:00Z  Sun 2025-11-02 02:15:00 EST (-05:00)
            2025-11-02T07:30:00Z  Sun 2025-11-02 02:30:00 EST (-05:00)
            2025-11-02T07:45:00Z  Sun 2025-11-02 02:45:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_quarter_hours_from_the_end_of_the_first_pass() {
    // From 01:50 EDT the next slot is 01:00 EST, not 02:00 EST.
    check(
        &cron("*/15 * * * *", "America/New_York"),
        "next 3 after 2025-11-02T05:50:00Z",
        expect![[r#"
            2025-11-02T06:00:00Z  Sun 2025-11-02 01:00:00 EST (-05:00)
            2025-11-02T06:15:00Z  Sun 2025-11-02 01:15:00 EST (-05:00)
            2025-11-02T06:30:00Z  Sun 2025-11-02 01:30:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_quarter_hours_from_inside_the_second_pass() {
    check(
        &cron("*/15 * * * *", "America/New_York"),
        "next 3 after 2025-11-02T06:20:00Z",
        expect![[r#"
            2025-11-02T06:30:00Z  Sun 2025-11-02 01:30:00 EST (-05:00)
            2025-11-02T06:45:00Z  Sun 2025-11-02 01:45:00 EST (-05:00)
            2025-11-02T07:00:00Z  Sun 2025-11-02 02:00:00 EST (-05:00)
        "#]],
    );
}

#[test]
fn new_york_fall_back_listed_times_fire_once_each() {
    check(
        &cron("0,30 1 * * *", "America/New_York"),
        "next 4 after 2025-11-01T12:00:00Z",
        expect![[r#"
            2025-11-02T05:00:00Z  Sun 2025-11-02 01:00:00 EDT (-04:00)
            2025-11-02T05:30:00Z  Sun 2025-11-02 01:30:00 EDT (-04:00)
            2025-11-03T06:00:00Z  Mon 2025-11-03 01:00:00 EST (-05:00)
            2025-11-03T06:30:00Z  Mon 2025-11-03 01:30:00 EST (-05:00)
        "#]],
    );
}

// Europe/London: 2025-03-30 01:00 GMT becomes 02:00 BST; 2025-10-26 02:00 BST becomes 01:00 GMT.

#[test]
fn london_spring_forward() {
    check(
        &cron("30 1 * * *", "Europe/London"),
        "next 3 after 2025-03-29T12:00:00Z",
        expect![[r#"
            2025-03-30T01:00:00Z  Sun 2025-03-30 02:00:00 BST (+01:00)
            2025-03-31T00:30:00Z  Mon 2025-03-31 01:30:00 BST (+01:00)
            2025-04-01T00:30:00Z  Tue 2025-04-01 01:30:00 BST (+01:00)
        "#]],
    );
    check(
        &cron("*/30 * * * *", "Europe/London"),
        "next 4 after 2025-03-30T00:15:00Z",
        expect![[r#"
            2025-03-30T00:30:00Z  Sun 2025-03-30 00:30:00 GMT (+00:00)
            2025-03-30T01:00:00Z  Sun 2025-03-30 02:00:00 BST (+01:00)
            2025-03-30T01:30:00Z  Sun 2025-03-30 02:30:00 BST (+01:00)
            2025-03-30T02:00:00Z  Sun 2025-03-30 03:00:00 BST (+01:00)
        "#]],
    );
}

#[test]
fn london_fall_back() {
    check(
        &cron("30 1 * * *", "Europe/London"),
        "next 3 after 2025-10-25T12:00:00Z",
        expect![[r#"
            2025-10-26T00:30:00Z  Sun 2025-10-26 01:30:00 BST (+01:00)
            2025-10-27T01:30:00Z  Mon 2025-10-27 01:30:00 GMT (+00:00)
            2025-10-28T01:30:00Z  Tue 2025-10-28 01:30:00 GMT (+00:00)
        "#]],
    );
    check(
        &cron("*/30 * * * *", "Europe/London"),
        "next 5 after 2025-10-25T23:45:00Z",
        expect![[r#"
            2025-10-26T00:00:00Z  Sun 2025-10-26 01:00:00 BST (+01:00)
            2025-10-26T00:30:00Z  Sun 2025-10-26 01:30:00 BST (+01:00)
            2025-10-26T01:00:00Z  Sun 2025-10-26 01:00:00 GMT (+00:00)
            2025-10-26T01:30:00Z  Sun 2025-10-26 01:30:00 GMT (+00:00)
            2025-10-26T02:00:00Z  Sun 2025-10-26 02:00:00 GMT (+00:00)
        "#]],
    );
}

// Australia/Lord_Howe shifts by half an hour: +11:00 in summer, +10:30 in winter.
// 2025-04-06 02:00 +11 becomes 01:30 +10:30 (01:30–01:59 twice); 2025-10-05 02:00 +10:30 becomes 02:30 +11.

#[test]
fn lord_howe_fall_back_half_hour() {
    check(
        &cron("45 1 * * *", "Australia/Lord_Howe"),
        "next 2 after 2025-04-05T12:00:00Z",
        expect![[r#"
            2025-04-05T14:45:00Z  Sun 2025-04-06 01:45:00 +11 (+11:00)
            2025-04-06T15:15:00Z  Mon 2025-04-07 01:45:00 +1030 (+10:30)
        "#]],
    );
    check(
        &cron("*/15 * * * *", "Australia/Lord_Howe"),
        "next 6 after 2025-04-05T14:10:00Z",
        expect![[r#"
            2025-04-05T14:15:00Z  Sun 2025-04-06 01:15:00 +11 (+11:00)
            2025-04-05T14:30:00Z  Sun 2025-04-06 01:30:00 +11 (+11:00)
            2025-04-05T14:45:00Z  Sun 2025-04-06 01:45:00 +11 (+11:00)
            2025-04-05T15:00:00Z  Sun 2025-04-06 01:30:00 +1030 (+10:30)
            2025-04-05T15:15:00Z  Sun 2025-04-06 01:45:00 +1030 (+10:30)
            2025-04-05T15:30:00Z  Sun 2025-04-06 02:00:00 +1030 (+10:30)
        "#]],
    );
}

#[test]
fn lord_howe_spring_forward_half_hour() {
    check(
        &cron("15 2 * * *", "Australia/Lord_Howe"),
        "next 2 after 2025-10-04T12:00:00Z",
        expect![[r#"
            2025-10-04T15:30:00Z  Sun 2025-10-05 02:30:00 +11 (+11:00)
            2025-10-05T15:15:00Z  Mon 2025-10-06 02:15:00 +11 (+11:00)
        "#]],
    );
    check(
        &cron("*/15 * * * *", "Australia/Lord_Howe"),
        "next 4 after 2025-10-04T15:10:00Z",
        expect![[r#"
            2025-10-04T15:15:00Z  Sun 2025-10-05 01:45:00 +1030 (+10:30)
            2025-10-04T15:30:00Z  Sun 2025-10-05 02:30:00 +11 (+11:00)
            2025-10-04T15:45:00Z  Sun 2025-10-05 02:45:00 +11 (+11:00)
            2025-10-04T16:00:00Z  Sun 2025-10-05 03:00:00 +11 (+11:00)
        "#]],
    );
}

// Calendar features.

#[test]
fn day_31_skips_short_months() {
    check(
        &cron("0 0 31 * *", "UTC"),
        "next 4 after 2025-01-15T00:00:00Z",
        expect![[r#"
            2025-01-31T00:00:00Z  Fri 2025-01-31 00:00:00 UTC (+00:00)
            2025-03-31T00:00:00Z  Mon 2025-03-31 00:00:00 UTC (+00:00)
            2025-05-31T00:00:00Z  Sat 2025-05-31 00:00:00 UTC (+00:00)
            2025-07-31T00:00:00Z  Thu 2025-07-31 00:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn last_day_of_month() {
    check(
        &cron("0 0 L * *", "UTC"),
        "next 4 after 2025-01-15T00:00:00Z",
        expect![[r#"
            2025-01-31T00:00:00Z  Fri 2025-01-31 00:00:00 UTC (+00:00)
            2025-02-28T00:00:00Z  Fri 2025-02-28 00:00:00 UTC (+00:00)
            2025-03-31T00:00:00Z  Mon 2025-03-31 00:00:00 UTC (+00:00)
            2025-04-30T00:00:00Z  Wed 2025-04-30 00:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn leap_day() {
    check(
        &cron("0 0 29 2 *", "UTC"),
        "next 2 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2028-02-29T00:00:00Z  Tue 2028-02-29 00:00:00 UTC (+00:00)
            2032-02-29T00:00:00Z  Sun 2032-02-29 00:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn nearest_weekday() {
    // 2025-03-15 is a Saturday (→ Friday 14th), 2025-06-15 a Sunday (→ Monday 16th).
    check(
        &cron("0 9 15W * *", "UTC"),
        "next 4 after 2025-03-01T00:00:00Z",
        expect![[r#"
            2025-03-14T09:00:00Z  Fri 2025-03-14 09:00:00 UTC (+00:00)
            2025-04-15T09:00:00Z  Tue 2025-04-15 09:00:00 UTC (+00:00)
            2025-05-15T09:00:00Z  Thu 2025-05-15 09:00:00 UTC (+00:00)
            2025-06-16T09:00:00Z  Mon 2025-06-16 09:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn nth_weekday() {
    check(
        &cron("0 9 * * MON#2", "UTC"),
        "next 3 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-13T09:00:00Z  Mon 2025-01-13 09:00:00 UTC (+00:00)
            2025-02-10T09:00:00Z  Mon 2025-02-10 09:00:00 UTC (+00:00)
            2025-03-10T09:00:00Z  Mon 2025-03-10 09:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn last_weekday_of_month() {
    check(
        &cron("0 17 * * 5L", "UTC"),
        "next 3 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-31T17:00:00Z  Fri 2025-01-31 17:00:00 UTC (+00:00)
            2025-02-28T17:00:00Z  Fri 2025-02-28 17:00:00 UTC (+00:00)
            2025-03-28T17:00:00Z  Fri 2025-03-28 17:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn month_and_day_names() {
    check(
        &cron("0 8 * jan,JUL mon-wed", "UTC"),
        "next 4 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T08:00:00Z  Wed 2025-01-01 08:00:00 UTC (+00:00)
            2025-01-06T08:00:00Z  Mon 2025-01-06 08:00:00 UTC (+00:00)
            2025-01-07T08:00:00Z  Tue 2025-01-07 08:00:00 UTC (+00:00)
            2025-01-08T08:00:00Z  Wed 2025-01-08 08:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn six_fields_have_a_seconds_field() {
    check(
        &cron("*/20 * * * * *", "UTC"),
        "next 4 after 2025-01-01T00:00:05Z",
        expect![[r#"
            2025-01-01T00:00:20Z  Wed 2025-01-01 00:00:20 UTC (+00:00)
            2025-01-01T00:00:40Z  Wed 2025-01-01 00:00:40 UTC (+00:00)
            2025-01-01T00:01:00Z  Wed 2025-01-01 00:01:00 UTC (+00:00)
            2025-01-01T00:01:20Z  Wed 2025-01-01 00:01:20 UTC (+00:00)
        "#]],
    );
    check(
        &cron("30 0 12 * * *", "Asia/Tokyo"),
        "next 2 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T03:00:30Z  Wed 2025-01-01 12:00:30 JST (+09:00)
            2025-01-02T03:00:30Z  Thu 2025-01-02 12:00:30 JST (+09:00)
        "#]],
    );
}

#[test]
fn nicknames() {
    let after = "next 2 after 2025-05-14T10:20:00Z";
    check(
        &cron("@yearly", "UTC"),
        after,
        expect![[r#"
            2026-01-01T00:00:00Z  Thu 2026-01-01 00:00:00 UTC (+00:00)
            2027-01-01T00:00:00Z  Fri 2027-01-01 00:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("@annually", "UTC"),
        after,
        expect![[r#"
            2026-01-01T00:00:00Z  Thu 2026-01-01 00:00:00 UTC (+00:00)
            2027-01-01T00:00:00Z  Fri 2027-01-01 00:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("@monthly", "UTC"),
        after,
        expect![[r#"
            2025-06-01T00:00:00Z  Sun 2025-06-01 00:00:00 UTC (+00:00)
            2025-07-01T00:00:00Z  Tue 2025-07-01 00:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("@weekly", "UTC"),
        after,
        expect![[r#"
            2025-05-18T00:00:00Z  Sun 2025-05-18 00:00:00 UTC (+00:00)
            2025-05-25T00:00:00Z  Sun 2025-05-25 00:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("@daily", "UTC"),
        after,
        expect![[r#"
            2025-05-15T00:00:00Z  Thu 2025-05-15 00:00:00 UTC (+00:00)
            2025-05-16T00:00:00Z  Fri 2025-05-16 00:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("@midnight", "Europe/Paris"),
        after,
        expect![[r#"
            2025-05-14T22:00:00Z  Thu 2025-05-15 00:00:00 CEST (+02:00)
            2025-05-15T22:00:00Z  Fri 2025-05-16 00:00:00 CEST (+02:00)
        "#]],
    );
    check(
        &cron("@HOURLY", "UTC"),
        after,
        expect![[r#"
            2025-05-14T11:00:00Z  Wed 2025-05-14 11:00:00 UTC (+00:00)
            2025-05-14T12:00:00Z  Wed 2025-05-14 12:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn day_of_month_or_day_of_week_posix_rule() {
    // Both restricted: every 13th and every Friday.
    check(
        &cron("0 0 13 * FRI", "UTC"),
        "next 5 after 2025-06-01T00:00:00Z",
        expect![[r#"
            2025-06-06T00:00:00Z  Fri 2025-06-06 00:00:00 UTC (+00:00)
            2025-06-13T00:00:00Z  Fri 2025-06-13 00:00:00 UTC (+00:00)
            2025-06-20T00:00:00Z  Fri 2025-06-20 00:00:00 UTC (+00:00)
            2025-06-27T00:00:00Z  Fri 2025-06-27 00:00:00 UTC (+00:00)
            2025-07-04T00:00:00Z  Fri 2025-07-04 00:00:00 UTC (+00:00)
        "#]],
    );
    // Only one restricted: just that one.
    check(
        &cron("0 0 13 * *", "UTC"),
        "next 2 after 2025-06-01T00:00:00Z",
        expect![[r#"
            2025-06-13T00:00:00Z  Fri 2025-06-13 00:00:00 UTC (+00:00)
            2025-07-13T00:00:00Z  Sun 2025-07-13 00:00:00 UTC (+00:00)
        "#]],
    );
    // croner's `+` before the day-of-week field asks for both: a 29 February that is a Monday.
    check(
        r#"{"type":"cron","expression":"  0 0 29 2 +MON  "}"#,
        "next 2 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2044-02-29T00:00:00Z  Mon 2044-02-29 00:00:00 UTC (+00:00)
            2072-02-29T00:00:00Z  Mon 2072-02-29 00:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn cron_timezone_defaults_to_utc() {
    check(
        r#"{"type":"cron","expression":"0 9 * * *"}"#,
        "next 1 after 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T09:00:00Z  Wed 2025-01-01 09:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn cron_first_slot_is_strictly_after_activation() {
    check(
        &cron("0 9 * * *", "UTC"),
        "first 2025-01-01T09:00:00Z",
        expect![[r#"
            2025-01-02T09:00:00Z  Thu 2025-01-02 09:00:00 UTC (+00:00)
        "#]],
    );
    check(
        &cron("0 9 * * *", "UTC"),
        "first 2025-01-01T08:59:59.500Z",
        expect![[r#"
            2025-01-01T09:00:00Z  Wed 2025-01-01 09:00:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn cron_count_slots_stops_at_the_cap() {
    let every_minute = cron("* * * * *", "UTC");
    check(
        &every_minute,
        "count 2025-01-01T00:00:00Z 2025-01-01T00:10:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            10
        "#]],
    );
    check(
        &every_minute,
        "count 2025-01-01T00:00:00Z 2025-01-02T00:00:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            100
        "#]],
    );
    check(
        &every_minute,
        "count 2025-01-01T00:10:00Z 2025-01-01T00:00:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            0
        "#]],
    );
    // Across the New York fall-back, the hourly pattern has 25 slots in the local day.
    check(
        &cron("0 * * * *", "America/New_York"),
        "count 2025-11-02T04:00:00Z 2025-11-03T05:00:00Z anchor 2025-11-01T00:00:00Z cap 1000",
        expect![[r#"
            25
        "#]],
    );
}

// Interval: the grid anchor + k·seconds, k ≥ 1.

#[test]
fn interval_first_slot_is_one_interval_after_activation() {
    check(
        r#"{"type":"interval","seconds":300}"#,
        "first 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T00:05:00Z  Wed 2025-01-01 00:05:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn interval_next_after_between_slots() {
    check(
        r#"{"type":"interval","seconds":300}"#,
        "after 2025-01-01T00:07:00Z anchor 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T00:10:00Z  Wed 2025-01-01 00:10:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn interval_next_after_exactly_on_a_slot() {
    check(
        r#"{"type":"interval","seconds":300}"#,
        "after 2025-01-01T00:10:00Z anchor 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T00:15:00Z  Wed 2025-01-01 00:15:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn interval_slow_run_does_not_shift_the_grid() {
    // The run for 00:05 finished at 00:16:42.250: the next slot is still on the grid, 00:20.
    check(
        r#"{"type":"interval","seconds":300}"#,
        "next 3 after 2025-01-01T00:16:42.250Z anchor 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T00:20:00Z  Wed 2025-01-01 00:20:00 UTC (+00:00)
            2025-01-01T00:25:00Z  Wed 2025-01-01 00:25:00 UTC (+00:00)
            2025-01-01T00:30:00Z  Wed 2025-01-01 00:30:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn interval_before_activation_gives_the_first_slot() {
    check(
        r#"{"type":"interval","seconds":300}"#,
        "after 2024-12-31T00:00:00Z anchor 2025-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T00:05:00Z  Wed 2025-01-01 00:05:00 UTC (+00:00)
        "#]],
    );
}

#[test]
fn interval_count_slots() {
    let every_five_minutes = r#"{"type":"interval","seconds":300}"#;
    // Slots 00:05 … 01:00 lie in (00:00, 01:00].
    check(
        every_five_minutes,
        "count 2025-01-01T00:00:00Z 2025-01-01T01:00:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            12
        "#]],
    );
    // (00:04, 00:15] holds 00:05, 00:10 and 00:15.
    check(
        every_five_minutes,
        "count 2025-01-01T00:04:00Z 2025-01-01T00:15:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            3
        "#]],
    );
    check(
        every_five_minutes,
        "count 2025-01-01T00:00:00Z 2025-01-02T00:00:00Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            100
        "#]],
    );
    check(
        every_five_minutes,
        "count 2024-12-01T00:00:00Z 2025-01-01T00:04:59Z anchor 2025-01-01T00:00:00Z cap 100",
        expect![[r#"
            0
        "#]],
    );
}

// Once.

#[test]
fn once_first_slot_even_in_the_past() {
    let once = r#"{"type":"once","executeAt":"2025-01-01T12:00:00Z"}"#;
    check(
        once,
        "first 2025-06-01T00:00:00Z",
        expect![[r#"
            2025-01-01T12:00:00Z  Wed 2025-01-01 12:00:00 UTC (+00:00)
        "#]],
    );
    check(
        once,
        "after 2024-01-01T00:00:00Z anchor 2024-01-01T00:00:00Z",
        expect![[r#"
            none
        "#]],
    );
    check(
        once,
        "count 2025-01-01T00:00:00Z 2025-01-02T00:00:00Z anchor 2024-01-01T00:00:00Z cap 10",
        expect![[r#"
            1
        "#]],
    );
    check(
        once,
        "count 2025-01-01T12:00:00Z 2025-01-02T00:00:00Z anchor 2024-01-01T00:00:00Z cap 10",
        expect![[r#"
            0
        "#]],
    );
    check(
        once,
        "next 5 after 2024-01-01T00:00:00Z",
        expect![[r#"
            2025-01-01T12:00:00Z  Wed 2025-01-01 12:00:00 UTC (+00:00)
        "#]],
    );
    check(
        once,
        "next 5 after 2025-01-01T12:00:00Z",
        expect![[r#"
            none
        "#]],
    );
}

// Parsing: accepted forms.

#[test]
fn parse_accepts_instants_in_several_forms() {
    check(
        r#"{"type":"once","executeAt":"2025-03-09T07:00:00Z"}"#,
        "parse",
        expect![[r#"
            {"type":"once","executeAt":"2025-03-09T07:00:00Z"}
            recurring=false zone=UTC
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"2025-03-09T07:00:00.123Z"}"#,
        "parse",
        expect![[r#"
            {"type":"once","executeAt":"2025-03-09T07:00:00.123Z"}
            recurring=false zone=UTC
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"2025-03-09T03:00:00-04:00"}"#,
        "parse",
        expect![[r#"
            {"type":"once","executeAt":"2025-03-09T07:00:00Z"}
            recurring=false zone=UTC
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":1741503600000}"#,
        "parse",
        expect![[r#"
            {"type":"once","executeAt":"2025-03-09T07:00:00Z"}
            recurring=false zone=UTC
        "#]],
    );
}

#[test]
fn parse_accepts_intervals_and_ignores_unknown_keys() {
    check(
        r#"{"type":"interval","seconds":300,"extra":true}"#,
        "parse",
        expect![[r#"
            {"type":"interval","seconds":300}
            recurring=true zone=UTC
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":300.0}"#,
        "parse",
        expect![[r#"
            {"type":"interval","seconds":300}
            recurring=true zone=UTC
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":3600}"#,
        "parse min=60 max=3600",
        expect![[r#"
            {"type":"interval","seconds":3600}
            recurring=true zone=UTC
        "#]],
    );
}

#[test]
fn parse_accepts_crons() {
    check(
        r#"{"type":"cron","expression":"*/5 * * * *","timezone":"America/New_York"}"#,
        "parse",
        expect![[r#"
            {"type":"cron","expression":"*/5 * * * *","timezone":"America/New_York"}
            recurring=true zone=America/New_York
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"0 0 ? * *","timezone":"UTC"}"#,
        "parse",
        expect![[r#"
            {"type":"cron","expression":"0 0 ? * *","timezone":"UTC"}
            recurring=true zone=UTC
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"@daily","timezone":null}"#,
        "parse",
        expect![[r#"
            {"type":"cron","expression":"@daily"}
            recurring=true zone=UTC
        "#]],
    );
}

// Parsing: every error names its field.

#[test]
fn parse_errors_schedule() {
    check(
        r#"null"#,
        "parse",
        expect![[r#"
            error: schedule: is required
        "#]],
    );
    check(
        r#""every day""#,
        "parse",
        expect![[r#"
            error: schedule: expected an object, got string
        "#]],
    );
    check(
        r#"[1]"#,
        "parse",
        expect![[r#"
            error: schedule: expected an object, got array
        "#]],
    );
}

#[test]
fn parse_errors_type() {
    check(
        r#"{}"#,
        "parse",
        expect![[r#"
            error: schedule.type: is required
        "#]],
    );
    check(
        r#"{"type":7}"#,
        "parse",
        expect![[r#"
            error: schedule.type: expected a string, got number
        "#]],
    );
    check(
        r#"{"type":"weekly"}"#,
        "parse",
        expect![[r#"
            error: schedule.type: expected one of "once", "interval", "cron", got "weekly"
        "#]],
    );
    check(
        r#"{"type":"Cron","expression":"* * * * *"}"#,
        "parse",
        expect![[r#"
            error: schedule.type: expected one of "once", "interval", "cron", got "Cron"
        "#]],
    );
}

#[test]
fn parse_errors_execute_at() {
    check(
        r#"{"type":"once"}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: is required
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":true}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: expected an RFC 3339 string or epoch milliseconds, got boolean
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"tomorrow"}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: invalid RFC 3339 instant "tomorrow" (premature end of input)
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"2025-02-30T00:00:00Z"}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: invalid RFC 3339 instant "2025-02-30T00:00:00Z" (input is out of range)
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"2025-03-09T07:00:00"}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: invalid RFC 3339 instant "2025-03-09T07:00:00" (premature end of input)
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":1741503600000.5}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: expected whole epoch milliseconds, got 1741503600000.5
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":9223372036854775807}"#,
        "parse",
        expect![[r#"
            error: schedule.executeAt: 9223372036854775807 epoch milliseconds is out of range
        "#]],
    );
}

#[test]
fn parse_errors_seconds() {
    check(
        r#"{"type":"interval"}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: is required
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":"300"}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: expected an integer, got string
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":0}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: must be at least 1
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":-5}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: must be at least 1
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":1.5}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: expected an integer, got 1.5
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":315576001}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: must be at most 315576000
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":1e30}"#,
        "parse",
        expect![[r#"
            error: schedule.seconds: must be at most 315576000
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":30}"#,
        "parse min=60 max=3600",
        expect![[r#"
            error: schedule.seconds: must be at least 60
        "#]],
    );
    check(
        r#"{"type":"interval","seconds":3601}"#,
        "parse min=60 max=3600",
        expect![[r#"
            error: schedule.seconds: must be at most 3600
        "#]],
    );
}

#[test]
fn parse_errors_expression() {
    let expression = |expression: &str| serde_json::json!({"type": "cron", "expression": expression}).to_string();
    check(
        r#"{"type":"cron"}"#,
        "parse",
        expect![[r#"
            error: schedule.expression: is required
        "#]],
    );
    check(
        r#"{"type":"cron","expression":5}"#,
        "parse",
        expect![[r#"
            error: schedule.expression: expected a string, got number
        "#]],
    );
    check(
        &expression(""),
        "parse",
        expect![[r#"
            error: schedule.expression: must not be empty
        "#]],
    );
    check(
        &expression("* * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: expected 5 or 6 fields, got 4
        "#]],
    );
    check(
        &expression("0 0 0 * * * 2030"),
        "parse",
        expect![[r#"
            error: schedule.expression: expected 5 or 6 fields, got 7
        "#]],
    );
    check(
        &expression("61 * * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "61": number out of bounds
        "#]],
    );
    check(
        &expression("0 24 * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: hour field "24": number out of bounds
        "#]],
    );
    check(
        &expression("0 0 32 * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-month field "32": number out of bounds
        "#]],
    );
    check(
        &expression("0 0 * 13 *"),
        "parse",
        expect![[r#"
            error: schedule.expression: month field "13": number out of bounds
        "#]],
    );
    check(
        &expression("0 0 * * 8"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-week field "8": number out of bounds
        "#]],
    );
    check(
        &expression("60 0 0 * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: second field "60": number out of bounds
        "#]],
    );
    check(
        &expression("*/0 * * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "*/0": step cannot be zero
        "#]],
    );
    check(
        &expression("5-1 * * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "5-1": range out of bounds
        "#]],
    );
    check(
        &expression("0/10 * * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "0/10": invalid step syntax: single number steps like "0/10" are not allowed; use "*/10" for wildcard steps or "X-Y/10" for range steps
        "#]],
    );
    check(
        &expression("a * * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "a": illegal character 'a'
        "#]],
    );
    check(
        &expression("0 0 * * MONDAY"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-week field "MONDAY": illegal character 'D'
        "#]],
    );
    check(
        &expression("0 0 * * mon,tue,x"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-week field "mon,tue,x": illegal character 'x'
        "#]],
    );
    check(
        &expression(&format!("{} * * * *", "x".repeat(100))),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…": illegal character 'x'
        "#]],
    );
    check(
        &expression("0 9 * * MON#6"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-week field "MON#6": nth specifier out of bounds
        "#]],
    );
    check(
        &expression("0 9 * * JAN"),
        "parse",
        expect![[r#"
            error: schedule.expression: day-of-week field "JAN": month names belong in the month field
        "#]],
    );
    check(
        &expression("MON 9 * * *"),
        "parse",
        expect![[r#"
            error: schedule.expression: minute field "MON": day names belong in the day-of-week field
        "#]],
    );
    check(
        &expression("0 0 31 4,6,9,11 *"),
        "parse",
        expect![[r#"
            error: schedule.expression: never fires: no date matches the day-of-month, month and day-of-week fields
        "#]],
    );
    check(
        &expression("0 0 30 2 *"),
        "parse",
        expect![[r#"
            error: schedule.expression: never fires: no date matches the day-of-month, month and day-of-week fields
        "#]],
    );
    check(
        &expression("@reboot"),
        "parse",
        expect![[r#"
            error: schedule.expression: unknown nickname "@reboot" (expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)
        "#]],
    );
}

#[test]
fn parse_errors_timezone() {
    check(
        r#"{"type":"cron","expression":"* * * * *","timezone":"Mars/Base"}"#,
        "parse",
        expect![[r#"
            error: schedule.timezone: unknown IANA zone "Mars/Base"
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"* * * * *","timezone":""}"#,
        "parse",
        expect![[r#"
            error: schedule.timezone: unknown IANA zone ""
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"* * * * *","timezone":-5}"#,
        "parse",
        expect![[r#"
            error: schedule.timezone: expected a string, got number
        "#]],
    );
}

#[test]
fn compile_rejects_what_parse_rejects() {
    check(
        r#"{"type":"interval","seconds":0}"#,
        "compile",
        expect![[r#"
            error: schedule.seconds: must be at least 1
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"* * * *"}"#,
        "compile",
        expect![[r#"
            error: schedule.expression: expected 5 or 6 fields, got 4
        "#]],
    );
    check(
        r#"{"type":"cron","expression":"* * * * *","timezone":"Mars/Base"}"#,
        "compile",
        expect![[r#"
            error: schedule.timezone: unknown IANA zone "Mars/Base"
        "#]],
    );
    check(
        r#"{"type":"once","executeAt":"2025-01-01T00:00:00Z"}"#,
        "compile",
        expect![[r#"
            ok
        "#]],
    );
}

/// For patterns where croner's own DST handling agrees with SPEC §3 (single fixed times, and clock patterns),
/// this module's answers must equal croner's, from every start minute across both New York DST days.
#[test]
fn agrees_with_croner_where_croner_follows_the_spec() {
    use croner::parser::{CronParser, Seconds};
    let zone = chrono_tz::America::New_York;
    let parser = CronParser::builder().seconds(Seconds::Optional).build();
    for expression in ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "* * * * *", "15 */2 * * *"] {
        let compiled = Schedule::cron(expression, Some(zone.to_string())).compile().expect("compiles");
        let reference = parser.parse(expression).expect("croner parses");
        for day_start in ["2025-03-09T03:00:00Z", "2025-11-02T03:00:00Z"] {
            let mut after = instant(day_start);
            for _ in 0..(6 * 60) {
                let ours = compiled.next_after(after, after);
                let theirs =
                    reference.find_next_occurrence(&after.with_timezone(&zone), false).expect("croner finds").to_utc();
                assert_eq!(ours, Some(theirs), "{expression} after {after}");
                after += chrono::TimeDelta::seconds(59);
            }
        }
    }
}

// --- Said back in words (SPEC §3) ---

/// Every schedule in words, one per line, for a table of (schedule JSON) inputs.
fn describe_all(schedules: &[String], expect: Expect) {
    let mut actual = String::new();
    for schedule in schedules {
        let value: serde_json::Value = serde_json::from_str(schedule).expect("test schedule is JSON");
        let parsed = Schedule::parse(&value, &ScheduleLimits::default()).expect("test schedule is valid");
        actual.push_str(&format!("{:<48} {}\n", schedule_words(&value), sundial_core::describe::describe(&parsed)));
    }
    expect.assert_eq(&actual);
}

/// A short label for a schedule in a table: its expression, seconds or instant.
fn schedule_words(value: &serde_json::Value) -> String {
    ["expression", "seconds", "executeAt"]
        .iter()
        .find_map(|key| value.get(key))
        .map(|value| value.to_string())
        .unwrap_or_default()
}

#[test]
fn descriptions_of_once_and_interval_schedules() {
    let schedules: Vec<String> = [
        r#"{"type": "once", "executeAt": "2026-12-09T15:00:00Z"}"#,
        r#"{"type": "once", "executeAt": "2026-12-09T10:00:30-05:00"}"#,
        r#"{"type": "interval", "seconds": 1}"#,
        r#"{"type": "interval", "seconds": 45}"#,
        r#"{"type": "interval", "seconds": 60}"#,
        r#"{"type": "interval", "seconds": 90}"#,
        r#"{"type": "interval", "seconds": 300}"#,
        r#"{"type": "interval", "seconds": 5400}"#,
        r#"{"type": "interval", "seconds": 7200}"#,
        r#"{"type": "interval", "seconds": 86400}"#,
        r#"{"type": "interval", "seconds": 604800}"#,
    ]
    .map(String::from)
    .to_vec();
    describe_all(
        &schedules,
        expect![[r#"
            "2026-12-09T15:00:00Z"                           once on Wed 9 Dec 2026 at 15:00 (UTC)
            "2026-12-09T10:00:30-05:00"                      once on Wed 9 Dec 2026 at 15:00:30 (UTC)
            1                                                every second
            45                                               every 45 seconds
            60                                               every minute
            90                                               every 90 seconds
            300                                              every 5 minutes
            5400                                             every 90 minutes
            7200                                             every 2 hours
            86400                                            every day
            604800                                           every 7 days
        "#]],
    );
}

#[test]
fn descriptions_of_cron_schedules() {
    let schedules: Vec<String> = [
        ("0 9 * * MON-FRI", "America/New_York"),
        ("0 9 * * 1-5", "Europe/Paris"),
        ("30 8 * * *", "UTC"),
        ("0 9,17 * * *", "Asia/Tokyo"),
        ("*/5 * * * *", "UTC"),
        ("* * * * *", "UTC"),
        ("*/10 * * * * *", "UTC"),
        ("15 * * * *", "UTC"),
        ("0 */2 * * *", "UTC"),
        ("*/15 9-17 * * MON-FRI", "Europe/London"),
        ("0 10 * * SAT,SUN", "UTC"),
        ("0 8 * * 1,3,5", "UTC"),
        ("0 0 1 * *", "UTC"),
        ("0 0 1,15 * *", "UTC"),
        ("0 0 L * *", "UTC"),
        ("0 12 25 DEC *", "UTC"),
        ("@daily", "UTC"),
        ("@weekly", "UTC"),
        ("@hourly", "UTC"),
        ("@yearly", "UTC"),
        ("30 15 10 * * *", "UTC"),
        ("0 0 13 * FRI", "UTC"),
        ("0 0 LW * *", "UTC"),
        ("0 9 * * MON#1", "UTC"),
        ("5-10 * * * *", "UTC"),
    ]
    .iter()
    .map(|(expression, zone)| cron(expression, zone))
    .collect();
    describe_all(
        &schedules,
        expect![[r#"
            "0 9 * * MON-FRI"                                every weekday at 09:00 (America/New_York)
            "0 9 * * 1-5"                                    every weekday at 09:00 (Europe/Paris)
            "30 8 * * *"                                     every day at 08:30 (UTC)
            "0 9,17 * * *"                                   every day at 09:00 and 17:00 (Asia/Tokyo)
            "*/5 * * * *"                                    every 5 minutes (UTC)
            "* * * * *"                                      every minute (UTC)
            "*/10 * * * * *"                                 every 10 seconds (UTC)
            "15 * * * *"                                     every hour at minute 15 (UTC)
            "0 */2 * * *"                                    every 2 hours at minute 0 (UTC)
            "*/15 9-17 * * MON-FRI"                          every 15 minutes from 09:00 to 17:59, every weekday (Europe/London)
            "0 10 * * SAT,SUN"                               every Saturday and Sunday at 10:00 (UTC)
            "0 8 * * 1,3,5"                                  every Monday, Wednesday and Friday at 08:00 (UTC)
            "0 0 1 * *"                                      on day 1 of every month at 00:00 (UTC)
            "0 0 1,15 * *"                                   on days 1 and 15 of every month at 00:00 (UTC)
            "0 0 L * *"                                      on the last day of every month at 00:00 (UTC)
            "0 12 25 DEC *"                                  every year on 25 Dec at 12:00 (UTC)
            "@daily"                                         every day at 00:00 (UTC)
            "@weekly"                                        every Sunday at 00:00 (UTC)
            "@hourly"                                        every hour at minute 0 (UTC)
            "@yearly"                                        every year on 1 Jan at 00:00 (UTC)
            "30 15 10 * * *"                                 every day at 10:15:30 (UTC)
            "0 0 13 * FRI"                                   at times matching cron "0 0 13 * FRI" (UTC)
            "0 0 LW * *"                                     at times matching cron "0 0 LW * *" (UTC)
            "0 9 * * MON#1"                                  at times matching cron "0 9 * * MON#1" (UTC)
            "5-10 * * * *"                                   at times matching cron "5-10 * * * *" (UTC)
        "#]],
    );
}

#[test]
fn dst_notes_name_the_missing_and_the_repeated_wall_times() {
    // 2026: New York springs forward on 8 March (02:00 → 03:00) and falls back on 1 November (02:00 → 01:00).
    check(
        &cron("30 2 * * *", "America/New_York"),
        "dst 10 after 2026-03-03T12:00:00Z",
        expect![[r#"
            02:30 does not exist on Sun 8 Mar 2026 (clocks go forward); runs at 03:00 EDT
        "#]],
    );
    check(
        &cron("30 1 * * *", "America/New_York"),
        "dst 10 after 2026-10-28T12:00:00Z",
        expect![[r#"
            01:30 happens twice on Sun 1 Nov 2026 (clocks go back); runs once, at the first (EDT)
        "#]],
    );
    check(
        &cron("*/30 * * * *", "America/New_York"),
        "dst 400 after 2026-03-08T00:00:00Z",
        expect![[r#"
        clocks go forward on Sun 8 Mar 2026: wall times in the gap do not exist and do not fire
    "#]],
    );
    check(&cron("30 2 * * *", "America/New_York"), "dst 10 after 2026-06-01T00:00:00Z", expect![[r#""#]]);
    check(&cron("30 2 * * *", "UTC"), "dst 10 after 2026-03-03T12:00:00Z", expect![[r#""#]]);
}

#[test]
fn until_and_max_runs_end_a_recurring_schedule() {
    let limits = ScheduleLimits { min_interval_seconds: 1, max_interval_seconds: 1_000_000 };
    let parse = |value: serde_json::Value| Schedule::parse(&value, &limits);
    let anchor = instant("2030-01-01T00:00:00Z");

    let counted = parse(serde_json::json!({"type": "interval", "seconds": 60, "maxRuns": 3})).expect("valid");
    let compiled = counted.compile().expect("compiles");
    assert_eq!(compiled.preview(anchor, anchor, 10).len(), 3, "three runs, then none");
    let until = parse(serde_json::json!({"type": "cron", "expression": "0 * * * *", "until": "2030-01-01T02:30:00Z"}))
        .expect("valid")
        .compile()
        .expect("compiles");
    let runs = until.preview(anchor, anchor, 10);
    assert_eq!(runs, [instant("2030-01-01T01:00:00Z"), instant("2030-01-01T02:00:00Z")]);

    // A maxRuns-th slot past the end of time bounds nothing: the schedule still runs.
    let monthly =
        parse(serde_json::json!({"type": "cron", "expression": "0 0 1 * *", "maxRuns": 100000})).expect("valid");
    assert!(monthly.compile().expect("compiles").first_slot(anchor).is_some());

    for (bad, field) in [
        (serde_json::json!({"type": "interval", "seconds": 60, "until": 1_900_000_000_000i64}), "schedule.until"),
        (serde_json::json!({"type": "interval", "seconds": 60, "until": "soon"}), "schedule.until"),
        (serde_json::json!({"type": "interval", "seconds": 60, "maxRuns": 0}), "schedule.maxRuns"),
        (serde_json::json!({"type": "cron", "expression": "@daily", "maxRuns": 1.5}), "schedule.maxRuns"),
    ] {
        let error = parse(bad.clone()).expect_err("refused");
        assert_eq!(error.field, field, "{bad}: {error}");
    }
}
