//! Integration tests: the real app on port 0 with a fresh data folder per test, or the real
//! binary for the CLI and crash tests.

mod admin;
mod architecture;
mod auth;
mod billing;
mod browser;
mod bus;
mod cli;
mod conventions;
mod crash;
mod credits;
mod features;
mod fuzz;
mod generation;
mod health;
mod helpdesk;
mod helpers;
mod hostile;
mod multinode;
mod paypal;
mod profile;
mod sessions;
mod templates;
mod users;
mod workspace;
