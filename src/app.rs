//! The application, wired in one place: state, router and middleware, server, delivery worker,
//! graceful shutdown. `Application::build` takes a checked [`Config`] and nothing else, so tests
//! build exactly what production runs (on port 0, with their own database and SMTP sink).

mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

mod serve;

use crate::config::Config;
use crate::delivery::{self, Wakeups};
use crate::domain::AddressHasher;
use crate::edge::{App, AppState, Limits, TokenVerifier};
use crate::mail::{Stamp, Transport};
use crate::services::campaigns::Campaigns;
use crate::services::leaving::Leaving;
use crate::services::notices::Notices;
use crate::services::signup::Signups;
use crate::services::subscribers::Subscribers;
use crate::store::keys::{self, KeyPurpose};
use crate::store::lists::PublicLists;
use crate::store::scrub::Scrubber;
use crate::store::{self, BackgroundWrites};
use crate::tokens::{Keyring, Links, SharedKeyring};

/// The application's two halves: what the HTTP handlers share, and what the delivery workers
/// need. They share the database pool, the keys and the wake-ups, nothing else.
pub struct Parts {
    pub state: AppState,
    pub delivery: Arc<delivery::Context>,
}

/// Opens the database `DATABASE_URL` names and applies pending migrations. A database that
/// cannot be opened is one line that names the setting (without its password).
pub async fn open_database(config: &Config) -> anyhow::Result<store::Db> {
    let url = config.database_url.expose();
    let db = store::connect(url).await.map_err(|e| {
        let shown = match url::Url::parse(url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => url.to_owned(),
        };
        // The driver's message repeats its cause; its last part is the reason.
        let message = e.to_string();
        let reason = message
            .rsplit("error returned from database: ")
            .next()
            .unwrap_or(&message);
        let hint = if url.starts_with("sqlite:") {
            " (does its folder exist, and may this user write there?)"
        } else {
            ""
        };
        anyhow::anyhow!("DATABASE_URL {shown} cannot be opened: {reason}{hint}")
    })?;
    store::migrate(&db).await?;
    Ok(db)
}

/// Connects, migrates, loads (or creates) the server's keys, and builds both halves.
pub async fn build_parts(config: Config) -> anyhow::Result<Parts> {
    let db = open_database(&config).await?;
    if let Some(first) = &config.default_list
        && store::lists::create_if_none(&db, &first.slug, &first.name).await?
    {
        tracing::info!(
            list = first.slug.as_str(),
            "created the first list (DEFAULT_LIST)"
        );
    }
    let token_keys: Vec<(String, String)> = match &config.token_keys {
        Some(keys) => keys
            .iter()
            .map(|(k, s)| (k.clone(), s.expose().to_owned()))
            .collect(),
        None => keys::load_or_create(&db, KeyPurpose::Token).await?,
    };
    let address_key = match &config.address_hash_key {
        Some(k) => k.expose().to_owned(),
        None => {
            keys::load_or_create(&db, KeyPurpose::AddressHmac)
                .await?
                .remove(0)
                .1
        }
    };
    let retired = match &config.token_keys {
        Some(_) => Vec::new(),
        None => keys::retired(&db, KeyPurpose::Token).await?,
    };
    let keyring = SharedKeyring::new(Keyring::new(&token_keys).with_retired(retired));
    let links = Links::new(keyring.clone(), config.public_url.clone());
    let address_hasher = AddressHasher::new(&address_key);
    let wakeups = Arc::new(Wakeups::default());
    let scrubber =
        Arc::new(Scrubber::connect(&db, config.database_url.expose(), config.retention.compaction).await?);
    let relay = Arc::new(delivery::Relay::new(&config.delivery));
    let delivery = Arc::new(delivery::Context {
        db: db.clone(),
        stamp: Stamp::new(&config),
        transport: Transport::from_config(&config).map_err(anyhow::Error::msg)?,
        links: links.clone(),
        address_hasher: address_hasher.clone(),
        cfg: config.delivery.clone(),
        identity: config.identity.clone(),
        confirm_ttl: config.signup.confirm_ttl,
        background_writes: BackgroundWrites::for_db(&db),
        wakeups: wakeups.clone(),
        relay: relay.clone(),
    });
    let state = Arc::new(App {
        tokens: TokenVerifier::new(keyring, config.token_keys.is_none()),
        links,
        limits: Limits::new(&config.rate_limits),
        public_lists: PublicLists::default(),
        signup: Signups::new(
            db.clone(),
            address_hasher.clone(),
            config.signup.clone(),
            wakeups.clone(),
        ),
        leaving: Leaving {
            db: db.clone(),
            address_hasher: address_hasher.clone(),
            identity: config.identity.clone(),
            wakeups: wakeups.clone(),
            scrubber: scrubber.clone(),
            address_changes_per_day: config.signup.confirmations_per_day,
        },
        subscribers: Subscribers {
            db: db.clone(),
            address_hasher: address_hasher.clone(),
            signup: config.signup.clone(),
            wakeups: wakeups.clone(),
        },
        notices: Notices {
            db: db.clone(),
            wakeups: wakeups.clone(),
        },
        campaigns: Campaigns {
            db: db.clone(),
            sender_domains: config.sender_domains().into_iter().map(str::to_owned).collect(),
            wakeups: wakeups.clone(),
        },
        address_hasher,
        scrubber,
        relay,
        db,
        config,
    });
    Ok(Parts { state, delivery })
}

