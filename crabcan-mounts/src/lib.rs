//! The container's filesystem view: a private mount namespace, a new root (a host directory
//! or a scratch tmpfs) with fresh `/proc`, read-only `/sys`, a minimal `/dev` (or an
//! explicit list of mounts and device nodes), extra bind mounts, masked and read-only
//! paths, and `pivot_root` into it with the old root detached.
//!
//! Usable on its own: [`plan`] computes the ordered steps as plain data (no side effects),
//! [`prepare`] creates missing mount points in a directory root on the host (and removes
//! them again), and [`apply`] performs the steps in a process that already has its own mount
//! namespace. Nothing here logs, exits or keeps global state.
//!
//! ```
//! use crabcan_mounts::{plan, BindMount, MountConfig, Root, Step};
//!
//! let mut cfg = MountConfig::new(Root::Dir("/srv/rootfs".into()));
//! cfg.binds.push(BindMount::parse("/srv/data:/data:ro")?);
//! let plan = plan(&cfg)?;
//! assert_eq!(plan.steps.first(), Some(&Step::MakePrivate));
//! assert_eq!(plan.steps.last(), Some(&Step::Pivot));
//! assert!(plan.targets().any(|t| t == std::path::Path::new("/data")));
//! # Ok::<(), crabcan_errors::Errcode>(())
//! ```
//!
//! An explicit, OCI-shaped layout replaces the default `/proc`, `/sys`, `/dev` set: the
//! entries are mounted in order (destinations resolved inside the root), then the device
//! nodes, the masked and read-only paths, the read-only root and the root's propagation.
//!
//! ```
//! use crabcan_mounts::{plan, MountConfig, MountEntry, Propagation, Root, Step};
//!
//! let mut cfg = MountConfig::new(Root::Dir("/srv/bundle/rootfs".into()));
//! cfg.entries = Some(vec![
//!     MountEntry::new("/proc", "proc", Some("proc"), &["nosuid", "noexec", "nodev"])?,
//!     MountEntry::new("/dev", "tmpfs", Some("tmpfs"), &["nosuid", "strictatime", "mode=755"])?,
//!     MountEntry::new("/data", "bind", Some("/srv/data"), &["rbind", "ro", "rslave"])?,
//! ]);
//! cfg.default_devices = true;
//! cfg.readonly_root = true;
//! cfg.root_propagation = Propagation::parse("rslave");
//! let plan = plan(&cfg)?;
//! assert_eq!(plan.steps.first(), Some(&Step::MakeSlave));
//! assert!(plan.steps.contains(&Step::RootReadOnly));
//! assert!(plan.targets().any(|t| t == std::path::Path::new("/data")));
//! # Ok::<(), crabcan_errors::Errcode>(())
//! ```

mod apply;
pub mod cgroup;
mod copyup;
mod options;
mod plan;
mod prepare;
mod sys;

pub use apply::{apply, apply_with, handover, handover_count, needs_idmap};
pub use cgroup::{CgroupLayout, Hierarchy};
pub use options::{Bind, MountOptions, Propagation, PropagationKind};
pub use plan::{
    BindMount, DEFAULT_SCRATCH_SIZE, DEV_SYMLINKS, DEVICES, DeviceKind, DeviceNode, Fs,
    MASKED_PATHS, MountConfig, MountEntry, MountPlan, READONLY_PATHS, Root, SCRATCH_HOST_DIRS,
    SCRATCH_MASKED_PATHS, Source, Step, Sysfs, container_path, default_devices, plan,
};
pub use prepare::{Prepared, open_root, prepare, prepare_announcing, prepare_in};
