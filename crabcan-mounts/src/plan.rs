//! The mount plan: plain data computed from a [`MountConfig`], with no side effects.

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

/// One extra bind mount (`--add SRC:DST[:OPTIONS]`).
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
    /// `..` components.
    pub fn parse(spec: &str) -> Result<BindMount> {
        let bad = |why: &str| Errcode::usage(format!("invalid --add '{spec}': {why}"));
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

/// Everything that decides the container's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// The root filesystem.
    pub root: Root,
    /// Mount the root read-only (`/dev`, `/proc` and extra binds keep their own modes).
    pub read_only: bool,
    /// Extra bind mounts, in order.
    pub binds: Vec<BindMount>,
    /// How `/sys` is provided.
    pub sysfs: Sysfs,
    /// The group owning pty slaves (the `tty` group, 5) when it is mapped in the container.
    pub devpts_gid: Option<u32>,
    /// Hide [`MASKED_PATHS`] and make [`READONLY_PATHS`] read-only.
    pub mask_paths: bool,
    /// Bind a directory root through the container's id map (an idmapped mount), so that
    /// its files keep their owners inside while container root is an unprivileged host id.
    pub idmap_root: bool,
    /// Size cap of a scratch root's tmpfs, in bytes.
    pub scratch_size: u64,
}

/// Default size cap of a scratch root's tmpfs: 256 MiB.
pub const DEFAULT_SCRATCH_SIZE: u64 = 256 << 20;

impl MountConfig {
    /// A config with the usual defaults for `root`.
    pub fn new(root: Root) -> MountConfig {
        MountConfig {
            root,
            read_only: false,
            binds: Vec::new(),
            sysfs: Sysfs::Fresh,
            devpts_gid: None,
            mask_paths: true,
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
    /// filesystems, so the parent makes this clone ([`crate::open_idmapped`]), not `apply`.
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
    /// Clone host path `sources[index]` as a detached tree.
    Clone { index: usize },
    /// Use a host directory as the root (a recursive `nodev` bind of it onto itself),
    /// read-only with all its sub-mounts when asked (before anything is mounted on it), and
    /// idmapped when asked (that clone is made by the parent: [`crate::open_idmapped`]).
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
    /// Hide `path` if it exists.
    Mask { path: PathBuf },
    /// Make `path` read-only if it exists.
    ReadOnly { path: PathBuf },
    /// Make the (scratch) root mount read-only, once everything is set up in it.
    RootReadOnly,
    /// `pivot_root` into the new root and detach the old one.
    Pivot,
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
    /// One line per step, with source paths spelled out (for `--debug`).
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
                other => other.to_string(),
            })
            .collect()
    }

    /// Every mount target of the plan, in order (for logs and tests).
    pub fn targets(&self) -> impl Iterator<Item = &Path> {
        self.steps.iter().filter_map(|s| match s {
            Step::Attach { target, .. } | Step::Fresh { target, .. } => Some(target.as_path()),
            Step::HostDir { path, .. } => Some(path.as_path()),
            _ => None,
        })
    }
}

