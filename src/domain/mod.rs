//! Domain types that exist only in valid form ("parse, don't validate"). Handlers turn raw
//! input into these at the edge; nothing further in holds a raw string from a request.

mod address_hash;
mod email_address;
mod field_error;
mod list_slug;
mod text;

pub use address_hash::{AddressHash, AddressHasher};
pub use email_address::{EmailAddress, EmailAddressError};
pub use field_error::FieldError;
pub use list_slug::{ListSlug, ListSlugError};
pub use text::{DisplayName, HeaderText, TextError};
