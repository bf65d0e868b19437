//! The engine's Prometheus metrics: fires, fire lateness, executions by status, skipped and missed slots, queue
//! depth and sandbox worker restarts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sundial_core::ExecutionStatus;
use sundial_sandbox::PoolStats;
use sundial_store::StoreStats;

type Labels = Vec<(String, String)>;

/// Counters and histograms updated by the scheduler; gauges are read from the store and the pool at scrape time.
pub struct Metrics {
    registry: Registry,
    fires: Counter,
    lateness: Histogram,
    executions: Family<Labels, Counter>,
    skipped: Counter,
    missed: Counter,
    refused: Counter,
    queue_depth: Gauge,
    active_jobs: Gauge,
    workers_busy: Gauge,
    worker_restarts: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sundial");
        let fires = Counter::default();
        registry.register("fires", "Scheduled slots started", fires.clone());
        let lateness = Histogram::new(exponential_buckets(0.000_25, 2.0, 18));
        registry.register("fire_lateness_seconds", "Start time minus due time of scheduled slots", lateness.clone());
        let executions = Family::<Labels, Counter>::default();
        registry.register("executions", "Executions that reached a final status", executions.clone());
        let skipped = Counter::default();
        registry.register("skipped_slots", "Slots not run because the previous run was still running", skipped.clone());
        let missed = Counter::default();
        registry.register("missed_slots", "Slots missed while no scheduler ran, and not caught up", missed.clone());
        let refused = Counter::default();
        registry.register(
            "late_results_refused",
            "Outcomes refused because another node had taken the execution over (lease expired)",
            refused.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Pending executions due now or earlier", queue_depth.clone());
        let active_jobs = Gauge::default();
        registry.register(
            "active_jobs",
            "Active jobs with a next slot (on PostgreSQL, the database's estimate, kept by autovacuum)",
            active_jobs.clone(),
        );
        let workers_busy = Gauge::default();
        registry.register("sandbox_workers_busy", "Sandbox workers running a job", workers_busy.clone());
        let worker_restarts = Gauge::default();
        registry.register("sandbox_worker_restarts", "Sandbox workers replaced since start", worker_restarts.clone());
        Metrics {
            registry,
            fires,
            lateness,
            executions,
            skipped,
            missed,
            refused,
            queue_depth,
            active_jobs,
            workers_busy,
            worker_restarts,
        }
    }

    /// A scheduled slot started `lateness_seconds` after its due time.
    pub fn fired(&self, lateness_seconds: f64) {
        self.fires.inc();
        self.lateness.observe(lateness_seconds.max(0.0));
    }

    /// An execution reached `status`.
    pub fn finished(&self, status: ExecutionStatus) {
        self.executions.get_or_create(&vec![("status".to_owned(), status.as_str().to_owned())]).inc();
        if status == ExecutionStatus::Skipped {
            self.skipped.inc();
        }
    }

    /// Slots that were missed and not run.
    pub fn missed(&self, count: u64) {
        self.missed.inc_by(count);
    }

    /// A node's late outcome was refused: the execution had been taken over.
    pub fn refused_late_result(&self) {
        self.refused.inc();
    }

    /// The text exposition format.
    pub fn encode(&self, store: &StoreStats, pool: &PoolStats) -> String {
        self.queue_depth.set(store.queue_depth as i64);
        self.active_jobs.set(store.active_jobs as i64);
        self.workers_busy.set(pool.busy as i64);
        self.worker_restarts.set(pool.restarts as i64);
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.push_str("# metrics encoding failed\n");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
