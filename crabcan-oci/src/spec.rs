//! The runtime-spec's `config.json`, as crabcan reads it: the fields crabcan carries into a
//! plan, typed, and the fields it refuses, kept only as "present or not".
//!
//! Field names and JSON spellings follow the runtime-spec (1.2). Unknown fields are
//! ignored, as the spec asks of a runtime. What the spec marks required is required here
//! only where nothing sensible could stand in for it (a mount's destination, a
//! namespace's or device's type, a hook's path, the process's user and cwd); numbers that
//! engines leave out read as 0, as they do with runc. The seccomp profile is not typed
//! here: `crabcan-security` reads it from the JSON itself.
//!
//! These types are crabcan's own rather than a general-purpose crate's: reading a config
//! is on the path of every start, and the binary's size and start-up relocations count
//! there (see the README's benchmark section).

use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::HashMap;
use std::path::PathBuf;

/// A field crabcan refuses: `Some` when the config holds it (any value but `null`).
pub type Refused = Option<IgnoredAny>;

/// A map crabcan refuses unless it is empty: only its keys are kept.
pub type RefusedMap = Option<HashMap<String, IgnoredAny>>;

/// The whole config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// `ociVersion`.
    #[serde(default)]
    pub oci_version: String,
    /// The root filesystem.
    pub root: Option<Root>,
    /// Mounts, in order.
    pub mounts: Option<Vec<Mount>>,
    /// The container's process.
    pub process: Option<Process>,
    /// The hostname in a new uts namespace.
    pub hostname: Option<String>,
    /// The NIS domain name in a new uts namespace.
    pub domainname: Option<String>,
    /// Lifecycle hooks.
    pub hooks: Option<Hooks>,
    /// Free-form annotations.
    pub annotations: Option<HashMap<String, String>>,
    /// The Linux section.
    pub linux: Option<Linux>,
    /// Other platforms' sections (refused).
    pub solaris: Refused,
    /// Refused.
    pub windows: Refused,
    /// Refused.
    pub vm: Refused,
    /// Refused.
    pub zos: Refused,
    /// Top-level id mappings (refused unless empty; the Linux section's are used).
    pub uid_mappings: Option<Vec<IgnoredAny>>,
    /// As `uid_mappings`.
    pub gid_mappings: Option<Vec<IgnoredAny>>,
}

/// `root`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Root {
    /// The root's path, relative to the bundle or absolute.
    #[serde(default)]
    pub path: PathBuf,
    /// Mount the root read-only.
    pub readonly: Option<bool>,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Where in the container.
    pub destination: PathBuf,
    /// The filesystem type (`bind` or none for a bind mount).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The source: a path for a bind, a name otherwise.
    pub source: Option<PathBuf>,
    /// mount(8)-style options.
    pub options: Option<Vec<String>>,
    /// An id-mapped mount's maps (refused unless empty).
    pub uid_mappings: Option<Vec<IgnoredAny>>,
    /// As `uid_mappings`.
    pub gid_mappings: Option<Vec<IgnoredAny>>,
}

/// `process`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Give the process a terminal.
    pub terminal: Option<bool>,
    /// The terminal's size.
    pub console_size: Option<ConsoleSize>,
    /// Who the process runs as.
    pub user: User,
    /// The command and its arguments.
    pub args: Option<Vec<String>>,
    /// Windows only (refused).
    pub command_line: Refused,
    /// `KEY=VALUE` entries.
    pub env: Option<Vec<String>>,
    /// The working directory, absolute.
    pub cwd: PathBuf,
    /// The five capability sets.
    pub capabilities: Option<Capabilities>,
    /// Resource limits.
    pub rlimits: Option<Vec<Rlimit>>,
    /// Set no_new_privs.
    pub no_new_privileges: Option<bool>,
    /// An AppArmor profile.
    pub apparmor_profile: Option<String>,
    /// The OOM score adjustment.
    pub oom_score_adj: Option<i32>,
    /// An SELinux label.
    pub selinux_label: Option<String>,
    /// Refused.
    pub io_priority: Refused,
    /// Refused.
    pub scheduler: Refused,
    /// Refused.
    #[serde(rename = "execCPUAffinity")]
    pub exec_cpu_affinity: Refused,
}

/// `process.consoleSize`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ConsoleSize {
    /// Rows.
    #[serde(default)]
    pub height: u64,
    /// Columns.
    #[serde(default)]
    pub width: u64,
}

/// `process.user`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user id in the container.
    #[serde(default)]
    pub uid: u32,
    /// The group id in the container.
    #[serde(default)]
    pub gid: u32,
    /// The umask.
    pub umask: Option<u32>,
    /// Supplementary groups.
    pub additional_gids: Option<Vec<u32>>,
    /// Windows only (refused unless empty).
    pub username: Option<String>,
}

