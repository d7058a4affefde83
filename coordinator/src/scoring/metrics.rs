//! Prometheus metrics (text exposition format 0.0.4, served at `/metrics`) with
//! `prometheus-client`: scoring requests and their latency, scores, alerts, and at each scrape
//! the jobs per state, rounds done, connected parties and their queue depths.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Shared;

type Labels = Vec<(String, String)>;

/// The coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Scoring requests by API and outcome.
    pub requests: Family<Labels, Counter>,
    /// Seconds from a scoring request to its answer.
    pub latency: Histogram,
    /// Enterprises scored.
    pub scores: Counter,
    /// Alerts raised by kind.
    pub alerts: Family<Labels, Counter>,
    jobs: Family<Labels, Gauge>,
    rounds: Gauge,
    parties: Gauge,
    queue: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fedcredit");
        let requests = Family::<Labels, Counter>::default();
        let latency = Histogram::new([
            0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        let scores = Counter::default();
        let alerts = Family::<Labels, Counter>::default();
        let jobs = Family::<Labels, Gauge>::default();
        let rounds = Gauge::default();
        let parties = Gauge::default();
        let queue = Family::<Labels, Gauge>::default();
        registry.register(
            "scoring_requests",
            "Scoring requests by api and outcome",
            requests.clone(),
        );
        registry.register("scoring_latency_seconds", "Scoring request latency", latency.clone());
        registry.register("scores", "Enterprises scored", scores.clone());
        registry.register("alerts", "Alerts raised by kind", alerts.clone());
        registry.register("jobs", "Jobs by state", jobs.clone());
        registry.register("rounds_done", "Protocol steps completed over all jobs", rounds.clone());
        registry.register("parties_connected", "Parties with a live stream", parties.clone());
        registry.register("party_queue_depth", "Messages waiting for a party", queue.clone());
        Self { registry, requests, latency, scores, alerts, jobs, rounds, parties, queue }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// Counts a request of `api` that ended with `outcome` after `secs`.
    pub fn request(&self, api: &str, outcome: &str, secs: f64) {
        self.requests.get_or_create(&labels(&[("api", api), ("outcome", outcome)])).inc();
        self.latency.observe(secs);
    }

    /// Counts an alert.
    pub fn alert(&self, kind: &str) {
        self.alerts.get_or_create(&labels(&[("kind", kind)])).inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, shared: &Shared) -> String {
        if let Ok(jobs) = shared.store.jobs() {
            self.jobs.clear();
            let mut rounds = 0i64;
            for j in &jobs {
                self.jobs.get_or_create(&labels(&[("state", j.state.as_str())])).inc();
                rounds += i64::from(j.rounds_done);
            }
            self.rounds.set(rounds);
        }
        let depths = shared.registry.queue_depths();
        self.parties.set(depths.len() as i64);
        self.queue.clear();
        for (p, d) in depths {
            self.queue.get_or_create(&labels(&[("party", &p.0)])).set(d as i64);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
