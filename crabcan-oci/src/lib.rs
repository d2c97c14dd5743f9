//! An OCI bundle's `config.json` translated into crabcan's subsystem plans.
//!
//! [`load`] reads and parses the bundle's config (with the [`spec`] types), [`translate`]
//! turns it into a [`Plan`]: every field the parsed types carry is either carried into the
//! plan or refused with one line naming its JSON path
//! (`config.json linux.intelRdt: not supported`). Pure: no syscalls beyond reading the
//! config file and asking which LSMs the host runs.
//!
//! [`default_spec`] is the config `crabcan spec` writes.

mod default;
mod plan;
mod resources;
pub mod spec;
mod subsystems;
mod translate;

pub use default::default_spec;
pub use plan::*;
pub use resources::parse_update;
pub use subsystems::{cgroup_path, mount_config, security_config};
pub use translate::{Host, translate};

use crabcan_errors::{Errcode, Result};
use std::path::{Path, PathBuf};

/// The name of the runtime config inside a bundle.
pub const CONFIG_FILE: &str = "config.json";

/// The version of the runtime spec this crate implements.
pub const OCI_VERSION: &str = "1.2.0";

/// A bundle's parsed config, with the raw JSON kept for values read in place.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed config.
    pub spec: spec::Spec,
    /// The same config as plain JSON.
    pub raw: serde_json::Value,
}

/// An error about a config field: `config.json PATH: why`.
pub fn field_error(path: &str, why: impl std::fmt::Display) -> Errcode {
    Errcode::usage(format!("{CONFIG_FILE} {path}: {why}"))
}

/// Reads `DIR/config.json` of the bundle `dir` (made absolute against the working directory).
pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(dir)
        .map_err(|e| Errcode::usage(format!("invalid bundle path {}: {e}", dir.display())))?;
    let file = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Errcode::usage(format!("cannot read {}: {e}", file.display())))?;
    parse(dir, &text)
}

/// Parses a config's text for the bundle `dir`.
pub fn parse(dir: PathBuf, text: &str) -> Result<Bundle> {
    // A key given twice is refused, not read as its last value.
    let raw = crabcan_security::json::parse_strict(text).map_err(|e| {
        Errcode::usage(match (e.syntax, e.path.is_empty()) {
            (true, _) => format!("{CONFIG_FILE}: invalid JSON: {}", e.why),
            (false, true) => format!("{CONFIG_FILE}: {}", e.why),
            (false, false) => format!("{CONFIG_FILE} {}: {}", e.path, e.why),
        })
    })?;
    if !raw.is_object() {
        return Err(Errcode::usage(format!(
            "{CONFIG_FILE}: expected a JSON object at the top"
        )));
    }
    // Typed from the parsed value (the text is parsed once), with the path of the field
    // that failed, so a bad value is named as the config spells it
    // (`config.json linux.namespaces[0].type: unknown variant …`).
    let spec: spec::Spec = serde_path_to_error::deserialize(&raw).map_err(|e| {
        let path = e.path().to_string();
        let why = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            Errcode::usage(format!("{CONFIG_FILE}: {why}"))
        } else {
            Errcode::usage(format!("{CONFIG_FILE} {path}: {why}"))
        }
    })?;
    Ok(Bundle { dir, spec, raw })
}

#[cfg(test)]
mod tests;
