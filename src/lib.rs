//! letterhead: a newsletter service that keeps the privacy policy's promises.
//!
//! Data flows one way: request -> domain types -> store -> outbox -> delivery -> mail -> SMTP.

pub mod address_hash;
pub mod api;
pub mod app;
pub mod campaigns;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod group;
pub mod leaving;
pub mod links;
pub mod mail;
pub mod notices;
pub mod retention;
pub mod signup;
pub mod store;
pub mod subscribers;
pub mod tokens;
pub mod web;

/// mimalloc instead of glibc's malloc: a request or a message allocates many short-lived small
/// buffers on two runtime threads, where glibc's arenas took a fifth of the process's CPU
/// (`_int_malloc`, `malloc_consolidate`, `_int_free` under the signup benchmark). Declared here
/// so that the binary, the tests and the benchmarks all run on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
