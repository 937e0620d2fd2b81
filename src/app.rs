//! The application, wired in one place: state, router and middleware, server, delivery worker,
//! graceful shutdown. `Application::build` takes a checked [`Config`] and nothing else, so tests
//! build exactly what production runs (on port 0, with their own database and SMTP sink).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::address_hash::AddressHasher;
use crate::config::Config;
use crate::mail::{Stamp, Transport};
use crate::signup::SignupWriter;
use crate::store::keys::{self, KeyPurpose};
use crate::store::lists::PublicLists;
use crate::store::{self, Db};
use crate::tokens::{Claims, Keyring, Purpose, TokenError};
use crate::web::rate_limit::{IpLimiter, KeyedLimiter};

pub struct Limits {
    pub public: Arc<IpLimiter>,
    pub signup: Arc<IpLimiter>,
    pub one_click: Arc<IpLimiter>,
    pub api: Arc<KeyedLimiter<i64>>,
}

/// Everything a handler or worker needs, shared behind one `Arc`.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub stamp: Stamp,
    pub transport: Transport,
    /// Swapped when another instance rotated the keys (see [`App::verify_token`]).
    keyring: RwLock<Arc<Keyring>>,
    last_key_reload: Mutex<Option<Instant>>,
    pub address_hasher: AddressHasher,
    /// Poked when this process queues mail, so the worker starts at once instead of polling.
    pub outbox_wakeup: Notify,
    /// Poked when a campaign starts or resumes.
    pub campaign_wakeup: Notify,
    pub limits: Limits,
    /// Writes signups in batches (see [`SignupWriter`]).
    pub signups: SignupWriter,
    /// The lists the signup form offers, cached briefly.
    pub public_lists: PublicLists,
    /// The delivery workers' turns at SQLite's write lock (see [`store::BackgroundWrites`]).
    pub background_writes: store::BackgroundWrites,
}

pub type AppState = Arc<App>;

impl App {
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.read().expect("keyring lock").clone()
    }

    /// Verifies a link token. A key id we do not know may be a key another instance just
    /// rotated in: the keys are reloaded from the database (at most every few seconds) and the
    /// token tried once more.
    pub async fn verify_token(&self, token: &str, purpose: Purpose) -> Result<Claims, TokenError> {
        match self.keyring().verify(token, purpose) {
            Err(TokenError::UnknownKey) if self.config.token_keys.is_none() && self.reload_keys().await => {
                self.keyring().verify(token, purpose)
            }
            other => other,
        }
    }

    async fn reload_keys(&self) -> bool {
        {
            let mut last = self.last_key_reload.lock().expect("reload lock");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match keys::load(&self.db, KeyPurpose::Token).await {
            Ok(k) if !k.is_empty() => {
                *self.keyring.write().expect("keyring lock") = Arc::new(Keyring::new(&k));
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "reloading token keys failed");
                false
            }
        }
    }

    pub fn site(&self) -> templates::pages::SiteIdentity<'_> {
        templates::pages::SiteIdentity {
            org_name: self.config.identity.org_name.as_str(),
            postal_address: &self.config.identity.postal_address,
            contact_email: self.config.identity.contact_email.as_str(),
        }
    }
}

/// Connects, migrates, loads (or creates) the server's keys, and builds the state.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = store::connect(config.database_url.expose()).await?;
    store::migrate(&db).await?;
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
    let transport = Transport::from_config(&config).map_err(anyhow::Error::msg)?;
    let address_hasher = AddressHasher::new(&address_key);
    Ok(Arc::new(App {
        stamp: Stamp::new(&config),
        transport,
        keyring: RwLock::new(Arc::new(Keyring::new(&token_keys))),
        last_key_reload: Mutex::new(None),
        outbox_wakeup: Notify::new(),
        campaign_wakeup: Notify::new(),
        limits: Limits {
            public: KeyedLimiter::per_minute(config.rate_limits.public_per_minute),
            signup: KeyedLimiter::per_minute(config.rate_limits.signup_per_minute),
            one_click: KeyedLimiter::per_minute(config.rate_limits.unsubscribe_per_minute),
            api: KeyedLimiter::per_minute(config.rate_limits.api_per_minute),
        },
        signups: SignupWriter::start(db.clone(), address_hasher.clone(), config.signup.clone()),
        public_lists: PublicLists::default(),
        background_writes: store::BackgroundWrites::for_db(&db),
        address_hasher,
        db,
        config,
    }))
}

/// The whole HTTP surface with its middleware, outermost first.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.config.request_timeout;
    // Every route has a request timeout and a body limit, except the streamed import, which has
    // its own.
    let routes = Router::new()
        .merge(crate::web::public_routes(state.clone()))
        .merge(crate::api::routes(state.clone()))
        .fallback(|| async { crate::web::AppError::not_found() })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .merge(crate::api::long_running_routes(state.clone()));

    let security_headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // Pages reached through a token must not leak it in a Referer (TK-8).
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ));

    routes
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                // Spans name the route pattern, never the concrete path: paths carry tokens.
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), route = route.as_deref().unwrap_or("-"), request_id = %id)
                }))
                .layer(security_headers)
                .layer(middleware::from_fn_with_state(state.clone(), crate::web::error::render_errors))
                // Innermost, so it sees the matched route; its 404 is rendered like any error.
                .layer(middleware::from_fn(crate::api::refuse_undocumented)),
        )
        .with_state(state)
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Builds the state and binds `LISTEN_ADDR` (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen_addr))?;
        let state = build_state(config).await?;
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves HTTP and runs the delivery worker until `shutdown` resolves; then stops taking
    /// connections, lets in-flight requests finish, and lets the worker finish its batch.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(crate::delivery::run(self.state.clone(), stop_rx.clone()));
        let pruner = tokio::spawn(prune_limiters(self.state.clone(), stop_rx.clone()));
        let checkpoints = tokio::spawn(crate::store::checkpoints(self.state.db.clone(), stop_rx.clone()));
        let retention = tokio::spawn(run_retention(self.state.clone(), stop_rx));
        tracing::info!(addr = %self.local_addr(), "listening");
        let app = router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing requests and sends in flight");
            })
            .await?;
        let _ = stop_tx.send(true);
        let _ = worker.await;
        let _ = pruner.await;
        let _ = retention.await;
        let _ = checkpoints.await;
        Ok(())
    }
}

/// Runs the retention job now and then every `RETENTION_INTERVAL_SECONDS`.
async fn run_retention(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match crate::retention::run(
            &state.db,
            &state.config.retention,
            time::OffsetDateTime::now_utc(),
            crate::retention::Mode::Apply,
        )
        .await
        {
            Ok(report) => tracing::info!(?report, "retention job done"),
            Err(e) => tracing::warn!(error = %e, "retention job failed; will try again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.config.retention.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn prune_limiters(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                state.limits.public.prune();
                state.limits.signup.prune();
                state.limits.one_click.prune();
                state.limits.api.prune();
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
