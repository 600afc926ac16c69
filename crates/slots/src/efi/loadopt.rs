//! UEFI load options (`Boot####` variables) as the specification lays them out: attributes, the
//! length of the device path list, a UCS-2 description, the device path (here a hard-drive node
//! naming a GPT partition, a file path, the end node) and optional data. Encoded and decoded
//! byte for byte, so that what aosd writes reads back in `efibootmgr` and firmware menus.

use crate::SlotsError;

/// `LOAD_OPTION_ACTIVE`: the firmware may boot the entry.
pub const ACTIVE: u32 = 0x1;

const MEDIA: u8 = 0x04;
const MEDIA_HARD_DRIVE: u8 = 0x01;
const MEDIA_FILE_PATH: u8 = 0x04;
const END: u8 = 0x7f;
const END_ENTIRE: u8 = 0xff;
/// `MBRType` of a GPT disk, and `SignatureType` of a GUID signature.
const GPT: u8 = 0x02;
const GUID_SIGNATURE: u8 = 0x02;

/// A partition of a GPT disk, as a hard-drive device path node names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardDrive {
    /// The partition's number (1 for the first entry).
    pub number: u32,
    /// Its first logical block.
    pub start: u64,
    /// Its size in logical blocks.
    pub size: u64,
    /// The partition's unique GUID.
    pub guid: uuid::Uuid,
}

/// One node of a device path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A partition.
    HardDrive(HardDrive),
    /// A file on it, with backslashes (`\EFI\BOOT\BOOTX64.EFI`).
    FilePath(String),
    /// Any other node, kept as it came.
    Other {
        /// The node's type.
        kind: u8,
        /// Its subtype.
        sub: u8,
        /// Its data (after the 4 header bytes).
        data: Vec<u8>,
    },
}

/// An `EFI_LOAD_OPTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOption {
    /// `ACTIVE` and friends.
    pub attributes: u32,
    /// What the firmware's boot menu shows.
    pub description: String,
    /// The device path, without its end node.
    pub path: Vec<Node>,
    /// Data handed to the loaded image.
    pub optional_data: Vec<u8>,
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn node(kind: u8, sub: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, sub];
    v.extend_from_slice(&((data.len() + 4) as u16).to_le_bytes());
    v.extend_from_slice(data);
    v
}

impl Node {
    fn encode(&self) -> Vec<u8> {
        match self {
            Node::HardDrive(h) => {
                let mut d = Vec::with_capacity(38);
                d.extend_from_slice(&h.number.to_le_bytes());
                d.extend_from_slice(&h.start.to_le_bytes());
                d.extend_from_slice(&h.size.to_le_bytes());
                d.extend_from_slice(&h.guid.to_bytes_le());
                d.push(GPT);
                d.push(GUID_SIGNATURE);
                node(MEDIA, MEDIA_HARD_DRIVE, &d)
            }
            Node::FilePath(p) => node(MEDIA, MEDIA_FILE_PATH, &ucs2(p)),
            Node::Other { kind, sub, data } => node(*kind, *sub, data),
        }
    }
}

fn bad(why: impl Into<String>) -> SlotsError {
    SlotsError::LoadOption(why.into())
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, SlotsError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| bad("truncated"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, SlotsError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("truncated"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, SlotsError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad("truncated"))
}

/// A null-terminated UCS-2 string at the start of `b`, and the bytes it took.
fn read_ucs2(b: &[u8]) -> Result<(String, usize), SlotsError> {
    let mut units = Vec::new();
    let mut at = 0;
    loop {
        let u = u16_at(b, at).map_err(|_| bad("a string without its terminating null"))?;
        at += 2;
        if u == 0 {
            break;
        }
        units.push(u);
    }
    let s = String::from_utf16(&units).map_err(|_| bad("a string that is not UTF-16"))?;
    Ok((s, at))
}

fn decode_node(kind: u8, sub: u8, data: &[u8]) -> Result<Node, SlotsError> {
    Ok(match (kind, sub) {
        (MEDIA, MEDIA_HARD_DRIVE)
            if data.len() == 38 && data[36] == GPT && data[37] == GUID_SIGNATURE =>
        {
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&data[20..36]);
            Node::HardDrive(HardDrive {
                number: u32_at(data, 0)?,
                start: u64_at(data, 4)?,
                size: u64_at(data, 12)?,
                guid: uuid::Uuid::from_bytes_le(guid),
            })
        }
        (MEDIA, MEDIA_FILE_PATH) => Node::FilePath(read_ucs2(data)?.0),
        _ => Node::Other {
            kind,
            sub,
            data: data.to_vec(),
        },
    })
}

impl LoadOption {
    /// An active entry booting `loader` from the partition `disk`.
    pub fn new(description: &str, disk: HardDrive, loader: &str) -> Self {
        LoadOption {
            attributes: ACTIVE,
            description: description.into(),
            path: vec![Node::HardDrive(disk), Node::FilePath(loader.into())],
            optional_data: Vec::new(),
        }
    }

    /// The partition the entry boots from, if it names one.
    pub fn hard_drive(&self) -> Option<&HardDrive> {
        self.path.iter().find_map(|n| match n {
            Node::HardDrive(h) => Some(h),
            _ => None,
        })
    }

    /// The variable's data.
    pub fn encode(&self) -> Vec<u8> {
        let mut path: Vec<u8> = self.path.iter().flat_map(Node::encode).collect();
        path.extend_from_slice(&node(END, END_ENTIRE, &[]));
        let mut v = Vec::new();
        v.extend_from_slice(&self.attributes.to_le_bytes());
        v.extend_from_slice(&(path.len() as u16).to_le_bytes());
        v.extend_from_slice(&ucs2(&self.description));
        v.extend_from_slice(&path);
        v.extend_from_slice(&self.optional_data);
        v
    }

    /// Reads a variable's data.
    pub fn decode(b: &[u8]) -> Result<Self, SlotsError> {
        let attributes = u32_at(b, 0)?;
        let path_len = u16_at(b, 4)? as usize;
        let (description, used) = read_ucs2(b.get(6..).unwrap_or_default())?;
        let start = 6 + used;
        let list = b
            .get(start..start + path_len)
            .ok_or_else(|| bad("the device path runs past the variable"))?;
        let mut path = Vec::new();
        let mut at = 0;
        loop {
            let (kind, sub) = match list.get(at..at + 2) {
                Some([k, s]) => (*k, *s),
                _ => return Err(bad("a device path without its end node")),
            };
            let len = u16_at(list, at + 2)? as usize;
            if len < 4 || at + len > list.len() {
                return Err(bad(format!("a device path node of length {len}")));
            }
            if kind == END && sub == END_ENTIRE {
                break;
            }
            path.push(decode_node(kind, sub, &list[at + 4..at + len])?);
            at += len;
        }
        Ok(LoadOption {
            attributes,
            description,
            path,
            optional_data: b[start + path_len..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests;
