//! sea-orm entities, one per table. Queries live beside them in `store/`, not in handlers.

pub mod address_change;
pub mod api_key;
pub mod breach_notice;
pub mod campaign;
pub mod consent_event;
pub mod list;
pub mod outbox;
pub mod policy_version;
pub mod signing_key;
pub mod subscriber;
pub mod subscription;
pub mod suppression;
pub mod test_recipient;
