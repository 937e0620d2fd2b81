//! maud views: every HTML page the service shows and the layouts every email is wrapped in.
//!
//! Views only render what they are given: no database, no configuration lookups. Email
//! layouts always take the footer as an argument, so a message cannot be laid out without it.

pub mod admin;
pub mod api_docs;
pub mod email;
pub mod leaving;
pub mod notices;
pub mod pages;
pub mod signup;

pub use maud::{Markup, PreEscaped, html};
