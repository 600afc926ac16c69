//! The runc shim's options that aosd sets: which OCI runtime binary runs the tasks and where
//! it keeps its state, as the shim reads them (`containerd.runc.v1.Options`).

use prost::Message;

/// The runc shim's options (`containerd.runc.v1.Options`), the fields we set.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    #[prost(string, tag = "6")]
    binary_name: String,
    #[prost(string, tag = "7")]
    root: String,
}

/// How tasks are run: the OCI runtime binary (runc, crun, …) and its state directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Empty: the shim's default (runc).
    pub binary: String,
    /// Empty: the shim's default (`/run/containerd/runc`).
    pub root: String,
}

impl RuntimeOptions {
    /// The options as the shim takes them; `None` for the shim's defaults.
    pub(crate) fn encode(&self) -> Option<prost_types::Any> {
        if *self == RuntimeOptions::default() {
            return None;
        }
        let o = RuncOptions {
            binary_name: self.binary.clone(),
            root: self.root.clone(),
        };
        Some(prost_types::Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.encode_to_vec(),
        })
    }
}