/// `process.capabilities`: names as written (`CAP_` prefix optional, any case).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Capabilities {
    /// The bounding set.
    pub bounding: Option<Vec<String>>,
    /// The effective set.
    pub effective: Option<Vec<String>>,
    /// The inheritable set.
    pub inheritable: Option<Vec<String>>,
    /// The permitted set.
    pub permitted: Option<Vec<String>>,
    /// The ambient set.
    pub ambient: Option<Vec<String>>,
}

/// One entry of `process.rlimits`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_…`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The hard limit.
    #[serde(default)]
    pub hard: u64,
    /// The soft limit.
    #[serde(default)]
    pub soft: u64,
}

/// `hooks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Deprecated in the spec; run as createRuntime hooks are.
    pub prestart: Option<Vec<Hook>>,
    /// In the runtime's namespaces, after the container's are made.
    pub create_runtime: Option<Vec<Hook>>,
    /// In the container, before the root switch.
    pub create_container: Option<Vec<Hook>>,
    /// In the container, before the user's command.
    pub start_container: Option<Vec<Hook>>,
    /// After the user's command started.
    pub poststart: Option<Vec<Hook>>,
    /// After the container is deleted.
    pub poststop: Option<Vec<Hook>>,
}

/// One hook.
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    /// The program, absolute.
    pub path: PathBuf,
    /// Its argv (argv[0] included).
    pub args: Option<Vec<String>>,
    /// Its environment.
    pub env: Option<Vec<String>>,
    /// Seconds before it is killed.
    pub timeout: Option<i64>,
}

/// `linux`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// User id mappings of a new user namespace.
    pub uid_mappings: Option<Vec<IdMapping>>,
    /// Group id mappings of a new user namespace.
    pub gid_mappings: Option<Vec<IdMapping>>,
    /// Namespaced sysctls.
    pub sysctl: Option<HashMap<String, String>>,
    /// Cgroup limits.
    pub resources: Option<Resources>,
    /// The cgroup's path.
    pub cgroups_path: Option<PathBuf>,
    /// Namespaces to create or join.
    pub namespaces: Option<Vec<Namespace>>,
    /// Device nodes to make.
    pub devices: Option<Vec<Device>>,
    /// The root's mount propagation.
    pub rootfs_propagation: Option<String>,
    /// Paths masked in the container.
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only in the container.
    pub readonly_paths: Option<Vec<String>>,
    /// An SELinux mount label.
    pub mount_label: Option<String>,
    /// The execution domain.
    pub personality: Option<Personality>,
    /// Refused.
    pub intel_rdt: Refused,
    /// Refused.
    pub memory_policy: Refused,
    /// Refused unless empty.
    pub time_offsets: RefusedMap,
    /// Refused unless empty.
    pub net_devices: RefusedMap,
}

/// One id mapping.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct IdMapping {
    /// The first id inside.
    #[serde(default, rename = "containerID")]
    pub container_id: u32,
    /// The first id outside.
    #[serde(default, rename = "hostID")]
    pub host_id: u32,
    /// How many.
    #[serde(default)]
    pub size: u32,
}

/// One namespace.
#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    /// Which.
    #[serde(rename = "type")]
    pub kind: NamespaceType,
    /// Join this one instead of creating one.
    pub path: Option<PathBuf>,
}

/// A namespace's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceType {
    /// pid
    Pid,
    /// network
    Network,
    /// mount
    Mount,
    /// ipc
    Ipc,
    /// uts
    Uts,
    /// user
    User,
    /// cgroup
    Cgroup,
    /// time
    Time,
}

/// A device's type, in `linux.devices` and in device cgroup rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// Every type (device cgroup rules only).
    A,
    /// Block.
    B,
    /// Character.
    C,
    /// Character, unbuffered.
    U,
    /// FIFO.
    P,
}

/// One entry of `linux.devices`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its path in the container.
    #[serde(default)]
    pub path: PathBuf,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: DeviceType,
    /// Major number.
    #[serde(default)]
    pub major: i64,
    /// Minor number.
    #[serde(default)]
    pub minor: i64,
    /// Permission bits.
    pub file_mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
}

/// `linux.personality`.
#[derive(Debug, Clone, Deserialize)]
pub struct Personality {
    /// The execution domain.
    pub domain: PersonalityDomain,
    /// Flags (crabcan accepts none).
    pub flags: Option<Vec<String>>,
}

/// An execution domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PersonalityDomain {
    /// `LINUX`
    #[serde(rename = "LINUX")]
    Linux,
    /// `LINUX32`
    #[serde(rename = "LINUX32")]
    Linux32,
}

