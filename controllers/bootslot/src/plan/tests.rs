//! The plan's decisions, one situation each.
