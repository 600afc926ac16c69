//! EFI variables, as the boot runtime needs them: the `EfiVars` port (variables of the EFI
//! global GUID, read and written whole) with [`EfiDir`], which works on efivarfs and on a plain
//! directory of the same format (the firmware simulator's and the tests'), and the typed boot
//! variables on top of it (`BootCurrent`, `BootNext`, `BootOrder`, `Boot####`).

mod dir;
pub mod loadopt;

pub use dir::EfiDir;
pub use loadopt::{HardDrive, LoadOption, Node};

use crate::SlotsError;

/// The EFI global variable GUID.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Non-volatile, boot service and runtime access: what boot variables carry.
pub const NV_BS_RT: u32 = 0x7;

/// Variables of the EFI global GUID. Every read and write is of a whole variable.
pub trait EfiVars: Send + Sync {
    /// The variable's data (without the attributes); `None` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, SlotsError>;
    /// Writes the variable whole, with `NV_BS_RT`.
    fn set(&self, name: &str, data: &[u8]) -> Result<(), SlotsError>;
    /// Deletes the variable; fine if it does not exist.
    fn delete(&self, name: &str) -> Result<(), SlotsError>;
    /// The names of the variables that exist.
    fn names(&self) -> Result<Vec<String>, SlotsError>;
}

/// `Boot####` of entry `n`.
pub fn boot_entry_name(n: u16) -> String {
    format!("Boot{n:04X}")
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn one_u16(name: &str, b: Option<Vec<u8>>) -> Result<Option<u16>, SlotsError> {
    match b {
        None => Ok(None),
        Some(b) if b.len() == 2 => Ok(Some(u16::from_le_bytes([b[0], b[1]]))),
        Some(b) => Err(SlotsError::Efi(format!(
            "{name} holds {} bytes, not 2",
            b.len()
        ))),
    }
}

/// The boot variables, typed.
pub struct BootVars<'a>(pub &'a dyn EfiVars);

impl BootVars<'_> {
    /// The entry the firmware booted this time.
    pub fn current(&self) -> Result<Option<u16>, SlotsError> {
        one_u16("BootCurrent", self.0.get("BootCurrent")?)
    }

    /// The entry the firmware boots next time only.
    pub fn next(&self) -> Result<Option<u16>, SlotsError> {
        one_u16("BootNext", self.0.get("BootNext")?)
    }

    /// Boots `n` next time only.
    pub fn set_next(&self, n: u16) -> Result<(), SlotsError> {
        self.0.set("BootNext", &n.to_le_bytes())
    }

    /// Forgets `BootNext`.
    pub fn clear_next(&self) -> Result<(), SlotsError> {
        self.0.delete("BootNext")
    }

    /// The order the firmware tries entries in.
    pub fn order(&self) -> Result<Vec<u16>, SlotsError> {
        Ok(self
            .0
            .get("BootOrder")?
            .map(|b| u16s(&b))
            .unwrap_or_default())
    }

    /// Writes the boot order.
    pub fn set_order(&self, order: &[u16]) -> Result<(), SlotsError> {
        let b: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.0.set("BootOrder", &b)
    }

    /// Entry `n`, if it exists.
    pub fn entry(&self, n: u16) -> Result<Option<LoadOption>, SlotsError> {
        self.0
            .get(&boot_entry_name(n))?
            .map(|b| LoadOption::decode(&b))
            .transpose()
    }

    /// Writes entry `n`.
    pub fn set_entry(&self, n: u16, o: &LoadOption) -> Result<(), SlotsError> {
        self.0.set(&boot_entry_name(n), &o.encode())
    }

    /// The numbers of every `Boot####` entry.
    pub fn entries(&self) -> Result<Vec<u16>, SlotsError> {
        let mut v: Vec<u16> = self
            .0
            .names()?
            .iter()
            .filter_map(|n| n.strip_prefix("Boot"))
            .filter(|h| h.len() == 4)
            .filter_map(|h| u16::from_str_radix(h, 16).ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The lowest entry number not in use.
    pub fn free_entry(&self) -> Result<u16, SlotsError> {
        let used = self.entries()?;
        (0..=u16::MAX)
            .find(|n| !used.contains(n))
            .ok_or_else(|| SlotsError::Efi("every Boot#### number is taken".into()))
    }
}