/// Computes the mount plan for `cfg`. Pure: touches nothing.
pub fn plan(cfg: &MountConfig) -> Result<MountPlan> {
    let mut sources = Vec::new();
    let mut steps = vec![Step::MakePrivate];
    let mut add_source = |src: Source, steps: &mut Vec<Step>| {
        sources.push(src);
        let index = sources.len() - 1;
        steps.push(Step::Clone { index });
        index
    };

    let dev_idx: Vec<usize> = DEVICES
        .iter()
        .map(|d| {
            add_source(
                // Read-only: writing a device node still works, but chmod, chown and
                // xattrs on the host's inode fail (EROFS) whoever owns it.
                Source {
                    path: Path::new("/dev").join(d),
                    recursive: false,
                    read_only: true,
                    optional: false,
                    nodev: false,
                    idmap: false,
                },
                &mut steps,
            )
        })
        .collect();
    let sys_idx = (cfg.sysfs == Sysfs::HostBind).then(|| {
        add_source(
            Source {
                path: "/sys".into(),
                recursive: true,
                read_only: true,
                optional: false,
                nodev: true,
                idmap: false,
            },
            &mut steps,
        )
    });
    let mut bind_idx = Vec::with_capacity(cfg.binds.len());
    for b in &cfg.binds {
        if !b.source.is_absolute() {
            return Err(Errcode::usage(format!(
                "invalid --add source '{}': not an absolute path",
                b.source.display()
            )));
        }
        let utf8 = b.target.to_str().ok_or_else(|| {
            Errcode::usage(format!(
                "invalid --add target '{}': not valid UTF-8",
                b.target.display()
            ))
        })?;
        let target = container_path(utf8).map_err(|why| {
            Errcode::usage(format!(
                "invalid --add target '{}': {why}",
                b.target.display()
            ))
        })?;
        let idx = add_source(
            Source {
                path: b.source.clone(),
                recursive: true,
                read_only: b.read_only,
                optional: false,
                nodev: !b.dev,
                idmap: b.idmap,
            },
            &mut steps,
        );
        bind_idx.push((idx, target));
    }

    match &cfg.root {
        Root::Dir(dir) => {
            if !dir.is_absolute() {
                return Err(Errcode::usage(format!(
                    "invalid --mount '{}': not an absolute path",
                    dir.display()
                )));
            }
            steps.push(Step::RootFromDir {
                dir: dir.clone(),
                read_only: cfg.read_only,
                idmap: cfg.idmap_root,
            });
        }
        Root::Scratch => {
            let host_idx: Vec<(usize, &str)> = SCRATCH_HOST_DIRS
                .iter()
                .map(|d| {
                    let idx = add_source(
                        Source {
                            path: d.into(),
                            recursive: true,
                            read_only: true,
                            optional: true,
                            nodev: true,
                            idmap: false,
                        },
                        &mut steps,
                    );
                    (idx, *d)
                })
                .collect();
            steps.push(Step::RootScratch {
                size: cfg.scratch_size,
            });
            for (dir, mode) in [
                ("/proc", 0o555),
                ("/sys", 0o555),
                ("/dev", 0o755),
                ("/tmp", 0o1777),
                ("/root", 0o700),
            ] {
                steps.push(Step::Dir {
                    path: dir.into(),
                    mode,
                });
            }
            for (index, d) in host_idx {
                steps.push(Step::HostDir {
                    index,
                    path: d.into(),
                });
            }
        }
    }

    steps.push(Step::Fresh {
        fs: Fs::Proc,
        target: "/proc".into(),
        gid: None,
    });
    steps.push(match sys_idx {
        Some(index) => Step::Attach {
            index,
            target: "/sys".into(),
        },
        None => Step::Fresh {
            fs: Fs::Sysfs,
            target: "/sys".into(),
            gid: None,
        },
    });
    steps.push(Step::Fresh {
        fs: Fs::DevTmpfs,
        target: "/dev".into(),
        gid: None,
    });
    for (d, index) in DEVICES.iter().zip(dev_idx) {
        steps.push(Step::Attach {
            index,
            target: Path::new("/dev").join(d),
        });
    }
    steps.push(Step::Dir {
        path: "/dev/pts".into(),
        mode: 0o755,
    });
    steps.push(Step::Fresh {
        fs: Fs::Devpts,
        target: "/dev/pts".into(),
        gid: cfg.devpts_gid,
    });
    steps.push(Step::Dir {
        path: "/dev/shm".into(),
        mode: 0o1777,
    });
    steps.push(Step::Fresh {
        fs: Fs::Shm,
        target: "/dev/shm".into(),
        gid: None,
    });
    for (path, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            path: path.into(),
            target: target.into(),
        });
    }
    for (index, target) in bind_idx {
        steps.push(Step::Attach { index, target });
    }
    if cfg.mask_paths {
        steps.extend(MASKED_PATHS.iter().map(|p| Step::Mask { path: p.into() }));
        if cfg.root == Root::Scratch {
            steps.extend(
                SCRATCH_MASKED_PATHS
                    .iter()
                    .map(|p| Step::Mask { path: p.into() }),
            );
        }
        steps.extend(
            READONLY_PATHS
                .iter()
                .map(|p| Step::ReadOnly { path: p.into() }),
        );
    }
    if cfg.read_only && cfg.root == Root::Scratch {
        steps.push(Step::RootReadOnly);
    }
    steps.push(Step::Pivot);
    Ok(MountPlan {
        sources,
        steps,
        root: cfg.root.clone(),
    })
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::MakePrivate => write!(f, "make / recursively private"),
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
        }
    }
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
            assert!(e.starts_with(&format!("invalid --add '{spec}'")), "{e}");
        }
    }

    #[test]
    fn dir_root_plan_order() {
        let mut cfg = MountConfig::new(Root::Dir("/srv/root".into()));
        cfg.binds
            .push(BindMount::parse("/srv/data:/data:ro").unwrap());
        cfg.read_only = true;
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
        cfg.read_only = true;
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
        cfg.read_only = true;
        cfg.mask_paths = false;
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
