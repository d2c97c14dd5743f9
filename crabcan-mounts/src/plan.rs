//! The mount plan: plain data computed from a [`MountConfig`], with no side effects.

use crate::options::{Bind, MountOptions, Propagation, PropagationKind};
use crabcan_errors::{Errcode, Result};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Host directories bound read-only into a scratch root (when no root directory is given).
pub const SCRATCH_HOST_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"];

/// Device nodes bound from the host into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Paths hidden from the container (a file gets `/dev/null` over it, a directory an empty
/// read-only tmpfs), as the OCI runtimes do.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/sysrq-trigger",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Secrets of the host's `/etc` hidden in a scratch root, which binds the host's `/etc`
/// (root inside may be root outside, so file modes alone would not keep them).
pub const SCRATCH_MASKED_PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
];

/// Paths the container may read but not write.
pub const READONLY_PATHS: &[&str] = &["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"];

/// Where the container's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// An existing directory on the host (absolute path).
    Dir(PathBuf),
    /// A fresh tmpfs with the host's [`SCRATCH_HOST_DIRS`] bound read-only into it.
    Scratch,
}

/// How `/sys` is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sysfs {
    /// A fresh read-only sysfs (needs the container's own network namespace).
    Fresh,
    /// The host's `/sys`, bound recursively and read-only (when sharing the host network).
    HostBind,
}

/// One extra bind mount (`SRC:DST[:OPTIONS]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Mounted read-only (recursively).
    pub read_only: bool,
    /// Device nodes in it open (otherwise it is mounted `nodev`).
    pub dev: bool,
    /// Ids are translated through the container's id map, so its files keep their owners
    /// inside (otherwise host ids the container does not map show as the overflow id).
    pub idmap: bool,
}

/// The words accepted after a bind's DST.
const BIND_OPTIONS: &str = "ro, rw, dev, idmap";

impl BindMount {
    /// Parses `SRC:DST[:OPT[,OPT…]]` with options `ro`, `rw`, `dev` and `idmap`. SRC is
    /// taken as given (the caller makes it absolute); DST must be absolute, without `.` or
    /// `..` components. An error says why; the caller names the spec and where it came from.
    pub fn parse(spec: &str) -> Result<BindMount> {
        let bad = |why: &str| Errcode::usage(why.to_string());
        let (src, rest) = spec
            .split_once(':')
            .ok_or_else(|| bad("expected SRC:DST[:ro]"))?;
        let mut b = BindMount {
            source: PathBuf::from(src),
            target: PathBuf::new(),
            read_only: false,
            dev: false,
            idmap: false,
        };
        let dst = match rest.rsplit_once(':') {
            Some((dst, opts)) => {
                for opt in opts.split(',') {
                    match opt {
                        "ro" => b.read_only = true,
                        "rw" => b.read_only = false,
                        "dev" => b.dev = true,
                        "idmap" => b.idmap = true,
                        _ => {
                            return Err(bad(&format!(
                                "unknown option '{opt}' (use {BIND_OPTIONS})"
                            )));
                        }
                    }
                }
                dst
            }
            None => rest,
        };
        if src.is_empty() {
            return Err(bad("SRC is empty"));
        }
        b.target = container_path(dst).map_err(|why| bad(&format!("DST {why}")))?;
        Ok(b)
    }
}

/// Checks a path meant inside the container: absolute, no `.`/`..`, not the root itself.
/// Returns it normalised (repeated and trailing slashes dropped).
pub fn container_path(p: &str) -> std::result::Result<PathBuf, String> {
    if p.is_empty() {
        return Err("is empty".into());
    }
    if !p.starts_with('/') {
        return Err(format!("'{p}' is not an absolute path"));
    }
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("'{p}' must not contain '.' or '..'"));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("'{p}' must not contain '.' or '..'"));
            }
        }
    }
    if out == Path::new("/") {
        return Err("must not be / itself".into());
    }
    Ok(out)
}

/// One mount of an explicit layout, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountEntry {
    /// Where it goes inside the container (absolute). Symlinks in the root on the way are
    /// followed inside the root; a destination that resolves to the root itself is refused.
    pub destination: PathBuf,
    /// The filesystem type (`proc`, `tmpfs`, `cgroup`, …); `bind`/`rbind` (or those
    /// words in `options`) make it a bind of `source`.
    pub fstype: String,
    /// The host path of a bind (absolute), or the source string of another mount.
    pub source: Option<PathBuf>,
    /// The option words, parsed.
    pub options: MountOptions,
}

impl MountEntry {
    /// An entry from its parts, with `options` as runc's option words.
    pub fn new(
        destination: impl Into<PathBuf>,
        fstype: &str,
        source: Option<&str>,
        options: &[&str],
    ) -> Result<MountEntry> {
        let words: Vec<String> = options.iter().map(|w| w.to_string()).collect();
        Ok(MountEntry {
            destination: destination.into(),
            fstype: fstype.into(),
            source: source.map(PathBuf::from),
            options: MountOptions::parse(&words)?,
        })
    }
}

/// The kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A character device (`c`, `u`).
    Char,
    /// A block device (`b`).
    Block,
    /// A named pipe (`p`).
    Fifo,
}

/// A device node made in the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceNode {
    /// Where inside the container (absolute), usually below `/dev`.
    pub path: PathBuf,
    /// Character, block or fifo.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits (`0o666`).
    pub file_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The device nodes every container gets (the runtime-spec's list): null, zero, full,
/// random, urandom and tty, mode 666, owned by root.
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: Path::new("/dev").join(name),
        kind: DeviceKind::Char,
        major,
        minor,
        file_mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// The symlinks of `/dev` the runtime-spec asks for.
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Everything that decides the container's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// The root filesystem.
    pub root: Root,
    /// Mount the root read-only (`/dev`, `/proc` and extra binds keep their own modes).
    pub readonly_root: bool,
    /// Extra bind mounts, in order, after the layout.
    pub binds: Vec<BindMount>,
    /// The explicit mount list. `None`: the default layout (`/proc`, `/sys`, a tmpfs `/dev`
    /// with the host's device nodes, pts and shm). `Some`: exactly these mounts, in order,
    /// then [`MountConfig::devices`] (and the defaults when [`MountConfig::default_devices`]).
    pub entries: Option<Vec<MountEntry>>,
    /// How `/sys` is provided (default layout only).
    pub sysfs: Sysfs,
    /// The group owning pty slaves (the `tty` group, 5) when it is mapped in the container
    /// (default layout only).
    pub devpts_gid: Option<u32>,
    /// Paths hidden from the container (a file gets `/dev/null` over it, a directory an
    /// empty read-only tmpfs); a missing one is skipped, one that cannot be hidden fails.
    pub masked: Vec<PathBuf>,
    /// Paths made read-only (a read-only bind over themselves); missing ones are skipped.
    pub readonly: Vec<PathBuf>,
    /// Device nodes to make (explicit layout).
    pub devices: Vec<DeviceNode>,
    /// Also make [`default_devices`] and the [`DEV_SYMLINKS`] (explicit layout; the
    /// default layout always has them).
    pub default_devices: bool,
    /// The container is in its own user namespace: device nodes are binds of the host's
    /// nodes (mknod is refused there) and keep the host's mode and owner.
    pub in_userns: bool,
    /// The propagation of the container's mounts. `None` and the private kinds: nothing
    /// propagates either way. Slave: the container receives the host's mount events.
    /// Shared: as slave, and the root is made shared in the container's namespace at the
    /// end (set up happens as a slave, so no mount of the set up reaches the host).
    pub root_propagation: Option<Propagation>,
    /// Switch into the root with `MS_MOVE` and `chroot` instead of `pivot_root` (for roots
    /// on a filesystem `pivot_root` refuses, such as a ramfs; the host's root stays
    /// reachable to a process that can escape a chroot).
    pub no_pivot: bool,
    /// Bind a directory root through the container's id map (an idmapped mount), so that
    /// its files keep their owners inside while container root is an unprivileged host id.
    pub idmap_root: bool,
    /// Size cap of a scratch root's tmpfs, in bytes.
    pub scratch_size: u64,
}

