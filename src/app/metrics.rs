//! Prometheus metrics: the recorder that the `metrics` macros across the code write to, `GET
//! /metrics` on a listener of its own (`METRICS_ADDR`), the HTTP request metrics, and the gauges
//! read when scraped (queue backlogs, the database pool). docs/operations.md lists every metric.
//!
//! No label carries an address, a name or a token: routes are labelled by their pattern
//! (`/confirm/{token}`), never by the path, and every other label has a fixed set of values.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::queue::{CAMPAIGN_RECIPIENTS, OUTBOX};
use crate::store::{self, Db};

/// Histogram buckets of latencies, in seconds: from a fast page to a slow relay.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// One DKIM signature takes a fraction of a millisecond (RSA-2048) or microseconds (Ed25519).
const DKIM_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// The queue backlogs cost a query each: a scrape reads them again only after this long.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How often histogram samples are folded into their buckets between scrapes (so they do not
/// pile up in memory when nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder. A recorder is process-wide: the first application that serves
/// metrics installs it, any later one in the same process shares it.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// The process's recorder, installed on first use.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    let mut installed = RECORDER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("letterhead_dkim_sign_duration_seconds".into()),
            DKIM_BUCKETS,
        )?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("METRICS_ADDR: cannot install the metrics recorder: {e}"))?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The HELP line of every metric.
fn describe() {
    describe_counter!(
        "letterhead_http_requests_total",
        "HTTP requests answered, by method, route pattern and status class"
    );
    describe_histogram!(
        "letterhead_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method, route pattern and status class"
    );
    describe_counter!("letterhead_signups_total", "Signups recorded (POST /subscribe)");
    describe_counter!(
        "letterhead_confirmations_total",
        "Confirmation links that confirmed subscriptions"
    );
    describe_counter!(
        "letterhead_unsubscribes_total",
        "Subscriptions ended, by way: one_click (the List-Unsubscribe URI), page (the preference page), operator (CLI or API)"
    );
    describe_counter!(
        "letterhead_erasures_total",
        "People erased on request (preference page or API)"
    );
    describe_counter!(
        "letterhead_messages_total",
        "Delivery attempts by kind of email and outcome: sent, retried, deferred, failed, suppressed, skipped, cancelled"
    );
    describe_gauge!(
        "letterhead_queue_depth",
        "Rows still to send, by queue (outbox, campaign_recipients) and status (queued, sending)"
    );
    describe_gauge!(
        "letterhead_relay_paused",
        "1 while delivery is paused because the relay could not be reached, else 0"
    );
    describe_histogram!(
        "letterhead_smtp_send_duration_seconds",
        metrics::Unit::Seconds,
        "One message handed to the relay (or written as .eml), by result"
    );
    describe_histogram!(
        "letterhead_dkim_sign_duration_seconds",
        metrics::Unit::Seconds,
        "One DKIM signature"
    );
    describe_gauge!(
        "letterhead_db_pool_connections",
        "Database connections by state (in_use, idle)"
    );
    describe_gauge!(
        "letterhead_db_pool_max_connections",
        "The most connections the database pool opens; queries wait when all are in use"
    );
}

/// What `GET /metrics` needs.
#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    db: Db,
    /// When the queue backlogs were last read.
    sampled: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

/// The metrics listener's only route.
pub fn router(handle: PrometheusHandle, db: Db) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(Scrape {
        handle,
        db,
        sampled: Arc::default(),
    })
}

async fn scrape(State(scrape): State<Scrape>) -> Response {
    sample(&scrape).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        scrape.handle.render(),
    )
        .into_response()
}

/// Reads the gauges that nothing updates as it happens: the pool (free to read) and the queue
/// backlogs (a query each, at most every [`SAMPLE_EVERY`]).
async fn sample(scrape: &Scrape) {
    if let Some(pool) = store::pool_state(&scrape.db) {
        gauge!("letterhead_db_pool_connections", "state" => "in_use").set(pool.in_use);
        gauge!("letterhead_db_pool_connections", "state" => "idle").set(pool.idle);
        gauge!("letterhead_db_pool_max_connections").set(pool.max);
    }
    let mut sampled = scrape.sampled.lock().await;
    if sampled.is_some_and(|at| at.elapsed() < SAMPLE_EVERY) {
        return;
    }
    for queue in [&OUTBOX, &CAMPAIGN_RECIPIENTS] {
        match queue.backlog(&scrape.db).await {
            Ok(backlog) => {
                for (status, n) in [("queued", backlog.queued), ("sending", backlog.sending)] {
                    gauge!("letterhead_queue_depth", "queue" => queue.name(), "status" => status)
                        .set(n as f64);
                }
            }
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "reading a queue backlog for /metrics failed")
            }
        }
    }
    *sampled = Some(Instant::now());
}

/// Folds histogram samples into their buckets every few seconds until `stop`.
pub async fn upkeep(handle: PrometheusHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}

/// Middleware: counts each request and times it, by method, route pattern and status class.
pub async fn count_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // The pattern, never the path: paths carry tokens.
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let response = next.run(request).await;
    let labels = [
        ("method", method.into()),
        ("route", route),
        ("status", status_class(response.status()).into()),
    ];
    metrics::counter!("letterhead_http_requests_total", &labels).increment(1);
    metrics::histogram!("letterhead_http_request_duration_seconds", &labels).record(started.elapsed());
    response
}

/// A fixed label for every method (a client may send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(status_class(StatusCode::ACCEPTED), "2xx");
        assert_eq!(status_class(StatusCode::SEE_OTHER), "3xx");
        assert_eq!(status_class(StatusCode::GONE), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"X-ANYTHING").unwrap()), "other");
    }
}
