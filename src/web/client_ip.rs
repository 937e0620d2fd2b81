//! The client's IP: the TCP peer, or — only with `TRUST_PROXY_HEADERS` — the last address in
//! `X-Forwarded-For`, which is the one our own proxy appended (earlier entries are whatever
//! the client chose to send).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};

pub fn client_ip(req: &Request, trust_proxy_headers: bool) -> Option<IpAddr> {
    if trust_proxy_headers
        && let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}