/// Default size cap of a scratch root's tmpfs: 256 MiB.
pub const DEFAULT_SCRATCH_SIZE: u64 = 256 << 20;

impl MountConfig {
    /// A config with the usual defaults for `root`: the default layout, [`MASKED_PATHS`]
    /// (and [`SCRATCH_MASKED_PATHS`] for a scratch root) and [`READONLY_PATHS`].
    pub fn new(root: Root) -> MountConfig {
        let mut masked: Vec<PathBuf> = MASKED_PATHS.iter().map(PathBuf::from).collect();
        if root == Root::Scratch {
            masked.extend(SCRATCH_MASKED_PATHS.iter().map(PathBuf::from));
        }
        MountConfig {
            root,
            readonly_root: false,
            binds: Vec::new(),
            entries: None,
            sysfs: Sysfs::Fresh,
            devpts_gid: None,
            masked,
            readonly: READONLY_PATHS.iter().map(PathBuf::from).collect(),
            devices: Vec::new(),
            default_devices: false,
            in_userns: false,
            root_propagation: None,
            no_pivot: false,
            idmap_root: false,
            scratch_size: DEFAULT_SCRATCH_SIZE,
        }
    }
}

/// A host path cloned (as a detached mount tree) before the root is set up, so that later
/// mounts can never shadow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Absolute host path.
    pub path: PathBuf,
    /// Include the mounts below it.
    pub recursive: bool,
    /// Make the clone read-only (recursively when `recursive`).
    pub read_only: bool,
    /// A missing path is skipped instead of failing (scratch-root host dirs).
    pub optional: bool,
    /// Mounted `nodev`: device nodes in it do not open.
    pub nodev: bool,
    /// Idmapped through the container's user namespace. Needs privilege over the host's
    /// filesystems, so the parent makes this clone ([`crate::handover`]), not `apply`.
    pub idmap: bool,
}

/// A fresh filesystem to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// `proc` (nosuid, nodev, noexec).
    Proc,
    /// `sysfs` read-only (nosuid, nodev, noexec).
    Sysfs,
    /// The tmpfs holding `/dev`.
    DevTmpfs,
    /// `devpts` with its own instance and `ptmx`.
    Devpts,
    /// The tmpfs for `/dev/shm`.
    Shm,
}

/// One step of the plan. Paths named `target`/`path` are inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make every mount private so nothing propagates back to the host.
    MakePrivate,
    /// Make every mount a slave: host mount events still arrive, none go back.
    MakeSlave,
    /// Clone host path `sources[index]` as a detached tree.
    Clone { index: usize },
    /// Use a host directory as the root (a recursive `nodev` bind of it onto itself),
    /// read-only with all its sub-mounts when asked (before anything is mounted on it), and
    /// idmapped when asked (that clone is made by the parent: [`crate::handover`]).
    RootFromDir {
        dir: PathBuf,
        read_only: bool,
        idmap: bool,
    },
    /// Use a fresh tmpfs of at most `size` bytes as the root, mounted on a host directory in
    /// the private namespace.
    RootScratch { size: u64 },
    /// Create a directory.
    Dir { path: PathBuf, mode: u32 },
    /// Create a symlink `path` -> `target`.
    Symlink { path: PathBuf, target: PathBuf },
    /// Mirror a host dir of the scratch root: a symlink stays a symlink, a dir gets the clone.
    HostDir { index: usize, path: PathBuf },
    /// Attach the clone `sources[index]` at `target`, creating the mount point if missing.
    Attach { index: usize, target: PathBuf },
    /// Mount a fresh filesystem at `target`.
    Fresh {
        fs: Fs,
        target: PathBuf,
        gid: Option<u32>,
    },
    /// Mount an entry of the explicit layout (any filesystem but a bind or `cgroup`).
    Mount(MountEntry),
    /// Attach the clone `sources[index]` at `target` with the entry's options.
    Bind {
        index: usize,
        target: PathBuf,
        options: MountOptions,
    },
    /// The cgroup filesystems at `target`, as the container's cgroup namespace shows them.
    Cgroup {
        target: PathBuf,
        options: MountOptions,
    },
    /// Make a device node (`bind`: a bind of the host's node of the same path).
    Device { node: DeviceNode, bind: bool },
    /// Hide `path` if it exists.
    Mask { path: PathBuf },
    /// Make `path` read-only if it exists.
    ReadOnly { path: PathBuf },
    /// Make the (scratch) root mount read-only, once everything is set up in it.
    RootReadOnly,
    /// `pivot_root` into the new root and detach the old one.
    Pivot,
    /// Move the new root onto `/` and `chroot` into it (no `pivot_root`).
    MoveRoot,
    /// Set the propagation of the container's root (after the switch).
    RootPropagation(Propagation),
}

/// The ordered mount steps for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Host paths cloned before anything is mounted.
    pub sources: Vec<Source>,
    /// The steps, in the order they are applied.
    pub steps: Vec<Step>,
    /// The root this plan builds.
    pub root: Root,
}

impl MountPlan {
    /// Whether the plan mounts a cgroup filesystem, which shows the cgroup namespace of the
    /// process that mounts it: that process must be in its cgroup, in a namespace of its
    /// own, first.
    pub fn mounts_cgroup(&self) -> bool {
        self.steps.iter().any(|s| match s {
            Step::Cgroup { .. } => true,
            Step::Mount(e) => matches!(e.fstype.as_str(), "cgroup" | "cgroup2"),
            _ => false,
        })
    }

