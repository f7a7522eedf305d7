//! CreativeFlow Core: HTTP API, configuration and wiring of the `creativeflow` binary.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod billing;
pub mod commands;
pub mod config;
pub mod control;
pub mod domain;
pub mod error;
pub mod extract;
pub mod mailer;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod paypal_verify;
pub mod ratelimit;
pub mod request_id;
pub mod routes;
pub mod services;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ticket_hub;
pub mod views;
