//! The parts of a run, in the order they run.

pub mod big_store;
pub mod deduct;
pub mod memory;
pub mod pgstore;
pub mod postgres;
pub mod startup;
