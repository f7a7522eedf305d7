//! Payments (SPEC §8): Stripe and PayPal webhooks, invoices, subscriptions.
//!
//! Every event is verified over the raw body, then applied at most once: its id is recorded in
//! the same atomic write as its effect (credits through the user's account actor, invoice with
//! its gapless number, subscription state). Events are applied one at a time, across every node
//! on one database too (webhook volume is small; one at a time keeps invoice numbering and
//! subscription ordering simple and spares the nodes from meeting on the invoice counter), and
//! every write is also conditioned on what it read, so even a node that lost the lock with its
//! connection could not double-apply.

pub mod desk;
pub mod paypal;
pub mod stripe;
