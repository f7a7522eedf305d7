//! Domain operations: one function per thing a user or admin can do. No HTTP types here; the
//! handlers parse, call one of these, and map the error.

pub mod chain;
pub mod credits;
pub mod features;
pub mod generation;
pub mod helpdesk;
pub mod login;
pub mod profile;
pub mod rollups;
pub mod users;
pub mod workspace;
