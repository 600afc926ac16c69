//! The config's own checks: the documented defaults, refusals by name, duration forms.

use super::*;

#[test]
fn the_documented_defaults_equal_the_built_in_ones() {
    let text = include_str!("../../../../deploy/aosd.toml");
    let documented = Config::parse(text).unwrap();
    assert_eq!(documented, Config::default());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let e = format!(
        "{:#}",
        Config::parse("[api]\nsokcet = \"/x\"\n").unwrap_err()
    );
    assert!(e.contains("sokcet"), "{e}");
    let e = format!("{:#}", Config::parse("version = 2\n").unwrap_err());
    assert!(e.contains("version"), "{e}");
    let e = format!(
        "{:#}",
        Config::parse("[api]\nsocket_mode = \"rw\"\n").unwrap_err()
    );
    assert!(e.contains("socket_mode"), "{e}");
    let e = format!(
        "{:#}",
        Config::parse("[controllers]\nresync = \"soon\"\n").unwrap_err()
    );
    assert!(e.contains("invalid duration"), "{e}");
    let e = format!(
        "{:#}",
        Config::parse("[runtimes.container]\nshim = \" \"\n").unwrap_err()
    );
    assert!(e.contains("runtimes.container.shim"), "{e}");
}

#[test]
fn durations_read_every_form() {
    let c = Config::parse("[controllers]\nresync = \"PT1M\"\nbackoff_base = \"500ms\"\n").unwrap();
    assert_eq!(c.controllers.resync.0.as_secs(), 60);
    assert_eq!(c.controllers.backoff_base.0.as_millis(), 500);
}
