//! Who is asking: the client's IP and user agent.
//!
//! The IP is the TCP peer, or — only with `TRUST_PROXY_HEADERS` — the last address in
//! `X-Forwarded-For`, which is the one our own proxy appended (earlier entries are whatever the
//! client chose to send).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, header};

use super::AppState;

pub fn client_ip(headers: &HeaderMap, extensions: &Extensions, trust_proxy_headers: bool) -> Option<IpAddr> {
    if trust_proxy_headers
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(ip);
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// The requester, as far as consent evidence and abuse limits need to know.
#[derive(Debug, Clone)]
pub struct Requester {
    pub ip: Option<IpAddr>,
    /// At most 512 characters, control characters removed.
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for Requester {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = client_ip(
            &parts.headers,
            &parts.extensions,
            state.config.trust_proxy_headers,
        );
        let user_agent = parts.headers.get(header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(512)
                .collect()
        });
        Ok(Requester { ip, user_agent })
    }
}