/// `linux.resources`, also what `update --resources` reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Device cgroup rules.
    pub devices: Option<Vec<DeviceRule>>,
    /// Memory.
    pub memory: Option<Memory>,
    /// CPU.
    pub cpu: Option<Cpu>,
    /// Process count.
    pub pids: Option<Pids>,
    /// Block I/O.
    #[serde(rename = "blockIO")]
    pub block_io: Option<BlockIo>,
    /// Huge pages.
    pub hugepage_limits: Option<Vec<HugepageLimit>>,
    /// Network classes and priorities.
    pub network: Option<Network>,
    /// Refused unless empty.
    pub rdma: RefusedMap,
    /// cgroup v2 files by name.
    pub unified: Option<HashMap<String, String>>,
}

/// One device cgroup rule.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceRule {
    /// Allow (or deny).
    #[serde(default)]
    pub allow: bool,
    /// The devices' type; none is every type.
    #[serde(rename = "type")]
    pub kind: Option<DeviceType>,
    /// Major number; none or -1 is every one.
    pub major: Option<i64>,
    /// Minor number; none or -1 is every one.
    pub minor: Option<i64>,
    /// `r`, `w` and `m`.
    pub access: Option<String>,
}

/// `linux.resources.memory`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// Bytes.
    pub limit: Option<i64>,
    /// Soft limit, bytes.
    pub reservation: Option<i64>,
    /// Memory plus swap, bytes.
    pub swap: Option<i64>,
    /// Kernel memory, bytes.
    pub kernel: Option<i64>,
    /// Kernel TCP buffers, bytes.
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: Option<i64>,
    /// 0 to 100.
    pub swappiness: Option<u64>,
    /// Disable the OOM killer.
    #[serde(rename = "disableOOMKiller")]
    pub disable_oom_killer: Option<bool>,
    /// Refused.
    pub use_hierarchy: Option<bool>,
    /// Refused.
    pub check_before_update: Option<bool>,
}

/// `linux.resources.cpu`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    /// Relative weight (v1 shares).
    pub shares: Option<u64>,
    /// Microseconds per period.
    pub quota: Option<i64>,
    /// Refused unless 0.
    pub idle: Option<i64>,
    /// Refused.
    pub burst: Option<u64>,
    /// Microseconds.
    pub period: Option<u64>,
    /// Microseconds.
    pub realtime_runtime: Option<i64>,
    /// Microseconds.
    pub realtime_period: Option<u64>,
    /// A CPU list.
    pub cpus: Option<String>,
    /// A memory-node list.
    pub mems: Option<String>,
}

/// `linux.resources.pids`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Pids {
    /// At most this many tasks; 0 or less is no limit.
    #[serde(default)]
    pub limit: i64,
}

/// `linux.resources.blockIO`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockIo {
    /// Relative weight.
    pub weight: Option<u16>,
    /// Refused.
    pub leaf_weight: Option<u16>,
    /// Weights per device.
    pub weight_device: Option<Vec<WeightDevice>>,
    /// Bytes per second read, per device.
    pub throttle_read_bps_device: Option<Vec<ThrottleDevice>>,
    /// Bytes per second written, per device.
    pub throttle_write_bps_device: Option<Vec<ThrottleDevice>>,
    /// Reads per second, per device.
    #[serde(rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Option<Vec<ThrottleDevice>>,
    /// Writes per second, per device.
    #[serde(rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Option<Vec<ThrottleDevice>>,
}

/// One device's weight.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightDevice {
    /// Major number.
    #[serde(default)]
    pub major: i64,
    /// Minor number.
    #[serde(default)]
    pub minor: i64,
    /// The weight.
    pub weight: Option<u16>,
    /// Refused.
    pub leaf_weight: Option<u16>,
}

/// One device's rate.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ThrottleDevice {
    /// Major number.
    #[serde(default)]
    pub major: i64,
    /// Minor number.
    #[serde(default)]
    pub minor: i64,
    /// Per second.
    #[serde(default)]
    pub rate: u64,
}

/// One huge-page limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HugepageLimit {
    /// `2MB`, `1GB`, …
    #[serde(default)]
    pub page_size: String,
    /// Bytes.
    #[serde(default)]
    pub limit: i64,
}

/// `linux.resources.network`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    /// The net_cls class id.
    #[serde(rename = "classID")]
    pub class_id: Option<u32>,
    /// net_prio priorities per interface.
    pub priorities: Option<Vec<InterfacePriority>>,
}

/// One interface's priority.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InterfacePriority {
    /// The interface.
    #[serde(default)]
    pub name: String,
    /// Its priority.
    #[serde(default)]
    pub priority: u32,
}
