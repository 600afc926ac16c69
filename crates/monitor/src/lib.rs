//! Alerts of aosd: [`rule`] processes one alert rule over a series of samples; [`alerts`]
//! applies the node's and the instances' rules to their usage; [`monitor`] follows that usage
//! in the store and records what the rules say as Events.

pub mod alerts;
pub mod monitor;
pub mod rule;
