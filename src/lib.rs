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
