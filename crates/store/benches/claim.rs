//! Micro-benchmarks of the SQLite store's scheduling hot path: claiming due executions from a large queue, and
//! recording a batch of slots.
//!
//! Run with `cargo bench -p sundial-store --bench claim`. The store is a real database file in a temporary directory
//! (WAL, `synchronous=FULL`, so every call includes its commit's fsync), seeded with [`QUEUE`] due pending executions
//! spread over [`QUEUE_JOBS`] jobs through `occurrences_record`, as the scheduler records them.
//!
//! Each claim must take real rows. Rather than undoing claims between iterations (a scan of the whole queue), every
//! iteration runs one second later than the previous one with a lease of half a second, so the rows the previous
//! iteration claimed have expired and are claimable again: each iteration claims the `limit` rows at the head of the
//! queue, as a node does when it polls, and rewrites their lease.

use std::cell::Cell;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sundial_core::{Job, JobVersion, Schedule};
use sundial_store::conformance::{sample_job, slot_execution};
use sundial_store::{OccurrenceRecord, SqliteStore, Store};
use tokio::runtime::Runtime;

/// Due pending executions in the queue.
const QUEUE: usize = 100_000;
/// Jobs the queue is spread over.
const QUEUE_JOBS: usize = 1_000;
/// Jobs advanced by one `occurrences_record` call.
const RECORD_BATCH: usize = 100;

/// A seeded store and the clock the benchmarks move forward.
struct Fixture {
    runtime: Runtime,
    store: SqliteStore,
    /// Keeps the database file alive for the store's lifetime.
    _directory: tempfile::TempDir,
    /// Seconds past [`base`] that the next claim runs at.
    clock: Cell<i64>,
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().expect("a valid instant")
}

fn seconds(count: i64) -> TimeDelta {
    TimeDelta::seconds(count)
}

/// An active interval job (every `interval` seconds) with its version, whose next slot is `next_run_at`.
fn job(interval: u64, next_run_at: DateTime<Utc>) -> (Job, Option<JobVersion>) {
    let (mut job, version) = sample_job(Schedule::interval(interval));
    job.next_run_at = Some(next_run_at);
    (job, Some(version))
}

impl Fixture {
    /// Opens a fresh store and records `QUEUE` pending executions, due at distinct instants in the past of the
    /// benchmarks' clock.
    fn seeded() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&directory.path().join("sundial.db")).expect("the store opens");
        let slots_per_job = QUEUE / QUEUE_JOBS;
        let started = Instant::now();
        runtime.block_on(async {
            let jobs: Vec<_> =
                (0..QUEUE_JOBS).map(|index| job(QUEUE_JOBS as u64, base() + seconds(index as i64))).collect();
            store.jobs_insert_batch(std::sync::Arc::new(jobs.clone())).await.expect("jobs inserted");
            // Round by round, one slot of every job per call, as the scheduler records them: rows due together are
            // written together.
            for round in 0..slots_per_job {
                let records: Vec<_> = jobs
                    .iter()
                    .map(|(job, _)| {
                        let first = job.next_run_at.expect("a next slot");
                        let slot = |k: usize| first + seconds((k * QUEUE_JOBS) as i64);
                        OccurrenceRecord {
                            job_id: job.id.clone(),
                            expected_next_run_at: slot(round),
                            next_run_at: Some(slot(round + 1)),
                            missed: 0,
                            slots: vec![slot_execution(job, slot(round))],
                        }
                    })
                    .collect();
                let applied = store.occurrences_record(&records, base()).await.expect("slots recorded");
                assert_eq!(applied, records.len(), "a seed record was refused");
            }
        });
        eprintln!("seeded {QUEUE} pending executions over {QUEUE_JOBS} jobs in {:.1?}", started.elapsed());
        Fixture { runtime, store, _directory: directory, clock: Cell::new(QUEUE as i64 + 1) }
    }

    /// The next claim's "now": one second after the previous one, so every earlier claim has expired.
    fn tick(&self) -> DateTime<Utc> {
        let now = self.clock.get();
        self.clock.set(now + 1);
        base() + seconds(now)
    }
}

fn executions_claim(c: &mut Criterion) {
    let fixture = Fixture::seeded();
    let mut group = c.benchmark_group(format!("executions_claim_of_{QUEUE}"));
    for limit in [100usize, 1_000] {
        group.bench_with_input(BenchmarkId::from_parameter(limit), &limit, |b, &limit| {
            b.iter_custom(|iterations| {
                fixture.runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let now = fixture.tick();
                        let lease_until = now + TimeDelta::milliseconds(500);
                        let started = Instant::now();
                        let claimed = fixture
                            .store
                            .executions_claim(now, "bench-node", lease_until, now, limit)
                            .await
                            .expect("claim");
                        total += started.elapsed();
                        assert_eq!(claimed.len(), limit, "the claim did not take real rows");
                    }
                    total
                })
            });
        });
    }
    group.finish();
    record_batch(c, &fixture);
}

/// `occurrences_record` of one slot for each of [`RECORD_BATCH`] jobs (one transaction), on the seeded store: each
/// iteration advances every job by one slot, inserting its occurrence and pending execution.
fn record_batch(c: &mut Criterion, fixture: &Fixture) {
    const INTERVAL: i64 = 10;
    // Slots far after the claim benchmarks' clock, so they never join the claimed head of the queue.
    let first = base() + seconds(100 * QUEUE as i64);
    let jobs: Vec<_> = (0..RECORD_BATCH).map(|_| job(INTERVAL as u64, first)).collect();
    fixture
        .runtime
        .block_on(fixture.store.jobs_insert_batch(std::sync::Arc::new(jobs.clone())))
        .expect("jobs inserted");
    let next_slot = Cell::new(0i64);
    let mut group = c.benchmark_group("occurrences_record");
    group.bench_function(BenchmarkId::new("one_slot_each_of_jobs", RECORD_BATCH), |b| {
        b.iter_custom(|iterations| {
            fixture.runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let k = next_slot.get();
                    next_slot.set(k + 1);
                    let slot = first + seconds(k * INTERVAL);
                    let records: Vec<_> = jobs
                        .iter()
                        .map(|(job, _)| OccurrenceRecord {
                            job_id: job.id.clone(),
                            expected_next_run_at: slot,
                            next_run_at: Some(slot + seconds(INTERVAL)),
                            missed: 0,
                            slots: vec![slot_execution(job, slot)],
                        })
                        .collect();
                    let started = Instant::now();
                    let applied = fixture.store.occurrences_record(&records, slot).await.expect("record");
                    total += started.elapsed();
                    assert_eq!(applied, RECORD_BATCH, "a record was refused");
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group!(benches, executions_claim);
criterion_main!(benches);
