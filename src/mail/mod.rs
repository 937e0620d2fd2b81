//! Outgoing mail: compose -> stamp -> DKIM-sign -> transport.
//!
//! Callers build a [`ComposedMessage`] (content, recipient, subject, kind of mail). Only
//! [`Stamp::stamp`] turns it into a [`StampedMessage`] — sender identity, Message-ID, Date,
//! list headers, the footer in both parts, the DKIM signature — and [`Transport::send`] accepts
//! nothing else, so an unstamped message cannot be sent.

mod body;
pub mod content;
pub mod dkim;
mod message;
mod relay;
mod stamp;
mod transport;

pub use message::{ComposedMessage, ListHeaders, MailClass};
pub use stamp::{Stamp, StampError, StampedMessage};
pub use transport::{SendError, Transport, Turn};
