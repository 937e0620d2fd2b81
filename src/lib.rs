//! letterhead: a newsletter service that keeps the privacy policy's promises.
//!
//! The modules are layers, and imports only point down (`tests/architecture.rs` keeps it so):
//!
//! - wiring: [`app`] (and the `letterhead` binary);
//! - the HTTP edges: [`web`] for people, [`api`] for marketing, [`admin`] for the operator's
//!   dashboard, and [`edge`], what they share;
//! - [`services`]: one module per feature, taking a store handle and its own settings;
//! - [`delivery`]: the workers that drain the outbox and campaign audiences;
//! - [`store`] (the only code that speaks SQL) and [`mail`] (compose, stamp, sign, transport);
//! - [`domain`], [`tokens`] and [`config`]: types that exist only in valid form.
//!
//! Data flows one way: request -> domain types -> store -> outbox -> delivery -> mail -> SMTP.

pub mod admin;
pub mod api;
pub mod app;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod edge;
pub mod mail;
pub mod services;
pub mod store;
pub mod tokens;
pub mod web;

/// mimalloc instead of glibc's malloc: a request or a message allocates many short-lived small
/// buffers on two runtime threads, where glibc's arenas took a fifth of the process's CPU under
/// the signup benchmark. Declared here so that the binary, the tests and the benchmarks all run
/// on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