/// What the HTTP handlers share (the command line uses it to run services).
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    Ok(build_parts(config).await?.state)
}

/// The whole HTTP surface with its middleware, outermost first.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.config.request_timeout;
    // Every route has a request timeout and a body limit, except the streamed import, which has
    // its own.
    let routes = Router::new()
        .merge(crate::web::public_routes(state.clone()))
        .merge(crate::api::document_routes(state.clone()))
        .merge(crate::api::routes(state.clone()))
        .merge(crate::admin::routes(state.clone()))
        .fallback(|| async { crate::edge::AppError::not_found() })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .merge(crate::api::long_running_routes(state.clone()));

    let security_headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Pages reached through a token must not leak it in a Referer (TK-8).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(&state.config),
        ));

    routes
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                // Spans name the route pattern, never the concrete path: paths carry tokens.
                // Each request ends with one line in its span: status and latency.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
                            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                            tracing::info_span!("http", method = %req.method(), route = route.as_deref().unwrap_or("-"), request_id = %id)
                        })
                        .on_response(
                            DefaultOnResponse::new()
                                .level(tracing::Level::INFO)
                                .latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(security_headers)
                .layer(middleware::from_fn_with_state(state.clone(), crate::edge::error::render_errors))
                // Innermost, so it sees the matched route; its 405 and 404 are rendered like any
                // error.
                .layer(middleware::from_fn(crate::api::only_documented_methods)),
        )
        // Outermost, so it counts every answer, a caught panic's too.
        .layer(tower::util::option_layer(
            state.config.metrics_addr.map(|_| middleware::from_fn(metrics::count_request)),
        ))
        .with_state(state)
}

