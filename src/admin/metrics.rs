//! `GET /metrics`: the node's counters in the Prometheus text format, encoded by
//! prometheus-client from the hub's relaxed atomics at scrape time (the hot path only ever
//! adds to an atomic). Names start with `switchyard_`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use std::sync::atomic::Ordering;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::django::SessionBridge;
use crate::hub::{CommandKind, Hub};
use crate::protocol::ErrorCode;

/// The registry and what it reads from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

#[derive(Debug)]
struct Exporter {
    hub: Hub,
    bridge: Option<SessionBridge>,
}

impl Metrics {
    /// Metrics of `hub` (and of the session bridge's cache, when there is one).
    pub fn new(hub: Hub, bridge: Option<SessionBridge>) -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        registry.register_collector(Box::new(Exporter { hub, bridge }));
        Self { registry }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        text
    }

    /// `GET /metrics`.
    pub fn respond(&self) -> Response<Body> {
        let mut response = Response::new(body::full(self.render()));
        *response.status_mut() = StatusCode::OK;
        let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn float_gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.hub.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

        {
            let mut sockets =
                encoder.encode_descriptor("sockets", "Sockets open, per route", None, MetricType::Gauge)?;
            for (route, open) in self.hub.sockets_by_route() {
                ConstGauge::new(open as i64).encode(sockets.encode_family(&[("route", &*route)])?)?;
            }
        }
        gauge(&mut encoder, "channels", "Channels this node holds", self.hub.channels_held() as i64)?;
        counter(&mut encoder, "messages_in", "Messages read from sockets", load(&stats.messages_in))?;
        counter(&mut encoder, "messages_out", "Messages written to sockets", load(&stats.messages_out))?;
        counter(&mut encoder, "events", "Channel events published (once per event)", load(&stats.events))?;
        counter(&mut encoder, "deliveries", "Channel event frames queued to sockets", load(&stats.deliveries))?;
        counter(
            &mut encoder,
            "direct_deliveries",
            "Pushes to users, connections and everyone, per socket",
            load(&stats.direct_deliveries),
        )?;

        {
            let mut dropped = encoder.encode_descriptor(
                "dropped_events",
                "Events dropped by a slow-reader policy",
                None,
                MetricType::Counter,
            )?;
            for (policy, value) in [("drop_oldest", &stats.dropped[0]), ("latest", &stats.dropped[1])] {
                ConstCounter::new(load(value)).encode(dropped.encode_family(&[("policy", policy)])?)?;
            }
        }
        {
            let mut closes = encoder.encode_descriptor(
                "slow_reader_closes",
                "Sockets closed (4008) because they could not keep up",
                None,
                MetricType::Counter,
            )?;
            for (policy, value) in ["disconnect", "drop_oldest", "latest"].iter().zip(&stats.slow_closes) {
                ConstCounter::new(load(value)).encode(closes.encode_family(&[("policy", *policy)])?)?;
            }
        }

        {
            let mut commands = encoder.encode_descriptor(
                "commands",
                "Commands run, by backend and outcome",
                None,
                MetricType::Counter,
            )?;
            for kind in [CommandKind::Builtin, CommandKind::Http] {
                for (i, outcome) in std::iter::once("ok").chain(ErrorCode::ALL.iter().map(|c| c.as_str())).enumerate() {
                    let value = load(&stats.commands[kind as usize][i]);
                    let labels = [("backend", kind.as_str()), ("outcome", outcome)];
                    ConstCounter::new(value).encode(commands.encode_family(&labels)?)?;
                }
            }
        }

        if let Some(bridge) = &self.bridge {
            let (hits, misses) = bridge.cache_stats();
            counter(&mut encoder, "session_cache_hits", "Session lookups answered from the cache", hits)?;
            counter(&mut encoder, "session_cache_misses", "Session lookups that went to the store", misses)?;
        }
        let health = self.hub.broker().health();
        {
            let mut broker =
                encoder.encode_descriptor("broker_up", "1 when the broker carries events", None, MetricType::Gauge)?;
            ConstGauge::new(i64::from(health.ok))
                .encode(broker.encode_family(&[("kind", health.kind), ("state", health.state.as_str())])?)?;
        }
        let lag = "Seconds from the latest event's commit to its delivery here; while cut off, how long";
        float_gauge(&mut encoder, "broker_lag_seconds", lag, health.lag_seconds)?;
        let rate = "Events this node applied per second, over the last few seconds";
        float_gauge(&mut encoder, "broker_events_per_second", rate, health.events_per_second)?;
        counter(&mut encoder, "broker_events", "Events, pushes and revocations this node applied", health.events)?;
        counter(
            &mut encoder,
            "broker_lost_events",
            "Channel events the broker's store no longer had when this node read it (subscribers got `lost`)",
            load(&stats.broker_lost),
        )?;
        counter(
            &mut encoder,
            "broker_reconnects",
            "Times the broker lost its store and connected again",
            health.reconnects,
        )?;
        Ok(())
    }
}
