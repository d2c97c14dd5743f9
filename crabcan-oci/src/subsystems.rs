//! [`Plan`] → the subsystem crates' configs.

use crate::plan::*;
use crabcan_errors::Result;
use crabcan_mounts::{MountConfig, Root};

/// The mount config of `plan`: exactly its mounts, then the default device nodes (as
/// runc makes them) and its own; its masked and read-only paths; `no_pivot` is
/// `--no-pivot`.
pub fn mount_config(plan: &Plan, no_pivot: bool) -> MountConfig {
    let mut cfg = MountConfig::new(Root::Dir(plan.root.clone()));
    cfg.readonly_root = plan.root_readonly;
    cfg.entries = Some(plan.mounts.clone());
    cfg.masked = plan.masked_paths.clone();
    cfg.readonly = plan.readonly_paths.clone();
    cfg.devices = plan.devices.clone();
    cfg.default_devices = true;
    cfg.in_userns = plan.creates(NsKind::User);
    cfg.root_propagation = plan.rootfs_propagation;
    cfg.no_pivot = no_pivot;
    cfg
}

/// The security config of `plan`: the five sets, no_new_privs and the profile as given.
pub fn security_config(plan: &Plan) -> crabcan_security::SecurityConfig {
    crabcan_security::SecurityConfig {
        capabilities: plan.process.caps,
        no_new_privs: plan.process.no_new_privs,
        seccomp: plan.seccomp.clone(),
    }
}

/// Where the container's cgroup goes: `linux.cgroupsPath`, or (as runc) the id under the
/// caller's own cgroup.
pub fn cgroup_path(plan: &Plan, id: &str) -> Result<crabcan_cgroups::CgroupPath> {
    match &plan.cgroups_path {
        Some(p) => Ok(p.clone()),
        None => crabcan_cgroups::CgroupPath::parse(id),
    }
}
