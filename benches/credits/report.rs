//! How the credits bench words its report.

use crate::common::*;
use crate::config::Config;

/// Run lines as this bench has always printed them.
pub const RUN_STYLE: RunStyle = RunStyle {
    elapsed_decimals: 1,
    grouped_rate: false,
    refused_label: "refused",
};

pub fn print_summary(summary: &Summary, cfg: &Config) {
    summary.print(
        "credits",
        ". Store: redb, default `StoreOptions`; durable commit per writer batch.",
        &cfg.skip,
    );
}
