//! Actors of CreativeFlow Core. Each user's credit account is one [`CreditAccount`] actor that
//! applies money movements one at a time: no races and no database locks, because nothing else
//! ever changes a balance. The [`AccountRegistry`] starts them on demand and lets idle ones go.
#![forbid(unsafe_code)]

mod account;
pub mod broker;
pub mod generation;
mod registry;
pub mod workspace;

pub use account::{AccountError, Apply, CreditAccount, IdempotencyKey, Outcome, MAILBOX_CAPACITY};
pub use registry::{AccountRegistry, Keyed, Registry, RegistryOptions};