/// Nothing is loaded from elsewhere but the logo the operator chose (`BRAND_LOGO_URL`).
fn content_security_policy(config: &Config) -> HeaderValue {
    let img_src = match &config.brand.logo_url {
        Some(url) => format!("'self' {}", url.origin().ascii_serialization()),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src {img_src}; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    // An origin is ASCII without spaces or controls: always a valid header value.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

pub struct Application {
    listener: TcpListener,
    /// `METRICS_ADDR`'s listener and the recorder it renders, when metrics are on.
    metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    state: AppState,
    delivery: Arc<delivery::Context>,
}

impl Application {
    /// Builds the state and binds `LISTEN_ADDR` (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen_addr))?;
        let metrics = match config.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("METRICS_ADDR: cannot listen on {addr}: {e}"))?;
                Some((listener, metrics::recorder()?))
            }
            None => None,
        };
        let Parts { state, delivery } = build_parts(config).await?;
        Ok(Self {
            listener,
            metrics,
            state,
            delivery,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `GET /metrics` is served, when `METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub fn delivery(&self) -> Arc<delivery::Context> {
        self.delivery.clone()
    }

    /// Says in a few plain lines where the service is and where its data and mail go.
    fn announce(&self) {
        let config = &self.state.config;
        let database = match config.database_url.expose() {
            url if url.starts_with("sqlite:") => url.to_owned(),
            _ => "PostgreSQL".to_owned(),
        };
        let mail = match &config.mail_transport {
            crate::config::MailTransportConfig::File(dir) => {
                format!("written as .eml files to {}", dir.display())
            }
            crate::config::MailTransportConfig::Smtp { host, port, .. } => {
                format!("sent to the relay {host}:{port}")
            }
        };
        tracing::info!(addr = %self.local_addr(), "listening on http://{}", self.local_addr());
        tracing::info!("signup form: {}", self.state.links.page("subscribe"));
        tracing::info!("database: {database}");
        tracing::info!("mail: {mail}");
        if let Some(addr) = self.metrics_addr() {
            tracing::info!("metrics: http://{addr}/metrics");
        }
    }

    /// Serves HTTP and runs the delivery worker until `shutdown` resolves; then stops taking
    /// connections, lets in-flight requests finish, and lets the worker finish the sends in
    /// progress and hand back the rows it had not started.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(delivery::run(self.delivery.clone(), stop_rx.clone()));
        let housekeeping = tokio::spawn(housekeeping(self.state.clone(), stop_rx.clone()));
        let scrubber = self.state.scrubber.clone();
        let scrubs = tokio::spawn({
            let stop = stop_rx.clone();
            async move { scrubber.run(stop).await }
        });
        let retention = tokio::spawn(run_retention(self.state.clone(), stop_rx.clone()));
        self.announce();
        let metrics = self.metrics.map(|(listener, handle)| {
            let upkeep = tokio::spawn(metrics::upkeep(handle.clone(), stop_rx.clone()));
            let mut stop = stop_rx.clone();
            let server = axum::serve(listener, metrics::router(handle, self.state.db.clone()))
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                });
            (upkeep, tokio::spawn(server.into_future()))
        });
        let limits = serve::ServerLimits {
            header_read_timeout: self.state.config.header_read_timeout,
            max_connections: self.state.config.max_connections,
        };
        // The workers stop with the listener, not after the last request: a rolling restart
        // gets their unsent rows back at once.
        serve::serve(self.listener, router(self.state.clone()), limits, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests and sends in flight, handing back the rest");
            let _ = stop_tx.send(true);
        })
        .await;
        let _ = worker.await;
        let _ = housekeeping.await;
        let _ = retention.await;
        let _ = scrubs.await;
        if let Some((upkeep, server)) = metrics {
            let _ = upkeep.await;
            let _ = server.await;
        }
        Ok(())
    }
}

/// Runs the retention job now and then every `RETENTION_INTERVAL_SECONDS`.
async fn run_retention(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match store::retention::run(
            &state.db,
            &state.config.retention,
            time::OffsetDateTime::now_utc(),
            store::retention::Mode::Apply,
        )
        .await
        {
            Ok(report) => {
                if report.deleted_anything() {
                    state.scrubber.request();
                }
                tracing::info!(?report, "retention job done")
            }
            Err(e) => tracing::warn!(error = %e, "retention job failed; will try again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.config.retention.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Housekeeping: forgets idle rate-limit buckets, and rereads the link-signing keys so that a
/// key rotated in or retired elsewhere takes effect here too.
async fn housekeeping(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut pruned = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::edge::KEY_REFRESH_EVERY) => {
                state.tokens.reload(&state.db).await;
                if pruned.elapsed() >= Duration::from_secs(60) {
                    state.limits.prune();
                    pruned = tokio::time::Instant::now();
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