    /// One line per step, with source paths spelled out (for logs).
    pub fn describe(&self) -> Vec<String> {
        let src = |i: &usize| {
            self.sources
                .get(*i)
                .map(|s| s.path.display().to_string())
                .unwrap_or_else(|| format!("#{i}"))
        };
        self.steps
            .iter()
            .map(|s| match s {
                Step::Clone { index } => {
                    let Some(s) = self.sources.get(*index) else {
                        return format!("clone #{index} (missing)");
                    };
                    format!(
                        "clone {}{}{}{}{}",
                        s.path.display(),
                        if s.recursive { " (recursive)" } else { "" },
                        if s.read_only { " read-only" } else { "" },
                        if s.nodev { " nodev" } else { "" },
                        if s.idmap { " idmapped" } else { "" }
                    )
                }
                Step::Attach { index, target } => {
                    format!("bind {} to {}", src(index), target.display())
                }
                Step::Bind {
                    index,
                    target,
                    options,
                } => format!(
                    "bind {} to {}{}",
                    src(index),
                    target.display(),
                    Shown(options)
                ),
                other => other.to_string(),
            })
            .collect()
    }

    /// Every mount target of the plan, in order (for logs and tests).
    pub fn targets(&self) -> impl Iterator<Item = &Path> {
        self.steps.iter().filter_map(|s| match s {
            Step::Attach { target, .. }
            | Step::Fresh { target, .. }
            | Step::Bind { target, .. }
            | Step::Cgroup { target, .. } => Some(target.as_path()),
            Step::Mount(e) => Some(e.destination.as_path()),
            Step::HostDir { path, .. } => Some(path.as_path()),
            _ => None,
        })
    }
}

/// Computes the mount plan for `cfg`. Pure: touches nothing.
///
/// Steps, in order: the namespace's propagation, the host sources cloned, the root, then
/// either the default layout (`/proc`, `/sys`, `/dev` with its nodes) or the explicit
/// entries with the device nodes, the extra binds, the masked and read-only paths, the
/// read-only root, the switch into the root and the root's final propagation.
pub fn plan(cfg: &MountConfig) -> Result<MountPlan> {
    let mut b = Builder::default();
    b.steps.push(match cfg.root_propagation {
        Some(p) if matches!(p.kind, PropagationKind::Slave | PropagationKind::Shared) => {
            Step::MakeSlave
        }
        _ => Step::MakePrivate,
    });
    let layout = match &cfg.entries {
        None => Layout::Default(b.default_sources(cfg)),
        Some(entries) => Layout::Entries(b.entry_sources(entries)?),
    };
    let binds = b.bind_sources(&cfg.binds)?;
    b.root_steps(cfg)?;
    match layout {
        Layout::Default(sources) => b.default_layout(cfg, sources),
        Layout::Entries(entries) => {
            b.steps.extend(entries);
            b.device_steps(cfg)?;
        }
    }
    b.steps.extend(
        binds
            .into_iter()
            .map(|(index, target)| Step::Attach { index, target }),
    );
    b.protect_steps(cfg)?;
    b.finish_steps(cfg);
    Ok(MountPlan {
        sources: b.sources,
        steps: b.steps,
        root: cfg.root.clone(),
    })
}

/// The clones the default layout attaches: the host's device nodes, and its `/sys`.
struct DefaultSources {
    devices: Vec<usize>,
    sys: Option<usize>,
}

enum Layout {
    Default(DefaultSources),
    /// The entries' steps, their bind sources already cloned.
    Entries(Vec<Step>),
}

#[derive(Default)]
struct Builder {
    sources: Vec<Source>,
    steps: Vec<Step>,
}

impl Builder {
    fn add_source(&mut self, src: Source) -> usize {
        self.sources.push(src);
        let index = self.sources.len() - 1;
        self.steps.push(Step::Clone { index });
        index
    }

    fn default_sources(&mut self, cfg: &MountConfig) -> DefaultSources {
        let devices = DEVICES
            .iter()
            .map(|d| {
                // Read-only: writing a device node still works, but chmod, chown and
                // xattrs on the host's inode fail (EROFS) whoever owns it.
                self.add_source(Source {
                    path: Path::new("/dev").join(d),
                    recursive: false,
                    read_only: true,
                    optional: false,
                    nodev: false,
                    idmap: false,
                })
            })
            .collect();
        let sys = (cfg.sysfs == Sysfs::HostBind).then(|| {
            self.add_source(Source {
                path: "/sys".into(),
                recursive: true,
                read_only: true,
                optional: false,
                nodev: true,
                idmap: false,
            })
        });
        DefaultSources { devices, sys }
    }

