//! Resource limits for a crabcan container: cgroup v2 limits, device rules (cgroup v1 or an
//! eBPF program on cgroup v2, see [`DeviceRule`]) and rlimits.
//!
//! Split as everywhere in crabcan into a pure **plan** and an **apply** step:
//! - parsers for the flags ([`parse_memory`], [`parse_cpus`], [`parse_ulimit`], …) and
//!   [`plan`], which turns [`Limits`] into a [`CgroupPlan`]: the files to write, in order;
//! - [`Cgroup::create`], [`Cgroup::add_process`] and [`Cgroup::remove`] in crabcan's parent,
//!   and [`apply_rlimits`] in the container's child process.
//!
//! Where the cgroup goes: the cgroup2 mount is read from /proc/self/mountinfo (on a hybrid
//! host it is /sys/fs/cgroup/unified) and crabcan's own cgroup from /proc/self/cgroup. The
//! container gets `crabcan-<name>` inside a shared directory `crabcan`, created next to
//! crabcan's own cgroup (or under the root when crabcan runs at the root): a non-root cgroup
//! holding processes may not pass controllers to children (the no-internal-process rule), so
//! the container never goes below crabcan's own cgroup. The needed controllers are enabled in
//! each cgroup.subtree_control from the hierarchy's root down; they are left enabled after
//! the run, since other cgroups may rely on them.
//!
//! Inside the container: the child unshares its cgroup namespace after the parent has written
//! its pid to cgroup.procs, so /proc/self/cgroup there reads `0::/` and the container cannot
//! see where on the host it sits.
//!
//! Order for the caller:
//! 1. parse flags, [`plan`] (pure; print [`describe`] under `--debug`);
//! 2. [`Cgroup::create`] before cloning the child (fails early, nothing started yet);
//! 3. clone, write the id maps, then [`Cgroup::add_process`] with the child's pid,
//!    then release the child;
//! 4. in the child: `unshare(CLONE_NEWCGROUP)`, the rest of the setup, [`apply_rlimits`]
//!    just before dropping capabilities and `execve`;
//! 5. after `waitpid`: [`Cgroup::oom_killed`] to explain a SIGKILL, then [`Cgroup::remove`].

mod cgroup;
mod container;
mod devices;
mod host;
mod layout;
mod parse;
mod path;
mod plan;
mod resources;
mod rlimit;
pub mod stats;

pub use cgroup::{Cgroup, Host, owner_pid, unavailable_error};
pub use container::ContainerCgroup;
pub use devices::{
    Access, BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR, BpfInsn, DeviceConfinement, DeviceKind,
    DeviceRule, MAX_MAJOR, MAX_MINOR, V1Cgroup, V1Devices, V1Write, allowed, attach_program,
    bpf_program, check_rules, confine_v2, default_rules, load_program, op, own_v1_path,
    v1_controller_mount, v1_devices_mount, v1_writes,
};
pub use host::{
    Cgroup2Mount, PARENT_DIR, Placement, find_cgroup2_mount, own_cgroup_dir, own_cgroup_path,
    parse_controllers, parse_oom_kill, placement, v1_mount_of,
};
pub use layout::{Layout, Mode, V1_CONTROLLERS, V1Hierarchy, V2Hierarchy, Where};
pub use parse::{
    CPU_PERIOD_US, MAX_CPUS, MAX_PIDS, MIN_CPUS, MIN_MEMORY, UNLIMITED, cpu_max, parse_cpu_weight,
    parse_cpus, parse_memory, parse_memory_swap, parse_pids, parse_size,
};
pub use path::CgroupPath;
pub use plan::{
    CGROUP_PREFIX, CgroupPlan, CgroupWrite, Controller, DEFAULT_PIDS_MAX, Limits, MAX_NAME_LEN,
    Source, check_container_name, describe, plan,
};
pub use resources::{
    BlockIo, Cpu, DEFAULT_CPU_PERIOD, DevicePlan, HugepageLimit, MIN_MEMORY_LIMIT, Memory, Network,
    Pids, ResourcePlan, Resources, Target, ThrottleDevice, WeightDevice, Write,
    blkio_weight_to_io_weight, memsw_first, plan_devices, plan_resources, shares_to_weight,
    swap_to_v2, weight_to_shares,
};
pub use rlimit::{RlimitSpec, apply_rlimits, parse_ulimit, rlimit_names, target_hard};
pub use stats::Stats;
