//! A container's cgroups on any host layout — pure cgroup v2, v1, or a hybrid of both.
//!
//! Split as everywhere in crabcan into a pure **plan** and an **apply** step:
//! - [`Layout`] says which hierarchies the host mounts and which controllers each holds
//!   (parsed from /proc/self/mountinfo and /proc/self/cgroup); [`CgroupPath`] says where in
//!   each hierarchy the container goes; [`Resources`] (the runtime-spec's LinuxResources in
//!   the crate's own types) is planned by [`plan_resources`] into file writes for whichever
//!   hierarchy holds each controller, converting between v1 and v2 as runc 1.1 does;
//! - [`ContainerCgroup`] applies it: created in every hierarchy, the container's process
//!   added to all of them, later opened again from the same path to update, freeze, thaw,
//!   list processes, read [`Stats`], signal and remove.
//!
//! `crabcan run`'s few limits are [`Limits`], turned into [`Resources`] by
//! [`Limits::resources`]; its cgroup goes to [`CgroupPath::Run`], where cgroups of runs that
//! were killed are swept by the next run.
//!
//! Inside the container: the child unshares its cgroup namespace once it is in its cgroups,
//! so /proc/self/cgroup there reads `/` and the container cannot see where on the host it
//! sits. An OCI container's process enters them itself through an [`Entry`], which spares
//! the RCU grace period that moving it by pid waits for.

mod cgroup;
mod container;
mod devices;
mod host;
mod layout;
mod parse;
mod path;
mod plan;
mod resources;
pub mod stats;

pub use cgroup::{owner_pid, remove_if_empty, run_leaf};
pub use container::{ContainerCgroup, DeadRuns, Entry};
pub use devices::{
    Access, BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR, BpfInsn, DeviceKind, DeviceRule, MAX_MAJOR,
    MAX_MINOR, V1Write, allowed, attach_program, bpf_program, check_rules, confine_v2,
    default_rules, load_program, op, own_v1_path, v1_controller_mount, v1_devices_mount, v1_writes,
};
pub use host::{
    Cgroup2Mount, find_cgroup2_mount, own_cgroup_dir, own_cgroup_path, parse_controllers,
    parse_oom_kill, v1_mount_of,
};
pub use layout::{Layout, Mode, V1_CONTROLLERS, V1Hierarchy, V2Hierarchy, Where};
pub use parse::{
    CPU_PERIOD_US, MAX_CPUS, MIN_CPUS, MIN_MEMORY, UNLIMITED, cpu_max, parse_count,
    parse_count_or_unlimited, parse_decimal, parse_size_or_unlimited,
};
pub use path::CgroupPath;
pub use plan::{
    CGROUP_PREFIX, DEFAULT_PIDS_MAX, LimitKind, Limits, MAX_NAME_LEN, check_container_name,
};
pub use resources::{
    BlockIo, Cpu, DEFAULT_CPU_PERIOD, DevicePlan, HugepageLimit, MAX_PIDS, MIN_MEMORY_LIMIT,
    Memory, Network, Pids, ResourcePlan, Resources, Target, ThrottleDevice, WeightDevice, Write,
    blkio_weight_to_io_weight, memsw_first, missing, plan_devices, plan_resources,
    shares_to_weight, swap_to_v2, weight_to_shares,
};
pub use stats::Stats;
