//! Parsing an image reference (`[host[:port]/]path[:tag][@digest]`) into `oci-client`'s
//! `Reference`, by the distribution grammar and Docker Hub's defaults, as `Reference::from_str`
//! does, but without its regular expression: compiled once per process it keeps ~7 MB of heap
//! for aosd's whole life (measured with heaptrack), a tenth of a small device's agent budget.
//! The differential test below holds both to the same answers.

use oci_client::Reference;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Parses `s` as `Reference::from_str` would; the error says what is wrong.
pub fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("the reference is empty".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(check_digest(d)?)),
        None => (s, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(format!("invalid tag {t:?}"));
        }
    }
    if !valid_name(name) {
        return Err(format!("invalid repository name {name:?}"));
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(format!("the repository name is longer than {NAME_MAX}"));
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t.into(), d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").into()),
    })
}

fn check_digest(d: &str) -> Result<String, String> {
    let bad = || format!("invalid digest {d:?}");
    let (algo, hex) = d.split_once(':').ok_or_else(bad)?;
    // algorithm: [A-Za-z][A-Za-z0-9]* joined by one of -_+.
    let algo_ok = !algo.is_empty()
        && algo.split(['-', '_', '+', '.']).all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm in {d:?}")),
    };
    if hex.len() != want {
        return Err(format!("invalid digest length in {d:?}"));
    }
    Ok(d.to_string())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    t.len() <= TAG_MAX
        && t.chars().next().is_some_and(word)
        && t.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// Path components, the first of several possibly a host (`a.b-c.d[:port]`).
fn valid_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let paths_from = |k: usize| parts[k..].iter().all(|p| path_component(p));
    paths_from(0) || (parts.len() > 1 && host(parts[0]) && paths_from(1))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: runs of lowercase letters and digits joined by
/// ".", "_", "__" or any number of "-".
fn path_component(p: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut runs: Vec<(bool, String)> = Vec::new();
    for c in p.chars() {
        match runs.last_mut() {
            Some((a, run)) if *a == alnum(c) => run.push(c),
            _ => runs.push((alnum(c), c.to_string())),
        }
    }
    runs.first().is_some_and(|r| r.0)
        && runs.last().is_some_and(|r| r.0)
        && runs.iter().filter(|r| !r.0).all(|(_, sep)| {
            matches!(sep.as_str(), "." | "_" | "__") || sep.chars().all(|c| c == '-')
        })
}

/// `label(.label)*(:port)?`, each label `[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn host(h: &str) -> bool {
    let (name, port) = match h.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    let label = |l: &str| {
        l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && l.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    name.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Docker Hub's defaults: no host means docker.io, whose one-part names are under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB.into();
    }
    if domain == DOCKER_HUB && !rest.contains('/') {
        rest = format!("library/{rest}");
    }
    (domain, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_reference_parses_as_oci_clients_own_parser_parses_it() {
        let long = format!("{}/x", "a".repeat(260));
        let long_tag = format!("r:{}", "t".repeat(129));
        let mut cases = vec![
            "busybox".to_string(),
            "busybox:1.36".into(),
            "library/busybox".into(),
            "index.docker.io/library/busybox:latest".into(),
            "docker.io/me/app:v1".into(),
            "localhost/app".into(),
            "localhost:5000/app:1".into(),
            "127.0.0.1:5000/bench/big:1".into(),
            "ghcr.io/org/team/app:2024.01_rc-1".into(),
            "My.Registry.example:443/a__b/c-d/e.f/g---h:Tag_1".into(),
            format!("reg.example/app@sha256:{HEX}"),
            format!("reg.example/app:1@sha256:{HEX}"),
            format!("app@sha512:{HEX}{HEX}"),
            long,
            long_tag,
            // Refused, each for its own reason.
            "".into(),
            "UPPER/case".into(),
            "upper/Case".into(),
            "reg.example/App".into(),
            "a//b".into(),
            "a/b/".into(),
            "-a/b".into(),
            "a_-b".into(),
            "a___b".into(),
            "a..b".into(),
            "reg.example:/a".into(),
            "reg.example:x/a".into(),
            "-reg.example/a".into(),
            "reg-.example/a".into(),
            "a:".into(),
            "a:-t".into(),
            "a:t!".into(),
            "a@sha256:abc".into(),
            format!("a@md5:{HEX}"),
            format!("a@sha256:{HEX}00"),
            format!("a@sha256{HEX}"),
            format!("a@-sha:{HEX}"),
        ];
        cases.push("a/b:c:d".into());
        for s in &cases {
            let ours = parse(s).map(|r| r.whole()).ok();
            let theirs = s.parse::<Reference>().map(|r| r.whole()).ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn a_refused_reference_says_which_part_is_wrong() {
        assert!(parse("a:t!").unwrap_err().contains("tag"));
        assert!(parse("upper/Case").unwrap_err().contains("repository name"));
        assert!(parse(&format!("a@md5:{HEX}"))
            .unwrap_err()
            .contains("algorithm"));
    }
}
