//! [`Plan`] → the subsystem crates' configs.
//!
//! TODO(oci): the mount list, the five capability sets, the seccomp profile and the cgroup
//! resources go straight into the subsystems once their OCI-shaped configs exist; until
//! then the mounts of the standard layout (`/proc`, `/dev`, `/dev/pts`, `/dev/shm`,
//! `/dev/mqueue`, `/sys`, `/sys/fs/cgroup`) map onto crabcan's default layout, binds onto
//! its bind list, and anything else is refused by its path.

use crate::field_error;
use crate::plan::*;
use crabcan_errors::Result;
use crabcan_mounts::{BindMount, MountConfig, Root};
use std::path::Path;

/// The mounts of the standard layout crabcan's default layout provides.
const STANDARD: &[(&str, &[&str])] = &[
    ("/proc", &["proc"]),
    ("/dev", &["tmpfs"]),
    ("/dev/pts", &["devpts"]),
    ("/dev/shm", &["tmpfs"]),
    ("/dev/mqueue", &["mqueue"]),
    ("/sys", &["sysfs", "none", "bind"]),
    ("/sys/fs/cgroup", &["cgroup", "cgroup2"]),
];

/// The mount config of `plan`; `no_pivot` is `--no-pivot`.
pub fn mount_config(plan: &Plan, no_pivot: bool) -> Result<MountConfig> {
    if no_pivot {
        return Err(crabcan_errors::Errcode::usage(
            "--no-pivot is not supported yet",
        ));
    }
    let mut cfg = MountConfig::new(Root::Dir(plan.root.clone()));
    cfg.read_only = plan.root_readonly;
    cfg.mask_paths = !plan.masked_paths.is_empty() || !plan.readonly_paths.is_empty();
    for (i, m) in plan.mounts.iter().enumerate() {
        let at = format!("mounts[{i}]");
        let standard = STANDARD
            .iter()
            .any(|(d, t)| m.destination == Path::new(d) && t.contains(&m.fstype.as_str()));
        if standard {
            continue;
        }
        let bind = m.fstype == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if !bind {
            return Err(field_error(
                &format!("{at}.type"),
                format!(
                    "a {} mount on {} is not supported yet",
                    m.fstype,
                    m.destination.display()
                ),
            ));
        }
        let mut b = BindMount {
            source: m.source.clone().unwrap_or_default(),
            target: m.destination.clone(),
            read_only: false,
            dev: false,
            idmap: false,
        };
        for o in &m.options {
            match o.as_str() {
                "ro" => b.read_only = true,
                "rw" | "bind" | "rbind" | "nodev" | "nosuid" | "noexec" | "private"
                | "rprivate" => {}
                "dev" => b.dev = true,
                other => {
                    return Err(field_error(
                        &format!("{at}.options"),
                        format!("option {other:?} is not supported yet on a bind mount"),
                    ));
                }
            }
        }
        cfg.binds.push(b);
    }
    if !plan.devices.is_empty() {
        return Err(field_error("linux.devices", "not supported yet"));
    }
    if plan.rootfs_propagation.is_some() {
        return Err(field_error("linux.rootfsPropagation", "not supported yet"));
    }
    Ok(cfg)
}

/// The security config of `plan`.
pub fn security_config(plan: &Plan) -> Result<crabcan_security::SecurityConfig> {
    if let Seccomp::Profile(_) = plan.seccomp {
        return Err(field_error("linux.seccomp", "not supported yet"));
    }
    let caps = plan.process.caps;
    let names: Vec<String> = caps.bounding.known().map(|c| c.name()).collect();
    Ok(crabcan_security::SecurityConfig {
        cap_add: names,
        cap_drop: vec!["ALL".into()],
        uid: plan.process.uid,
        seccomp: false,
    })
}
