//! What a config asks for, in crabcan's terms: plain data for the runtime to apply.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of namespace a config can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsKind {
    /// User ids.
    User,
    /// Mount table.
    Mount,
    /// Hostname and domain name.
    Uts,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Network stack.
    Net,
    /// Process ids.
    Pid,
    /// Cgroup root.
    Cgroup,
}

impl NsKind {
    /// Every kind, in the order a process joins namespaces by path: the user namespace
    /// first (it decides the privileges the other joins are checked against), the mount
    /// namespace last (joining it changes the paths the others were opened by).
    pub const JOIN_ORDER: [NsKind; 7] = [
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Net,
        NsKind::Pid,
        NsKind::Cgroup,
        NsKind::Mount,
    ];

    /// The `CLONE_NEW*` flag of the kind.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Mount => libc::CLONE_NEWNS,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
        }
    }

    /// The name in `config.json` (`network`, `mount`, …).
    pub fn oci_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Mount => "mount",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Net => "network",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
        }
    }

    /// The name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Mount => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
        }
    }
}

/// A namespace the container gets: a new one, or an existing one joined by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Which namespace.
    pub kind: NsKind,
    /// Join the namespace at this path (`/proc/PID/ns/net`, a bind of one) instead of
    /// creating one.
    pub path: Option<PathBuf>,
}

/// One line of an id map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// How many ids.
    pub count: u32,
}

/// An rlimit: the kernel's resource number and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Its name in the config (`RLIMIT_NOFILE`).
    pub name: &'static str,
    /// The `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The command and its arguments (at least one word).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: PathBuf,
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// File mode creation mask; `None` keeps the inherited one.
    pub umask: Option<u32>,
    /// The five capability sets.
    pub caps: crabcan_security::Capabilities,
    /// Set no_new_privs before exec.
    pub no_new_privs: bool,
    /// rlimits, set in the container before the ids change.
    pub rlimits: Vec<Rlimit>,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// A pty for the process (its master goes to the console socket).
    pub terminal: bool,
    /// The pty's size as (rows, columns).
    pub console_size: Option<(u16, u16)>,
}

/// A hook: an executable on the host run at one point of the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// argv, including `argv[0]` (the path when the config gives none).
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<String>,
    /// Killed when it runs longer.
    pub timeout: Option<Duration>,
}

/// The six kinds of hook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// After the namespaces exist, before the root switch, in the runtime's namespace
    /// (deprecated in the spec, still run).
    pub prestart: Vec<Hook>,
    /// Same point as prestart, in the runtime's namespace.
    pub create_runtime: Vec<Hook>,
    /// Same point, in the container's namespaces.
    pub create_container: Vec<Hook>,
    /// At start, in the container, before the command runs.
    pub start_container: Vec<Hook>,
    /// After the command started, in the runtime's namespace.
    pub poststart: Vec<Hook>,
    /// After the container is deleted, in the runtime's namespace.
    pub poststop: Vec<Hook>,
}

impl Hooks {
    /// Whether there is no hook at all.
    pub fn is_empty(&self) -> bool {
        self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty()
            && self.poststart.is_empty()
            && self.poststop.is_empty()
    }
}

/// Everything a config asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The root filesystem on the host, absolute.
    pub root: PathBuf,
    /// Mount it read-only.
    pub root_readonly: bool,
    /// Namespaces, each created or joined.
    pub namespaces: Vec<Namespace>,
    /// uid map (only with a user namespace).
    pub uid_mappings: Vec<IdRange>,
    /// gid map (only with a user namespace).
    pub gid_mappings: Vec<IdRange>,
    /// Hostname to set (needs a UTS namespace).
    pub hostname: Option<String>,
    /// NIS domain name to set (needs a UTS namespace).
    pub domainname: Option<String>,
    /// The process.
    pub process: Process,
    /// The seccomp choice.
    pub seccomp: crabcan_security::Seccomp,
    /// Namespaced sysctls, as `/proc/sys` relative paths and values.
    pub sysctl: Vec<(PathBuf, String)>,
    /// `personality(2)` domain.
    pub personality: Option<u64>,
    /// Hooks.
    pub hooks: Hooks,
    /// The mounts, in order.
    pub mounts: Vec<crabcan_mounts::MountEntry>,
    /// Paths hidden from the container.
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Device nodes to create.
    pub devices: Vec<crabcan_mounts::DeviceNode>,
    /// Propagation of the container's mounts, when given.
    pub rootfs_propagation: Option<crabcan_mounts::Propagation>,
    /// `linux.cgroupsPath`, when given.
    pub cgroups_path: Option<crabcan_cgroups::CgroupPath>,
    /// `linux.resources`, with the device rules every container needs added.
    pub resources: crabcan_cgroups::Resources,
    /// Annotations, recorded in the state.
    pub annotations: BTreeMap<String, String>,
}

impl Plan {
    /// The namespace of `kind`, if the config lists it.
    pub fn namespace(&self, kind: NsKind) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.kind == kind)
    }

    /// Whether the container gets a new namespace of `kind` (listed without a path).
    pub fn creates(&self, kind: NsKind) -> bool {
        self.namespace(kind).is_some_and(|n| n.path.is_none())
    }
}
