//! Actors of CreativeFlow Core. Each user's credit account is one [`CreditAccount`] actor that
//! applies money movements one at a time: no races and no database locks, because nothing else
//! ever changes a balance. The [`AccountRegistry`] starts them on demand and lets idle ones go.
#![forbid(unsafe_code)]

//!
//! Modules depend one way: `registry` ← `account`; `workspace_reads` ← `lifecycle` ←
//! `workspace`; `account` + `workspace` + `lifecycle` ← `generation` ← `broker`.

mod account;
pub mod broker;
pub mod generation;
pub mod helpdesk;
pub mod histogram;
pub mod lifecycle;
mod registry;
pub mod workspace;
pub mod workspace_reads;

pub use account::{AccountError, AccountRegistry, Apply, CreditAccount, IdempotencyKey, Outcome};
pub use registry::{Keyed, Registry, RegistryOptions, MAILBOX_CAPACITY};
