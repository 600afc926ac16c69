//! How an object is kept on disk: a version byte, the first 8 bytes of the SHA-256 of the JSON,
//! then the JSON. A flipped bit anywhere (flash wears out) or a record rewritten by hand fails
//! the checksum; a record under a key that is not its own `kind/name` is refused too. Files of
//! the first format (bare JSON) are read and rewritten in this one at open.

use aos_api::DynObject;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const SUM: usize = 8;

/// Why a stored record cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("its checksum does not match its content")]
    Checksum,
    #[error("it is too short to be a record")]
    Truncated,
    #[error("it has an unknown format {0}")]
    Format(u8),
    #[error("it is not a resource: {0}")]
    Json(String),
    #[error("it names {found:?}, not its key")]
    WrongKey { found: String },
}

fn sum(json: &[u8]) -> [u8; SUM] {
    let d = Sha256::digest(json);
    let mut out = [0u8; SUM];
    out.copy_from_slice(&d[..SUM]);
    out
}

/// The bytes kept for `json`.
pub fn seal(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + SUM + json.len());
    out.push(VERSION);
    out.extend_from_slice(&sum(json));
    out.extend_from_slice(json);
    out
}

/// The JSON of a kept record, checked; `legacy` is set for a record of the first format.
pub fn open(bytes: &[u8]) -> Result<(&[u8], bool), Damage> {
    match bytes.first() {
        None => Err(Damage::Truncated),
        Some(b'{') => Ok((bytes, true)),
        Some(&VERSION) => {
            if bytes.len() < 1 + SUM {
                return Err(Damage::Truncated);
            }
            let (want, json) = bytes[1..].split_at(SUM);
            if sum(json) != want {
                return Err(Damage::Checksum);
            }
            Ok((json, false))
        }
        Some(&v) => Err(Damage::Format(v)),
    }
}

/// The object kept under `key`, checked for damage; `legacy` as for [`open`].
pub fn object(key: &str, bytes: &[u8]) -> Result<(DynObject, bool), Damage> {
    let (json, legacy) = open(bytes)?;
    let obj: DynObject = serde_json::from_slice(json).map_err(|e| Damage::Json(e.to_string()))?;
    let found = crate::plan::key(&obj.kind, &obj.metadata.name);
    if found != key {
        return Err(Damage::WrongKey { found });
    }
    Ok((obj, legacy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str) -> Vec<u8> {
        format!(r#"{{"apiVersion":"aos.edge/v1alpha1","kind":"Item","metadata":{{"name":"{name}"}},"spec":{{}}}}"#)
            .into_bytes()
    }

    #[test]
    fn a_sealed_record_opens_and_any_flipped_bit_is_caught() {
        let sealed = seal(&item("a"));
        assert_eq!(object("Item/a", &sealed).unwrap().0.metadata.name, "a");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                assert!(object("Item/a", &bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_record_under_another_key_or_cut_short_is_damaged() {
        assert_eq!(
            object("Item/pa", &seal(&item("zz"))).unwrap_err(),
            Damage::WrongKey {
                found: "Item/zz".into()
            }
        );
        assert_eq!(object("Item/a", &[1, 2, 3]).unwrap_err(), Damage::Truncated);
        assert_eq!(object("Item/a", &[]).unwrap_err(), Damage::Truncated);
        assert_eq!(object("Item/a", &[9, 0]).unwrap_err(), Damage::Format(9));
    }

    #[test]
    fn a_bare_json_record_of_the_first_format_is_read_as_legacy() {
        let (o, legacy) = object("Item/a", &item("a")).unwrap();
        assert!(legacy);
        assert_eq!(o.metadata.name, "a");
    }
}
