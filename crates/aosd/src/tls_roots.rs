//! The TLS roots of aosd's HTTPS clients on a host without a CA store (a minimal device with no
//! `ca-certificates`): there the registry client's libraries would panic while building an HTTP
//! client, so before the runtime starts aosd points `SSL_CERT_FILE` at Mozilla's root set,
//! built in (`webpki-root-certs`) and written under its data directory. A host with a CA store,
//! or an operator who set `SSL_CERT_FILE`/`SSL_CERT_DIR`, is left as it is.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

/// What [`ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Roots {
    /// The operator named the roots in the environment.
    FromEnvironment,
    /// The host's CA store has certificates.
    System,
    /// The host has none: the built-in set, written to this file.
    BuiltIn(PathBuf),
}

/// Makes sure HTTPS clients find root certificates; called before any thread starts (it sets
/// an environment variable).
pub fn ensure(data_dir: &Path) -> std::io::Result<Roots> {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return Ok(Roots::FromEnvironment);
    }
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        return Ok(Roots::System);
    }
    let file = write_built_in(&data_dir.join("tls"))?;
    std::env::set_var("SSL_CERT_FILE", &file);
    Ok(Roots::BuiltIn(file))
}

/// Writes the built-in roots as PEM to `dir/roots.pem` (through a temp file and a rename),
/// unless the file already holds them (every start after the first).
fn write_built_in(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("roots.pem");
    let text = pem(webpki_root_certs::TLS_SERVER_ROOT_CERTS);
    if std::fs::read(&file).is_ok_and(|have| have == text.as_bytes()) {
        return Ok(file);
    }
    let tmp = dir.join("roots.pem.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    out.write_all(text.as_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    Ok(file)
}

/// PEM text of DER certificates.
fn pem(certs: &[rustls_pki_types::CertificateDer<'_>]) -> String {
    let mut s = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        s.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            s.push_str(&String::from_utf8_lossy(line));
            s.push('\n');
        }
        s.push_str("-----END CERTIFICATE-----\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_built_in_roots_are_written_as_pem_that_parses_back_to_the_same_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_built_in(dir.path()).unwrap();
        let back: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(&file)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(back.len() > 100, "{}", back.len());
        assert_eq!(back, webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
    }

    #[test]
    fn a_second_start_keeps_the_roots_file_it_finds_and_mends_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_built_in(dir.path()).unwrap();
        let first = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_built_in(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), first);
        std::fs::write(&file, "torn").unwrap();
        write_built_in(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            pem(webpki_root_certs::TLS_SERVER_ROOT_CERTS)
        );
    }
}
