//! The statistics and the accounting of `bench/workloads.md`: nearest-rank percentiles rounded to 0.1 ms, and
//! lateness, early starts, missed jobs, duplicates and recurring drift from the starts read back from the server.

use serde_json::{json, Value};

/// Rounds to one decimal (0.1 ms), as the workloads' reports do.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The element at the nearest-rank `percentile` (an integer 0–100) of an ascending slice: index
/// `ceil(p/100 · n) − 1`, clamped to `[0, n − 1]`. `None` for an empty slice.
pub fn nearest_rank(sorted: &[f64], percentile: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p · n / 100) in integers, so that 99 % of 100 is exactly 99 (no floating-point surprise).
    let rank = (percentile * n).div_ceil(100);
    Some(sorted[rank.saturating_sub(1).min(n - 1)])
}

/// `n, min, p50, p90, p99, max, mean` of a sample, each rounded to 0.1.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Sample size.
    pub n: usize,
    /// Smallest value (`None` for an empty sample, as are the others).
    pub min: Option<f64>,
    /// Median (nearest rank).
    pub p50: Option<f64>,
    /// 90th percentile (nearest rank).
    pub p90: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
}

impl Stats {
    /// The statistics of `values` (any order).
    pub fn of(values: &[f64]) -> Stats {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64);
        Stats {
            n: sorted.len(),
            min: sorted.first().copied().map(round1),
            p50: nearest_rank(&sorted, 50).map(round1),
            p90: nearest_rank(&sorted, 90).map(round1),
            p99: nearest_rank(&sorted, 99).map(round1),
            max: sorted.last().copied().map(round1),
            mean: mean.map(round1),
        }
    }

    /// `{"n":…,"min":…,"p50":…,"p90":…,"p99":…,"max":…,"mean":…}` (nulls for an empty sample).
    pub fn to_json(&self) -> Value {
        json!({
            "n": self.n, "min": self.min, "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max,
            "mean": self.mean,
        })
    }
}

/// One execution read back from the server, reduced to what the accounting needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Start {
    /// The job's index *i*.
    pub index: usize,
    /// The clock value the job's code read first (ms since the epoch, host clock): the `t` it returned. `None` when
    /// the code never returned one (pending, cancelled, skipped, or a run that failed or was abandoned).
    pub at_ms: Option<f64>,
    /// Whether the server started the execution (it reached `running`, whatever came after). Duplicates count
    /// these: a run abandoned by a crash and run again is a second start even if its code never returned.
    pub started: bool,
}

/// What the one-time workloads (W1, W2, W6) report about their jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct OnceAccount {
    /// Jobs whose code returned a start (clock reading) by the deadline.
    pub ran: usize,
    /// Jobs without one.
    pub missed: usize,
    /// Σ over jobs of (starts − 1).
    pub duplicates: usize,
    /// Jobs whose first start came before their due time.
    pub early: usize,
    /// Jobs the server started more than once.
    pub started_more_than_once: usize,
    /// Jobs the server never started.
    pub never_started: usize,
    /// First start − due time of every job that ran (ms, signed).
    pub lateness_ms: Vec<f64>,
    /// Each job's first start (ms since the epoch), by index.
    pub first_start_ms: Vec<Option<f64>>,
}

/// Accounts the starts of `due_ms.len()` one-time jobs, job *i* due at `due_ms[i]`: a job ran when its code
/// returned its clock reading by `deadline_ms`; its starts are the executions the server started (at least the runs
/// that returned a reading). Executions of unknown indices are ignored.
pub fn account_once(due_ms: &[f64], starts: &[Start], deadline_ms: f64) -> OnceAccount {
    let n = due_ms.len();
    let mut server_starts = vec![0usize; n];
    let mut code_starts = vec![0usize; n];
    let mut first: Vec<Option<f64>> = vec![None; n];
    for start in starts {
        if start.index >= n {
            continue;
        }
        server_starts[start.index] += usize::from(start.started);
        let Some(at) = start.at_ms.filter(|at| *at <= deadline_ms) else { continue };
        code_starts[start.index] += 1;
        let slot = &mut first[start.index];
        *slot = Some(slot.map_or(at, |earlier| earlier.min(at)));
    }
    let counts: Vec<usize> = server_starts.iter().zip(&code_starts).map(|(server, code)| *server.max(code)).collect();
    let mut account = OnceAccount {
        ran: 0,
        missed: 0,
        duplicates: 0,
        early: 0,
        started_more_than_once: 0,
        never_started: 0,
        lateness_ms: Vec::with_capacity(n),
        first_start_ms: first.clone(),
    };
    for (index, first) in first.iter().enumerate() {
        account.duplicates += counts[index].saturating_sub(1);
        account.started_more_than_once += usize::from(counts[index] > 1);
        account.never_started += usize::from(counts[index] == 0);
        let Some(first) = first else {
            account.missed += 1;
            continue;
        };
        account.ran += 1;
        let lateness = first - due_ms[index];
        if lateness < 0.0 {
            account.early += 1;
        }
        account.lateness_ms.push(lateness);
    }
    account
}