    /// Clones the bind entries' sources and returns every entry's step, in order.
    fn entry_sources(&mut self, entries: &[MountEntry]) -> Result<Vec<Step>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let target = checked_target(&e.destination, "mount destination")?;
            let fstype = e.fstype.as_str();
            if fstype.is_empty() && e.options.bind.is_none() {
                return Err(Errcode::usage(format!(
                    "mount on {}: no filesystem type",
                    target.display()
                )));
            }
            if e.options.copy_up && (fstype != "tmpfs" || e.options.bind.is_some()) {
                return Err(Errcode::usage(format!(
                    "mount on {}: tmpcopyup is for a tmpfs only, not {}",
                    target.display(),
                    if fstype.is_empty() { "a bind" } else { fstype }
                )));
            }
            if let Some(bind) = bind_kind(e) {
                let Some(source) = e.source.as_ref().filter(|s| s.is_absolute()) else {
                    return Err(Errcode::usage(format!(
                        "bind mount on {}: source {} is not an absolute path",
                        target.display(),
                        e.source
                            .as_ref()
                            .map_or("(none)".into(), |s| format!("'{}'", s.display()))
                    )));
                };
                let index = self.add_source(Source {
                    path: source.clone(),
                    recursive: bind == Bind::Recursive,
                    read_only: false,
                    optional: false,
                    nodev: false,
                    idmap: false,
                });
                out.push(Step::Bind {
                    index,
                    target,
                    options: e.options.clone(),
                });
            } else if fstype == "cgroup" {
                out.push(Step::Cgroup {
                    target,
                    options: e.options.clone(),
                });
            } else {
                out.push(Step::Mount(MountEntry {
                    destination: target,
                    ..e.clone()
                }));
            }
        }
        Ok(out)
    }

    fn bind_sources(&mut self, binds: &[BindMount]) -> Result<Vec<(usize, PathBuf)>> {
        let mut out = Vec::with_capacity(binds.len());
        for b in binds {
            if !b.source.is_absolute() {
                return Err(Errcode::usage(format!(
                    "bind source '{}' is not an absolute path",
                    b.source.display()
                )));
            }
            let target = checked_target(&b.target, "bind target")?;
            let idx = self.add_source(Source {
                path: b.source.clone(),
                recursive: true,
                read_only: b.read_only,
                optional: false,
                nodev: !b.dev,
                idmap: b.idmap,
            });
            out.push((idx, target));
        }
        Ok(out)
    }

    fn root_steps(&mut self, cfg: &MountConfig) -> Result<()> {
        match &cfg.root {
            Root::Dir(dir) => {
                if !dir.is_absolute() {
                    return Err(Errcode::usage(format!(
                        "root directory '{}' is not an absolute path",
                        dir.display()
                    )));
                }
                self.steps.push(Step::RootFromDir {
                    dir: dir.clone(),
                    // The explicit layout makes the root read-only after its entries.
                    read_only: cfg.readonly_root && cfg.entries.is_none(),
                    idmap: cfg.idmap_root,
                });
            }
            Root::Scratch => {
                let host: Vec<(usize, &str)> = SCRATCH_HOST_DIRS
                    .iter()
                    .map(|d| {
                        let idx = self.add_source(Source {
                            path: d.into(),
                            recursive: true,
                            read_only: true,
                            optional: true,
                            nodev: true,
                            idmap: false,
                        });
                        (idx, *d)
                    })
                    .collect();
                self.steps.push(Step::RootScratch {
                    size: cfg.scratch_size,
                });
                for (dir, mode) in [
                    ("/proc", 0o555),
                    ("/sys", 0o555),
                    ("/dev", 0o755),
                    ("/tmp", 0o1777),
                    ("/root", 0o700),
                ] {
                    self.steps.push(Step::Dir {
                        path: dir.into(),
                        mode,
                    });
                }
                for (index, d) in host {
                    self.steps.push(Step::HostDir {
                        index,
                        path: d.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `/proc`, `/sys` and a tmpfs `/dev` with the host's device nodes, pts, shm and the
    /// standard symlinks.
    fn default_layout(&mut self, cfg: &MountConfig, src: DefaultSources) {
        let fresh = |fs, target: &str, gid| Step::Fresh {
            fs,
            target: target.into(),
            gid,
        };
        self.steps.push(fresh(Fs::Proc, "/proc", None));
        self.steps.push(match src.sys {
            Some(index) => Step::Attach {
                index,
                target: "/sys".into(),
            },
            None => fresh(Fs::Sysfs, "/sys", None),
        });
        self.steps.push(fresh(Fs::DevTmpfs, "/dev", None));
        for (d, index) in DEVICES.iter().zip(src.devices) {
            self.steps.push(Step::Attach {
                index,
                target: Path::new("/dev").join(d),
            });
        }
        self.steps.push(Step::Dir {
            path: "/dev/pts".into(),
            mode: 0o755,
        });
        self.steps
            .push(fresh(Fs::Devpts, "/dev/pts", cfg.devpts_gid));
        self.steps.push(Step::Dir {
            path: "/dev/shm".into(),
            mode: 0o1777,
        });
        self.steps.push(fresh(Fs::Shm, "/dev/shm", None));
        self.dev_symlinks();
    }

    fn dev_symlinks(&mut self) {
        for (path, target) in DEV_SYMLINKS {
            self.steps.push(Step::Symlink {
                path: path.into(),
                target: target.into(),
            });
        }
    }

    /// The explicit layout's device nodes: the defaults (unless listed by the caller, whose
    /// entry wins) and the caller's, then the standard symlinks.
    fn device_steps(&mut self, cfg: &MountConfig) -> Result<()> {
        let mut nodes: Vec<DeviceNode> = Vec::new();
        if cfg.default_devices {
            nodes.extend(
                default_devices()
                    .into_iter()
                    .filter(|d| !cfg.devices.iter().any(|c| c.path == d.path)),
            );
        }
        for d in &cfg.devices {
            let path = checked_target(&d.path, "device path")?;
            nodes.push(DeviceNode { path, ..d.clone() });
        }
        let bind = cfg.in_userns;
        self.steps
            .extend(nodes.into_iter().map(|node| Step::Device { node, bind }));
        if cfg.default_devices {
            self.dev_symlinks();
        }
        Ok(())
    }

    fn protect_steps(&mut self, cfg: &MountConfig) -> Result<()> {
        for p in &cfg.masked {
            let path = checked_target(p, "masked path")?;
            self.steps.push(Step::Mask { path });
        }
        for p in &cfg.readonly {
            let path = checked_target(p, "read-only path")?;
            self.steps.push(Step::ReadOnly { path });
        }
        Ok(())
    }

    fn finish_steps(&mut self, cfg: &MountConfig) {
        if cfg.readonly_root && (cfg.root == Root::Scratch || cfg.entries.is_some()) {
            self.steps.push(Step::RootReadOnly);
        }
        self.steps.push(if cfg.no_pivot {
            Step::MoveRoot
        } else {
            Step::Pivot
        });
        if let Some(p) = cfg.root_propagation {
            self.steps.push(Step::RootPropagation(p));
        }
    }
}

/// `bind`/`rbind` in the options, or the `bind`/`rbind` filesystem type.
fn bind_kind(e: &MountEntry) -> Option<Bind> {
    match (e.options.bind, e.fstype.as_str()) {
        (Some(b), _) => Some(b),
        (None, "rbind") => Some(Bind::Recursive),
        (None, "bind") => Some(Bind::Single),
        _ => None,
    }
}

/// A path inside the container, checked by [`container_path`]; `what` names it in errors.
fn checked_target(p: &Path, what: &str) -> Result<PathBuf> {
    let utf8 = p
        .to_str()
        .ok_or_else(|| Errcode::usage(format!("{what} '{}' is not valid UTF-8", p.display())))?;
    container_path(utf8).map_err(|why| Errcode::usage(format!("{what} {why}")))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::MakePrivate => write!(f, "make / recursively private"),
            Step::MakeSlave => write!(f, "make / recursively slave"),
            Step::Mount(e) => write!(
                f,
                "mount {} at {}{}",
                e.fstype,
                e.destination.display(),
                Shown(&e.options)
            ),
            Step::Bind {
                index,
                target,
                options,
            } => write!(
                f,
                "attach source #{index} at {}{}",
                target.display(),
                Shown(options)
            ),
            Step::Cgroup { target, options } => write!(
                f,
                "cgroup filesystems at {}{}",
                target.display(),
                Shown(options)
            ),
            Step::Device { node, bind } => write!(
                f,
                "{} {} ({:?} {}:{}, mode {:o}, owner {}:{})",
                if *bind { "bind device" } else { "mknod" },
                node.path.display(),
                node.kind,
                node.major,
                node.minor,
                node.file_mode,
                node.uid,
                node.gid
            ),
            Step::Clone { index } => write!(f, "clone source #{index}"),
            Step::RootFromDir {
                dir,
                read_only,
                idmap,
            } => write!(
                f,
                "bind {} as the root{}{}",
                dir.display(),
                if *read_only { " (read-only)" } else { "" },
                if *idmap { " (idmapped)" } else { "" }
            ),
            Step::RootScratch { size } => write!(f, "tmpfs of {size} bytes as the root"),
            Step::Dir { path, mode } => write!(f, "mkdir {} ({mode:o})", path.display()),
            Step::Symlink { path, target } => {
                write!(f, "symlink {} -> {}", path.display(), target.display())
            }
            Step::HostDir { path, .. } => write!(f, "host {} read-only", path.display()),
            Step::Attach { index, target } => {
                write!(f, "attach source #{index} at {}", target.display())
            }
            Step::Fresh { fs, target, .. } => write!(f, "mount {fs:?} at {}", target.display()),
            Step::Mask { path } => write!(f, "mask {}", path.display()),
            Step::ReadOnly { path } => write!(f, "read-only {}", path.display()),
            Step::RootReadOnly => write!(f, "root read-only"),
            Step::Pivot => write!(f, "pivot_root"),
            Step::MoveRoot => write!(f, "move the root to / and chroot"),
            Step::RootPropagation(p) => write!(f, "make / {p}"),
        }
    }
}

/// Shows what mount options ask beyond the type: flags (hex), propagation, data.
struct Shown<'a>(&'a MountOptions);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        options_suffix(f, self.0)
    }
}

