//! The aosctl library: the client of aosd's API (also used by tests and benchmarks), reading
//! manifests from files, directories or stdin, and printing resources the way kubectl does.

pub mod allocation;
pub mod client;
pub mod describe;
pub mod files;
pub mod human;
pub mod inspect;
pub mod merge;
pub mod pack;
pub mod print;
pub mod push;