/// What the recurring workload (W3) reports.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurringAccount {
    /// Runs that started by the end of the window, over all jobs.
    pub total_runs: usize,
    /// Runs of each job.
    pub runs_per_job: Vec<f64>,
    /// Jobs that never ran in the window.
    pub jobs_with_zero_runs: usize,
    /// rₖ − (r₁ + (k − 1) · interval) for k ≥ 2 (signed).
    pub drift_ms: Vec<f64>,
    /// |rₖ − rₖ₋₁ − interval| for k ≥ 2.
    pub abs_gap_error_ms: Vec<f64>,
    /// r₀ − the time the job's create call returned.
    pub first_run_delay_ms: Vec<f64>,
}

/// Accounts `jobs` recurring jobs with a fixed `interval_ms`, created by calls that returned at `created_ms`,
/// counting only starts at or before `until_ms`.
pub fn account_recurring(
    jobs: usize,
    starts: &[Start],
    created_ms: f64,
    interval_ms: f64,
    until_ms: f64,
) -> RecurringAccount {
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); jobs];
    for start in starts {
        if let Some(at) = start.at_ms.filter(|at| *at <= until_ms) {
            if let Some(job) = runs.get_mut(start.index) {
                job.push(at);
            }
        }
    }
    let mut account = RecurringAccount {
        total_runs: 0,
        runs_per_job: Vec::with_capacity(jobs),
        jobs_with_zero_runs: 0,
        drift_ms: Vec::new(),
        abs_gap_error_ms: Vec::new(),
        first_run_delay_ms: Vec::new(),
    };
    for mut job in runs {
        job.sort_by(f64::total_cmp);
        account.total_runs += job.len();
        account.runs_per_job.push(job.len() as f64);
        let Some(first) = job.first() else {
            account.jobs_with_zero_runs += 1;
            continue;
        };
        account.first_run_delay_ms.push(first - created_ms);
        for k in 2..job.len() {
            account.drift_ms.push(job[k] - (job[1] + (k - 1) as f64 * interval_ms));
            account.abs_gap_error_ms.push((job[k] - job[k - 1] - interval_ms).abs());
        }
    }
    account
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(index: usize, at: f64) -> Start {
        Start { index, at_ms: Some(at), started: true }
    }

    #[test]
    fn nearest_rank_follows_the_contract() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&hundred, 50), Some(50.0));
        assert_eq!(nearest_rank(&hundred, 90), Some(90.0));
        assert_eq!(nearest_rank(&hundred, 99), Some(99.0));
        assert_eq!(nearest_rank(&hundred, 100), Some(100.0));
        assert_eq!(nearest_rank(&hundred, 0), Some(1.0), "rank 0 clamps to the first element");
        let three = [10.0, 20.0, 30.0];
        // ceil(0.5 · 3) − 1 = 1, ceil(0.9 · 3) − 1 = 2, ceil(0.99 · 3) − 1 = 2.
        assert_eq!(nearest_rank(&three, 50), Some(20.0));
        assert_eq!(nearest_rank(&three, 90), Some(30.0));
        assert_eq!(nearest_rank(&three, 99), Some(30.0));
        assert_eq!(nearest_rank(&[7.0], 99), Some(7.0));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn stats_round_to_a_tenth_and_sort_first() {
        let stats = Stats::of(&[3.04, -1.26, 2.0, 0.55]);
        assert_eq!(stats.n, 4);
        assert_eq!(stats.min, Some(-1.3));
        assert_eq!(stats.p50, Some(0.6), "ceil(0.5 · 4) − 1 = 1: the second smallest, 0.55");
        assert_eq!(stats.p90, Some(3.0));
        assert_eq!(stats.p99, Some(3.0));
        assert_eq!(stats.max, Some(3.0));
        assert_eq!(stats.mean, Some(1.1), "(3.04 − 1.26 + 2 + 0.55) / 4 = 1.0825");
        assert_eq!(round1(-0.04), -0.0);
        assert_eq!(round1(12.349), 12.3);
        assert_eq!(
            Stats::of(&[]).to_json(),
            json!({"n": 0, "min": null, "p50": null, "p90": null, "p99": null, "max": null, "mean": null})
        );
        assert_eq!(
            Stats::of(&[5.0, 1.0]).to_json(),
            json!({"n": 2, "min": 1.0, "p50": 1.0, "p90": 5.0, "p99": 5.0, "max": 5.0, "mean": 3.0})
        );
    }

    #[test]
    fn once_accounting_counts_first_starts_duplicates_early_and_missed() {
        let due = [1000.0, 1000.0, 1001.0, 1001.0, 1002.0, 1200.0, 1200.0];
        let abandoned = |index| Start { index, at_ms: None, started: true };
        let starts = vec![
            started(0, 1003.0),
            started(0, 1001.0), // a second start of job 0, earlier than the first one read back
            started(1, 999.0),  // early
            Start { index: 2, at_ms: None, started: false }, // pending: not a start
            started(3, 1001.0),
            started(3, 1500.0),
            started(3, 1600.0),
            started(4, 70_000.0), // after the deadline: not a run (still a start the server made)
            started(9, 1000.0),   // unknown job
            abandoned(5),         // started by the server, its code never returned …
            started(5, 1203.0),   // … and its retry
            abandoned(6),
            abandoned(6),
        ];
        let account = account_once(&due, &starts, 61_002.0);
        assert_eq!(account.ran, 4);
        assert_eq!(account.missed, 3, "job 2 never started, job 4 only after the deadline, job 6 never returned");
        assert_eq!(account.duplicates, 1 + 2 + 1 + 1);
        assert_eq!(account.started_more_than_once, 4);
        assert_eq!(account.never_started, 1);
        assert_eq!(account.early, 1);
        assert_eq!(account.lateness_ms, vec![1.0, -1.0, 0.0, 3.0]);
        let firsts = vec![Some(1001.0), Some(999.0), None, Some(1001.0), None, Some(1203.0), None];
        assert_eq!(account.first_start_ms, firsts);
    }

    #[test]
    fn recurring_accounting_measures_drift_from_the_second_run() {
        // Job 0: on the grid after a late first run; job 1: one run 7 ms late then back; job 2: never ran.
        let starts = vec![
            started(0, 1300.0),
            started(0, 2000.0),
            started(0, 3000.0),
            started(0, 4001.0),
            started(1, 2002.0),
            started(1, 1002.0),
            started(1, 3009.0),
            started(1, 4002.0),
            started(1, 5002.0),
            started(1, 99_000.0), // after the window
        ];
        let account = account_recurring(3, &starts, 1000.0, 1000.0, 10_500.0);
        assert_eq!(account.total_runs, 9);
        assert_eq!(account.runs_per_job, vec![4.0, 5.0, 0.0]);
        assert_eq!(account.jobs_with_zero_runs, 1);
        assert_eq!(account.first_run_delay_ms, vec![300.0, 2.0]);
        // Job 0: r1 = 2000 → r2 − 3000 = 0, r3 − 4000 = 1. Job 1: r1 = 2002 → 7, 0, 0.
        assert_eq!(account.drift_ms, vec![0.0, 1.0, 7.0, 0.0, 0.0]);
        // Job 0: |1000 − 1000| = 0, |1001 − 1000| = 1. Job 1: 7, 7, 0.
        assert_eq!(account.abs_gap_error_ms, vec![0.0, 1.0, 7.0, 7.0, 0.0]);
    }
}
