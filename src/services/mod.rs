//! The features, one module each, named as the pages and templates name them. A service takes
//! what it needs (a store handle, the address hasher, its own settings, the delivery wake-ups),
//! never the application state, and answers in its own types; only the edges turn those into
//! status codes, pages and problem bodies.

pub mod campaigns;
pub mod leaving;
pub mod notices;
pub mod signup;
pub mod subscribers;
