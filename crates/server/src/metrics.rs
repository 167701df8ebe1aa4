//! Operational metrics, served at `/metrics` on the metrics listener (`--metrics-listen`,
//! loopback by default, never the public one) in the Prometheus text format. Counts and timings
//! only: no usernames, no ids, no content.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub live_connections: IntGauge,
    pub messages_in: IntCounter,
    pub messages_out: IntCounter,
    pub deliveries: IntCounter,
    pub rejections: IntCounterVec,
    pub queue_depth: IntGauge,
    pub request_seconds: HistogramVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and distinct, so registration cannot collide.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        // Metric names and labels are constants: their constructors cannot fail.
        const VALID: &str = "a valid constant metric definition";
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str| register(&registry, IntCounter::new(name, help).expect(VALID));
        let gauge =
            |name: &str, help: &str| register(&registry, IntGauge::new(name, help).expect(VALID));
        Metrics {
            live_connections: gauge("parley_live_connections", "Open WebSocket connections"),
            messages_in: counter(
                "parley_messages_in_total",
                "Submissions accepted (new, not retries)",
            ),
            messages_out: counter("parley_messages_out_total", "Queue items handed to devices"),
            deliveries: counter(
                "parley_deliveries_total",
                "Queue pointers written (one per recipient device)",
            ),
            rejections: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("parley_rejections_total", "Submissions refused, by reason"),
                    &["reason"],
                )
                .expect(VALID),
            ),
            queue_depth: gauge(
                "parley_queue_depth",
                "Undelivered queue items (at scrape time)",
            ),
            request_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("parley_request_seconds", "HTTP request latency by route")
                        .buckets(vec![
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5,
                        ]),
                    &["route"],
                )
                .expect(VALID),
            ),
            registry,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.messages_in.inc();
        metrics.rejections.with_label_values(&["WrongEpoch"]).inc();
        metrics
            .request_seconds
            .with_label_values(&["/v1/messages"])
            .observe(0.002);
        let text = metrics.render();
        assert!(text.contains("parley_messages_in_total 1"), "{text}");
        assert!(
            text.contains("parley_rejections_total{reason=\"WrongEpoch\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("parley_request_seconds_bucket{route=\"/v1/messages\",le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