fn options_suffix(f: &mut fmt::Formatter<'_>, o: &MountOptions) -> fmt::Result {
    if o.flags != 0 {
        write!(f, " flags {:#x}", o.flags)?;
    }
    if o.rec_set != 0 || o.rec_clear != 0 {
        write!(f, " recursive +{:#x} -{:#x}", o.rec_set, o.rec_clear)?;
    }
    if let Some(p) = o.propagation {
        write!(f, " {p}")?;
    }
    if let Some(d) = o.data_string() {
        write!(f, " ({d})")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(plan: &MountPlan, pred: impl Fn(&Step) -> bool) -> usize {
        plan.steps
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("step missing in {:#?}", plan.steps))
    }

    #[test]
    fn parse_bind_forms() {
        let b = BindMount::parse("/srv/data:/data").unwrap();
        assert_eq!(b.source, Path::new("/srv/data"));
        assert_eq!(b.target, Path::new("/data"));
        assert!(!b.read_only);
        assert!(BindMount::parse("/a:/b:ro").unwrap().read_only);
        assert!(!BindMount::parse("/a:/b:rw").unwrap().read_only);
        assert_eq!(
            BindMount::parse("/a:/b//c/").unwrap().target,
            Path::new("/b/c")
        );
        // Options: nodev and no idmap unless asked; they combine with commas.
        let flags = |spec: &str| {
            let b = BindMount::parse(spec).unwrap();
            (b.read_only, b.dev, b.idmap)
        };
        assert_eq!(flags("/a:/b"), (false, false, false));
        assert_eq!(flags("/a:/b:dev"), (false, true, false));
        assert_eq!(flags("/a:/b:idmap"), (false, false, true));
        assert_eq!(flags("/a:/b:ro,dev,idmap"), (true, true, true));
        assert_eq!(flags("/a:/b:ro,rw"), (false, false, false));
    }

    #[test]
    fn bind_options_reach_the_plan() {
        let mut cfg = MountConfig::new(Root::Dir("/r".into()));
        for spec in ["/s0:/t0", "/s1:/t1:dev", "/s2:/t2:idmap,ro"] {
            cfg.binds.push(BindMount::parse(spec).unwrap());
        }
        cfg.idmap_root = true;
        cfg.scratch_size = 1 << 20;
        let p = plan(&cfg).unwrap();
        let src = |path: &str| {
            let s = p
                .sources
                .iter()
                .find(|s| s.path == Path::new(path))
                .unwrap();
            (s.nodev, s.idmap, s.read_only)
        };
        assert_eq!(src("/s0"), (true, false, false));
        assert_eq!(src("/s1"), (false, false, false));
        assert_eq!(src("/s2"), (true, true, true));
        // The host's device nodes are bound read-only and, being devices, without nodev.
        assert_eq!(src("/dev/null"), (false, false, true));
        assert!(p.steps.contains(&Step::RootFromDir {
            dir: "/r".into(),
            read_only: false,
            idmap: true
        }));
        let mut scratch = MountConfig::new(Root::Scratch);
        scratch.scratch_size = 1 << 20;
        let p = plan(&scratch).unwrap();
        assert!(p.steps.contains(&Step::RootScratch { size: 1_048_576 }));
        assert_eq!(
            Step::RootScratch { size: 1_048_576 }.to_string(),
            "tmpfs of 1048576 bytes as the root"
        );
        assert_eq!(MountConfig::new(Root::Scratch).scratch_size, 268_435_456);
    }

    #[test]
    fn parse_bind_rejects_bad_specs_with_reasons() {
        for (spec, why) in [
            ("/a", "expected SRC:DST"),
            (":/b", "SRC is empty"),
            ("/a:", "DST is empty"),
            ("/a:b", "not an absolute path"),
            ("/a:/b/../etc", "'.' or '..'"),
            ("/a:/..", "'.' or '..'"),
            ("/a:/b/./c", "'.' or '..'"),
            ("/a:/", "must not be / itself"),
            ("/a:/b:rx", "unknown option 'rx'"),
            ("/a:/b:ro,suid", "unknown option 'suid'"),
        ] {
            let e = BindMount::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
            assert!(!e.contains("--"), "no flag names: {e}");
        }
    }

    #[test]
    fn dir_root_plan_order() {
        let mut cfg = MountConfig::new(Root::Dir("/srv/root".into()));
        cfg.binds
            .push(BindMount::parse("/srv/data:/data:ro").unwrap());
        cfg.readonly_root = true;
        let p = plan(&cfg).unwrap();
        assert_eq!(p.steps[0], Step::MakePrivate);
        let root = pos(&p, |s| matches!(s, Step::RootFromDir { .. }));
        let last_clone = p
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::Clone { .. }))
            .unwrap();
        assert!(last_clone < root, "sources are cloned before the root");
        let proc_ = pos(&p, |s| matches!(s, Step::Fresh { fs: Fs::Proc, .. }));
        let dev = pos(&p, |s| {
            matches!(
                s,
                Step::Fresh {
                    fs: Fs::DevTmpfs,
                    ..
                }
            )
        });
        let null = pos(
            &p,
            |s| matches!(s, Step::Attach { target, .. } if target == Path::new("/dev/null")),
        );
        let data = pos(
            &p,
            |s| matches!(s, Step::Attach { target, .. } if target == Path::new("/data")),
        );
        let mask = pos(&p, |s| matches!(s, Step::Mask { .. }));
        assert!(
            matches!(
                &p.steps[root],
                Step::RootFromDir {
                    read_only: true,
                    idmap: false,
                    ..
                }
            ),
            "a directory root goes read-only with its sub-mounts when it is bound"
        );
        assert!(!p.steps.contains(&Step::RootReadOnly));
        assert!(root < proc_ && proc_ < dev && dev < null && null < data);
        assert!(proc_ < mask, "masks come after /proc is mounted");
        assert_eq!(p.steps.last(), Some(&Step::Pivot));
        let src = &p.sources[match p.steps[data] {
            Step::Attach { index, .. } => index,
            _ => unreachable!(),
        }];
        assert_eq!(src.path, Path::new("/srv/data"));
        assert!(src.read_only && src.recursive && !src.optional);
    }

    #[test]
    fn scratch_root_binds_host_dirs_read_only() {
        let p = plan(&MountConfig::new(Root::Scratch)).unwrap();
        let scratch = pos(&p, |s| matches!(s, Step::RootScratch { .. }));
        for d in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
            let i = pos(
                &p,
                |s| matches!(s, Step::HostDir { path, .. } if path == Path::new(d)),
            );
            assert!(i > scratch);
            let Step::HostDir { index, .. } = p.steps[i] else {
                unreachable!()
            };
            let src = &p.sources[index];
            assert_eq!(src.path, Path::new(d));
            assert!(src.read_only && src.optional && src.recursive, "{src:?}");
        }
        let host_dirs: Vec<&Path> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::HostDir { path, .. } => Some(path.as_path()),
                _ => None,
            })
            .collect();
        assert_eq!(
            host_dirs,
            ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"].map(Path::new)
        );
        assert!(!p.steps.contains(&Step::RootReadOnly));
        let masks: Vec<&Path> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Mask { path } if path.starts_with("/etc") => Some(path.as_path()),
                _ => None,
            })
            .collect();
        assert_eq!(
            masks,
            [
                "/etc/shadow",
                "/etc/shadow-",
                "/etc/gshadow",
                "/etc/gshadow-",
                "/etc/sudoers",
                "/etc/sudoers.d",
                "/etc/ssh",
                "/etc/ssl/private",
            ]
            .map(Path::new)
        );
    }

    /// The whole scratch-root plan with one read-only bind and a read-only root, line by line.
    const SCRATCH_DESCRIBED: &[&str] = &[
        "make / recursively private",
        "clone /dev/null read-only",
        "clone /dev/zero read-only",
        "clone /dev/full read-only",
        "clone /dev/random read-only",
        "clone /dev/urandom read-only",
        "clone /dev/tty read-only",
        "clone /srv/data (recursive) read-only nodev",
        "clone /usr (recursive) read-only nodev",
        "clone /bin (recursive) read-only nodev",
        "clone /sbin (recursive) read-only nodev",
        "clone /lib (recursive) read-only nodev",
        "clone /lib64 (recursive) read-only nodev",
        "clone /etc (recursive) read-only nodev",
        "tmpfs of 268435456 bytes as the root",
        "mkdir /proc (555)",
        "mkdir /sys (555)",
        "mkdir /dev (755)",
        "mkdir /tmp (1777)",
        "mkdir /root (700)",
        "host /usr read-only",
        "host /bin read-only",
        "host /sbin read-only",
        "host /lib read-only",
        "host /lib64 read-only",
        "host /etc read-only",
        "mount Proc at /proc",
        "mount Sysfs at /sys",
        "mount DevTmpfs at /dev",
        "bind /dev/null to /dev/null",
        "bind /dev/zero to /dev/zero",
        "bind /dev/full to /dev/full",
        "bind /dev/random to /dev/random",
        "bind /dev/urandom to /dev/urandom",
        "bind /dev/tty to /dev/tty",
        "mkdir /dev/pts (755)",
        "mount Devpts at /dev/pts",
        "mkdir /dev/shm (1777)",
        "mount Shm at /dev/shm",
        "symlink /dev/ptmx -> pts/ptmx",
        "symlink /dev/fd -> /proc/self/fd",
        "symlink /dev/stdin -> /proc/self/fd/0",
        "symlink /dev/stdout -> /proc/self/fd/1",
        "symlink /dev/stderr -> /proc/self/fd/2",
        "bind /srv/data to /data",
        "mask /proc/kcore",
        "mask /proc/keys",
        "mask /proc/timer_list",
        "mask /proc/sched_debug",
        "mask /proc/sysrq-trigger",
        "mask /proc/latency_stats",
        "mask /proc/acpi",
        "mask /proc/scsi",
        "mask /proc/asound",
        "mask /sys/firmware",
        "mask /sys/devices/virtual/powercap",
        "mask /etc/shadow",
        "mask /etc/shadow-",
        "mask /etc/gshadow",
        "mask /etc/gshadow-",
        "mask /etc/sudoers",
        "mask /etc/sudoers.d",
        "mask /etc/ssh",
        "mask /etc/ssl/private",
        "read-only /proc/sys",
        "read-only /proc/bus",
        "read-only /proc/fs",
        "read-only /proc/irq",
        "root read-only",
        "pivot_root",
    ];

    fn scratch_with_data() -> MountPlan {
        let mut cfg = MountConfig::new(Root::Scratch);
        cfg.binds
            .push(BindMount::parse("/srv/data:/data:ro").unwrap());
        cfg.readonly_root = true;
        plan(&cfg).unwrap()
    }

    #[test]
    fn describe_scratch_root_line_by_line() {
        assert_eq!(scratch_with_data().describe(), SCRATCH_DESCRIBED);
    }

    #[test]
    fn targets_of_the_scratch_root() {
        let p = scratch_with_data();
        let targets: Vec<&Path> = p.targets().collect();
        assert_eq!(
            targets,
            [
                "/usr",
                "/bin",
                "/sbin",
                "/lib",
                "/lib64",
                "/etc",
                "/proc",
                "/sys",
                "/dev",
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/pts",
                "/dev/shm",
                "/data",
            ]
            .map(Path::new)
        );
    }

    #[test]
    fn describe_dir_root_with_host_sys_and_without_masks() {
        let mut cfg = MountConfig::new(Root::Dir("/srv/root".into()));
        cfg.sysfs = Sysfs::HostBind;
        cfg.readonly_root = true;
        cfg.masked.clear();
        cfg.readonly.clear();
        cfg.devpts_gid = Some(5);
        cfg.binds.push(BindMount::parse("/srv/rw:/rw").unwrap());
        let p = plan(&cfg).unwrap();
        assert_eq!(
            p.describe(),
            [
                "make / recursively private",
                "clone /dev/null read-only",
                "clone /dev/zero read-only",
                "clone /dev/full read-only",
                "clone /dev/random read-only",
                "clone /dev/urandom read-only",
                "clone /dev/tty read-only",
                "clone /sys (recursive) read-only nodev",
                "clone /srv/rw (recursive) nodev",
                "bind /srv/root as the root (read-only)",
                "mount Proc at /proc",
                "bind /sys to /sys",
                "mount DevTmpfs at /dev",
                "bind /dev/null to /dev/null",
                "bind /dev/zero to /dev/zero",
                "bind /dev/full to /dev/full",
                "bind /dev/random to /dev/random",
                "bind /dev/urandom to /dev/urandom",
                "bind /dev/tty to /dev/tty",
                "mkdir /dev/pts (755)",
                "mount Devpts at /dev/pts",
                "mkdir /dev/shm (1777)",
                "mount Shm at /dev/shm",
                "symlink /dev/ptmx -> pts/ptmx",
                "symlink /dev/fd -> /proc/self/fd",
                "symlink /dev/stdin -> /proc/self/fd/0",
                "symlink /dev/stdout -> /proc/self/fd/1",
                "symlink /dev/stderr -> /proc/self/fd/2",
                "bind /srv/rw to /rw",
                "pivot_root",
            ]
        );
        assert!(p.steps.contains(&Step::Fresh {
            fs: Fs::Devpts,
            target: "/dev/pts".into(),
            gid: Some(5),
        }));
        let targets: Vec<&Path> = p.targets().collect();
        assert_eq!(
            targets,
            [
                "/proc",
                "/sys",
                "/dev",
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/pts",
                "/dev/shm",
                "/rw",
            ]
            .map(Path::new)
        );
    }

    #[test]
    fn describe_names_missing_sources_and_steps_display_their_indexes() {
        let p = MountPlan {
            sources: Vec::new(),
            steps: vec![
                Step::Clone { index: 3 },
                Step::Attach {
                    index: 3,
                    target: "/x".into(),
                },
                Step::RootFromDir {
                    dir: "/r".into(),
                    read_only: false,
                    idmap: true,
                },
            ],
            root: Root::Dir("/r".into()),
        };
        assert_eq!(
            p.describe(),
            [
                "clone #3 (missing)",
                "bind #3 to /x",
                "bind /r as the root (idmapped)"
            ]
        );
        assert_eq!(Step::Clone { index: 2 }.to_string(), "clone source #2");
        assert_eq!(
            Step::Attach {
                index: 4,
                target: "/y".into()
            }
            .to_string(),
            "attach source #4 at /y"
        );
    }

    #[test]
    fn host_network_binds_sys_instead_of_fresh_sysfs() {
        let mut cfg = MountConfig::new(Root::Scratch);
        cfg.sysfs = Sysfs::HostBind;
        let p = plan(&cfg).unwrap();
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s, Step::Fresh { fs: Fs::Sysfs, .. }))
        );
        assert!(
            p.sources
                .iter()
                .any(|s| s.path == Path::new("/sys") && s.read_only)
        );
    }

    #[test]
    fn relative_root_and_sources_are_refused() {
        assert!(plan(&MountConfig::new(Root::Dir("rel".into()))).is_err());
        let mut cfg = MountConfig::new(Root::Scratch);
        cfg.binds.push(BindMount {
            source: "rel".into(),
            target: "/x".into(),
            read_only: false,
            dev: false,
            idmap: false,
        });
        assert!(plan(&cfg).is_err());
    }

    fn oci_config() -> MountConfig {
        let mut cfg = MountConfig::new(Root::Dir("/b/rootfs".into()));
        cfg.masked = vec!["/proc/kcore".into()];
        cfg.readonly = vec!["/proc/sys".into()];
        cfg.entries = Some(vec![
            MountEntry::new("/proc", "proc", Some("proc"), &["nosuid"]).unwrap(),
            MountEntry::new("/dev", "tmpfs", Some("tmpfs"), &["nosuid", "mode=755"]).unwrap(),
            MountEntry::new(
                "/data",
                "none",
                Some("/srv/data"),
                &["rbind", "ro", "rslave"],
            )
            .unwrap(),
            MountEntry::new("/sys/fs/cgroup", "cgroup", Some("cgroup"), &["ro"]).unwrap(),
            MountEntry::new("/etc/hosts", "bind", Some("/srv/hosts"), &[]).unwrap(),
        ]);
        cfg.default_devices = true;
        cfg.devices = vec![DeviceNode {
            path: "/dev/fuse".into(),
            kind: DeviceKind::Char,
            major: 10,
            minor: 229,
            file_mode: 0o600,
            uid: 0,
            gid: 0,
        }];
        cfg
    }

    /// A plan that mounts a cgroup filesystem, of either type, says so (its process must be
    /// in its cgroup, in a namespace of its own, before its mounts); the default one does not.
    #[test]
    fn a_cgroup_mount_of_either_type_is_known() {
        assert!(plan(&oci_config()).unwrap().mounts_cgroup());
        let mut v2 = oci_config();
        v2.entries = Some(vec![
            MountEntry::new("/sys/fs/cgroup", "cgroup2", Some("cgroup"), &["ro"]).unwrap(),
        ]);
        assert!(plan(&v2).unwrap().mounts_cgroup());
        let mut none = oci_config();
        none.entries = Some(vec![
            MountEntry::new("/proc", "proc", Some("proc"), &["nosuid"]).unwrap(),
        ]);
        assert!(!plan(&none).unwrap().mounts_cgroup());
        let default = MountConfig::new(Root::Dir("/b/rootfs".into()));
        assert!(!plan(&default).unwrap().mounts_cgroup());
    }

    #[test]
    fn explicit_layout_line_by_line() {
        let mut cfg = oci_config();
        cfg.readonly_root = true;
        cfg.root_propagation = Propagation::parse("rslave");
        let p = plan(&cfg).unwrap();
        assert_eq!(
            p.describe(),
            [
                "make / recursively slave",
                "clone /srv/data (recursive)",
                "clone /srv/hosts",
                "bind /b/rootfs as the root",
                "mount proc at /proc flags 0x2",
                "mount tmpfs at /dev flags 0x2 (mode=755)",
                "bind /srv/data to /data flags 0x1 rslave",
                "cgroup filesystems at /sys/fs/cgroup flags 0x1",
                "bind /srv/hosts to /etc/hosts",
                "mknod /dev/null (Char 1:3, mode 666, owner 0:0)",
                "mknod /dev/zero (Char 1:5, mode 666, owner 0:0)",
                "mknod /dev/full (Char 1:7, mode 666, owner 0:0)",
                "mknod /dev/random (Char 1:8, mode 666, owner 0:0)",
                "mknod /dev/urandom (Char 1:9, mode 666, owner 0:0)",
                "mknod /dev/tty (Char 5:0, mode 666, owner 0:0)",
                "mknod /dev/fuse (Char 10:229, mode 600, owner 0:0)",
                "symlink /dev/ptmx -> pts/ptmx",
                "symlink /dev/fd -> /proc/self/fd",
                "symlink /dev/stdin -> /proc/self/fd/0",
                "symlink /dev/stdout -> /proc/self/fd/1",
                "symlink /dev/stderr -> /proc/self/fd/2",
                "mask /proc/kcore",
                "read-only /proc/sys",
                "root read-only",
                "pivot_root",
                "make / rslave",
            ]
        );
        let targets: Vec<&Path> = p.targets().collect();
        assert_eq!(
            targets,
            ["/proc", "/dev", "/data", "/sys/fs/cgroup", "/etc/hosts"].map(Path::new)
        );
    }

    #[test]
    fn explicit_layout_variants() {
        let mut cfg = oci_config();
        cfg.no_pivot = true;
        cfg.in_userns = true;
        cfg.default_devices = false;
        cfg.binds.push(BindMount::parse("/s:/extra").unwrap());
        let p = plan(&cfg).unwrap();
        assert_eq!(p.steps[0], Step::MakePrivate);
        assert_eq!(p.steps.last(), Some(&Step::MoveRoot));
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Symlink { .. })));
        let devices: Vec<&Step> = p
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Device { .. }))
            .collect();
        assert_eq!(devices.len(), 1);
        assert!(matches!(devices[0], Step::Device { bind: true, .. }));
        assert!(!p.steps.contains(&Step::RootReadOnly));
        // Extra binds come after the entries and before the masks.
        let extra = pos(
            &p,
            |s| matches!(s, Step::Attach { target, .. } if target == Path::new("/extra")),
        );
        let hosts = pos(
            &p,
            |s| matches!(s, Step::Bind { target, .. } if target == Path::new("/etc/hosts")),
        );
        let mask = pos(&p, |s| matches!(s, Step::Mask { .. }));
        assert!(hosts < extra && extra < mask);
        // The caller's device replaces a default one of the same path.
        let mut cfg = oci_config();
        cfg.devices[0].path = "/dev/null".into();
        let p = plan(&cfg).unwrap();
        let nulls: Vec<&DeviceNode> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Device { node, .. } if node.path == Path::new("/dev/null") => Some(node),
                _ => None,
            })
            .collect();
        assert_eq!(nulls.len(), 1);
        assert_eq!(nulls[0].major, 10);
        // rshared: set up as a slave, shared at the end; private kinds start private.
        let mut cfg = oci_config();
        cfg.root_propagation = Propagation::parse("rshared");
        let p = plan(&cfg).unwrap();
        assert_eq!(p.steps[0], Step::MakeSlave);
        assert_eq!(
            p.steps.last(),
            Some(&Step::RootPropagation(
                Propagation::parse("rshared").unwrap()
            ))
        );
        cfg.root_propagation = Propagation::parse("rprivate");
        assert_eq!(plan(&cfg).unwrap().steps[0], Step::MakePrivate);
        // A scratch root with entries goes read-only at the end too.
        let mut cfg = oci_config();
        cfg.root = Root::Scratch;
        cfg.readonly_root = true;
        let p = plan(&cfg).unwrap();
        assert_eq!(p.steps[p.steps.len() - 2], Step::RootReadOnly);
    }

    #[test]
    fn explicit_layout_refusals() {
        let refuse = |e: MountEntry, why: &str| {
            let mut cfg = oci_config();
            cfg.entries = Some(vec![e]);
            let err = plan(&cfg).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("--"), "no flag names: {err}");
        };
        refuse(
            MountEntry::new("/", "tmpfs", None, &[]).unwrap(),
            "must not be / itself",
        );
        refuse(
            MountEntry::new("rel", "tmpfs", None, &[]).unwrap(),
            "not an absolute path",
        );
        refuse(
            MountEntry::new("/a/../b", "tmpfs", None, &[]).unwrap(),
            "'.' or '..'",
        );
        refuse(
            MountEntry::new("/a", "", None, &[]).unwrap(),
            "no filesystem type",
        );
        refuse(
            MountEntry::new("/a", "bind", Some("rel"), &[]).unwrap(),
            "not an absolute path",
        );
        refuse(
            MountEntry::new("/a", "none", None, &["bind"]).unwrap(),
            "(none)",
        );
        let mut cfg = oci_config();
        cfg.masked = vec!["proc/kcore".into()];
        assert!(plan(&cfg).unwrap_err().to_string().contains("masked path"));
        let mut cfg = oci_config();
        cfg.devices[0].path = "/".into();
        assert!(plan(&cfg).unwrap_err().to_string().contains("device path"));
    }

    proptest! {
        #[test]
        fn dot_dot_never_gets_through(parts in proptest::collection::vec("[a-z.]{1,4}", 1..5)) {
            let dst = format!("/{}", parts.join("/"));
            let has_dots = parts.iter().any(|p| p == ".." || p == ".");
            let r = BindMount::parse(&format!("/src:{dst}"));
            prop_assert_eq!(r.is_err(), has_dots);
            if let Ok(b) = r {
                prop_assert!(b.target.is_absolute());
                prop_assert!(b.target.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
            }
        }

        #[test]
        fn parse_never_panics(spec in "\\PC{0,40}") {
            let _ = BindMount::parse(&spec);
        }

        #[test]
        fn every_bind_is_attached_once_in_order(n in 0usize..20, ro in any::<bool>()) {
            let mut cfg = MountConfig::new(Root::Dir("/r".into()));
            for i in 0..n {
                cfg.binds.push(BindMount::parse(&format!("/s{i}:/t{i}{}", if ro { ":ro" } else { "" })).unwrap());
            }
            let p = plan(&cfg).unwrap();
            let attached: Vec<(PathBuf, PathBuf)> = p.steps.iter().filter_map(|s| match s {
                Step::Attach { index, target } if p.sources[*index].path.to_string_lossy().starts_with("/s") => {
                    Some((p.sources[*index].path.clone(), target.clone()))
                }
                _ => None,
            }).collect();
            for (src, dst) in &attached {
                prop_assert_eq!(&src.to_string_lossy()[2..], &dst.to_string_lossy()[2..]);
                prop_assert_eq!(p.sources.iter().find(|s| &s.path == src).map(|s| s.read_only), Some(ro));
            }
            let attached: Vec<PathBuf> = attached.into_iter().map(|(_, t)| t).collect();
            let want: Vec<PathBuf> = (0..n).map(|i| PathBuf::from(format!("/t{i}"))).collect();
            prop_assert_eq!(attached, want);
        }
    }
}
