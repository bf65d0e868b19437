//! Micro-benchmarks of next-fire computation: how long one "when does this schedule fire next?" takes for each kind
//! of schedule, in UTC and in an IANA zone, on ordinary days and across both DST transitions.
//!
//! Run with `cargo bench -p sundial-core --bench next_fire`. Every case first checks the instant it computes, so a
//! change that breaks the answer fails the benchmark instead of timing a wrong path.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use sundial_core::{CompiledSchedule, Schedule};

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("a valid RFC 3339 instant").with_timezone(&Utc)
}

fn cron(expression: &str, timezone: Option<&str>) -> Schedule {
    Schedule::cron(expression, timezone.map(str::to_owned))
}

fn compile(schedule: &Schedule) -> CompiledSchedule {
    schedule.compile().expect("the schedule compiles")
}

/// One next-fire case: a schedule asked for its slot after `after`, with the slot it must answer.
struct Case {
    name: &'static str,
    schedule: Schedule,
    after: &'static str,
    expected: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "interval_60s",
            schedule: Schedule::interval(60),
            after: "2025-06-01T12:00:30Z",
            expected: "2025-06-01T12:01:00Z",
        },
        Case {
            name: "cron5_utc_every_5_minutes",
            schedule: cron("*/5 * * * *", None),
            after: "2025-06-01T12:03:00Z",
            expected: "2025-06-01T12:05:00Z",
        },
        Case {
            name: "cron5_utc_weekdays_9am",
            schedule: cron("0 9 * * MON-FRI", None),
            after: "2025-06-06T09:00:00Z",
            expected: "2025-06-09T09:00:00Z",
        },
        Case {
            name: "cron6_utc_every_10_seconds",
            schedule: cron("*/10 * * * * *", None),
            after: "2025-06-01T12:00:03Z",
            expected: "2025-06-01T12:00:10Z",
        },
        Case {
            name: "cron5_new_york_weekdays_9am",
            schedule: cron("0 9 * * MON-FRI", Some("America/New_York")),
            after: "2025-06-06T13:00:00Z",
            expected: "2025-06-09T13:00:00Z",
        },
        Case {
            name: "cron6_new_york_daily_17_30_15",
            schedule: cron("15 30 17 * * *", Some("America/New_York")),
            after: "2025-06-01T12:00:00Z",
            expected: "2025-06-01T21:30:15Z",
        },
        Case {
            // 02:30 does not exist on 2025-03-09 in New York: the slot is the first instant after the gap, 03:00 EDT.
            name: "cron5_new_york_spring_forward_gap",
            schedule: cron("30 2 * * *", Some("America/New_York")),
            after: "2025-03-09T05:00:00Z",
            expected: "2025-03-09T07:00:00Z",
        },
        Case {
            // 01:30 happens twice on 2025-11-02; after its first (EDT) pass the next slot is the next day's 01:30 EST.
            name: "cron5_new_york_fall_back_repeat",
            schedule: cron("30 1 * * *", Some("America/New_York")),
            after: "2025-11-02T05:30:00Z",
            expected: "2025-11-03T06:30:00Z",
        },
        Case {
            // A clock pattern fires in both passes of the repeated hour: 01:45 EDT is followed by 01:00 EST.
            name: "cron5_new_york_fall_back_clock",
            schedule: cron("*/15 * * * *", Some("America/New_York")),
            after: "2025-11-02T05:45:00Z",
            expected: "2025-11-02T06:00:00Z",
        },
    ]
}

fn next_fire(c: &mut Criterion) {
    let anchor = instant("2025-01-01T00:00:00Z");
    let mut group = c.benchmark_group("next_fire");
    for case in cases() {
        let compiled = compile(&case.schedule);
        let after = instant(case.after);
        assert_eq!(compiled.next_after(after, anchor), Some(instant(case.expected)), "{}", case.name);
        group.bench_function(case.name, |b| {
            b.iter(|| compiled.next_after(black_box(after), black_box(anchor)));
        });
    }

    let once = compile(&Schedule::once(instant("2025-06-01T12:00:00Z")));
    assert_eq!(once.first_slot(anchor), Some(instant("2025-06-01T12:00:00Z")));
    group.bench_function("once_first_slot", |b| b.iter(|| once.first_slot(black_box(anchor))));
    group.finish();
}

/// What a scheduler pays before it can ask: parsing the pattern and the zone of a cron schedule.
fn compile_schedule(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    let utc = cron("0 9 * * MON-FRI", None);
    let new_york = cron("0 9 * * MON-FRI", Some("America/New_York"));
    group.bench_function("cron5_utc", |b| b.iter(|| compile(black_box(&utc))));
    group.bench_function("cron5_new_york", |b| b.iter(|| compile(black_box(&new_york))));
    group.finish();
}

criterion_group!(benches, next_fire, compile_schedule);
criterion_main!(benches);
