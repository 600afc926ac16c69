//! Load options against a vector laid out by hand from the UEFI specification (10.3.1 and
//! 3.1.3), and what malformed variables do.

use super::*;

fn guid() -> uuid::Uuid {
    uuid::Uuid::parse_str("01234567-89ab-cdef-0123-456789abcdef").unwrap()
}

fn option() -> LoadOption {
    LoadOption::new(
        "A",
        HardDrive {
            number: 1,
            start: 2048,
            size: 4096,
            guid: guid(),
        },
        r"\EFI\BOOT\BOOTX64.EFI",
    )
}

fn vector() -> Vec<u8> {
    let mut v = vec![0x01, 0, 0, 0, 0x5e, 0x00]; // attributes ACTIVE, FilePathListLength 94
    v.extend([0x41, 0, 0, 0]); // "A\0"
    v.extend([0x04, 0x01, 0x2a, 0x00]); // media / hard drive, 42 bytes
    v.extend([1, 0, 0, 0]); // partition 1
    v.extend(2048u64.to_le_bytes());
    v.extend(4096u64.to_le_bytes());
    v.extend([
        0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ]); // the GUID, its first three fields little-endian
    v.extend([0x02, 0x02]); // GPT, GUID signature
    v.extend([0x04, 0x04, 0x30, 0x00]); // media / file path, 48 bytes
    v.extend(
        r"\EFI\BOOT\BOOTX64.EFI"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    v.extend([0, 0]);
    v.extend([0x7f, 0xff, 0x04, 0x00]); // end of the whole path
    v
}

#[test]
fn a_load_option_encodes_as_the_specification_lays_it_out() {
    assert_eq!(option().encode(), vector());
    assert_eq!(LoadOption::decode(&vector()).unwrap(), option());
    assert_eq!(option().hard_drive().unwrap().start, 2048);
}

#[test]
fn unknown_nodes_and_optional_data_survive_a_round_trip() {
    let mut o = option();
    o.path.insert(
        0,
        Node::Other {
            kind: 0x01,
            sub: 0x01,
            data: vec![0, 2, 0, 0],
        },
    );
    o.optional_data = b"console=ttyS0".to_vec();
    assert_eq!(LoadOption::decode(&o.encode()).unwrap(), o);
}

#[test]
fn malformed_variables_are_errors_not_panics() {
    let v = vector();
    for cut in 0..v.len() {
        assert!(LoadOption::decode(&v[..cut]).is_err(), "cut at {cut}");
    }
    let mut zero_len = v.clone();
    zero_len[12] = 0; // the hard-drive node claims length 0
    zero_len[13] = 0;
    assert!(LoadOption::decode(&zero_len).is_err());
}
