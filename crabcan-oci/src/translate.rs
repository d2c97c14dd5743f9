//! config.json → [`Plan`]: each field carried over or refused by its JSON path.

use crate::plan::*;
use crate::spec;
use crate::{Bundle, field_error};
use crabcan_errors::Errcode;
use crabcan_errors::Result;
use crabcan_security::{CapSet, Capabilities, Capability, Seccomp};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// What the host offers that decides how some fields are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// AppArmor is enabled (its labels would have to be applied).
    pub apparmor: bool,
    /// SELinux is enabled.
    pub selinux: bool,
}

impl Host {
    /// Asks the running kernel.
    pub fn detect() -> Host {
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim().starts_with('Y'));
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        Host { apparmor, selinux }
    }
}

/// Translates the bundle's config into a plan; `warn` receives one line per field that is
/// skipped on purpose (a security label for an LSM the host does not run).
pub fn translate(b: &Bundle, host: Host, warn: &mut dyn FnMut(String)) -> Result<Plan> {
    let s = &b.spec;
    refuse_if(s.solaris.is_some(), "solaris")?;
    refuse_if(s.windows.is_some(), "windows")?;
    refuse_if(s.vm.is_some(), "vm")?;
    refuse_if(s.zos.is_some(), "zos")?;
    refuse_if(nonempty(&s.uid_mappings), "uidMappings")?;
    refuse_if(nonempty(&s.gid_mappings), "gidMappings")?;
    let version = &s.oci_version;
    if !version.starts_with("1.") {
        return Err(field_error(
            "ociVersion",
            format!("unsupported version {version:?} (1.x expected)"),
        ));
    }
    let root = root(b)?;
    let linux = s
        .linux
        .as_ref()
        .ok_or_else(|| field_error("linux", "missing (a Linux container needs it)"))?;
    let namespaces = namespaces(linux)?;
    let has = |k: NsKind| namespaces.iter().any(|n| n.kind == k);
    let creates = |k: NsKind| namespaces.iter().any(|n| n.kind == k && n.path.is_none());
    let uid_mappings = id_mappings(&linux.uid_mappings, "linux.uidMappings")?;
    let gid_mappings = id_mappings(&linux.gid_mappings, "linux.gidMappings")?;
    if creates(NsKind::User) {
        if uid_mappings.is_empty() || gid_mappings.is_empty() {
            return Err(field_error(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    } else if !uid_mappings.is_empty() || !gid_mappings.is_empty() {
        let at = if uid_mappings.is_empty() {
            "linux.gidMappings"
        } else {
            "linux.uidMappings"
        };
        return Err(field_error(
            at,
            "id mappings need a new user namespace in linux.namespaces",
        ));
    }
    let hostname = s.hostname.clone().filter(|h| !h.is_empty());
    let domainname = s.domainname.clone().filter(|h| !h.is_empty());
    for (set, path) in [(&hostname, "hostname"), (&domainname, "domainname")] {
        if let Some(name) = set {
            if !creates(NsKind::Uts) {
                return Err(field_error(
                    path,
                    "setting it needs a new uts namespace in linux.namespaces",
                ));
            }
            if name.len() > 64 || name.contains('\0') {
                return Err(field_error(
                    path,
                    format!("invalid name {name:?} (at most 64 bytes, no NUL)"),
                ));
            }
        }
    }
    let process = process(s, host, warn)?;
    let seccomp = match b.raw.pointer("/linux/seccomp") {
        None | Some(serde_json::Value::Null) => Seccomp::Unconfined,
        Some(v) => Seccomp::Profile(
            crabcan_security::profile::from_value(v)
                .map_err(|e| Errcode::usage(e.describe_in(crate::CONFIG_FILE, "linux.seccomp")))?,
        ),
    };
    let sysctl = sysctl(linux, &has)?;
    refuse_if(nonempty_map(&linux.net_devices), "linux.netDevices")?;
    refuse_if(linux.intel_rdt.is_some(), "linux.intelRdt")?;
    refuse_if(linux.memory_policy.is_some(), "linux.memoryPolicy")?;
    refuse_if(nonempty_map(&linux.time_offsets), "linux.timeOffsets")?;
    if let Some(label) = linux.mount_label.as_deref().filter(|l| !l.is_empty()) {
        if host.selinux {
            return Err(field_error(
                "linux.mountLabel",
                "SELinux labels are not supported",
            ));
        }
        warn(format!(
            "config.json linux.mountLabel {label:?} skipped: SELinux is not enabled on this host"
        ));
    }
    let personality = match &linux.personality {
        None => None,
        Some(p) => {
            if p.flags.as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(field_error(
                    "linux.personality.flags",
                    "not supported (no flags may be set)",
                ));
            }
            Some(match p.domain {
                spec::PersonalityDomain::Linux => 0x0000,
                spec::PersonalityDomain::Linux32 => 0x0008,
            })
        }
    };
    let hooks = hooks(s.hooks.as_ref())?;
    let mounts = mounts(s.mounts.as_deref().unwrap_or(&[]))?;
    let masked_paths = abs_paths(&linux.masked_paths, "linux.maskedPaths")?;
    let readonly_paths = abs_paths(&linux.readonly_paths, "linux.readonlyPaths")?;
    let devices = devices(linux.devices.as_deref().unwrap_or(&[]))?;
    let rootfs_propagation = match linux.rootfs_propagation.as_deref() {
        None | Some("") => None,
        Some(p) => Some(crabcan_mounts::Propagation::parse(p).ok_or_else(|| {
            field_error(
                "linux.rootfsPropagation",
                format!(
                    "unknown propagation {p:?} (private, rprivate, shared, rshared, slave, \
                     rslave, unbindable, runbindable)"
                ),
            )
        })?),
    };
    let cgroups_path = match linux.cgroups_path.as_ref() {
        None => None,
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(
            crabcan_cgroups::CgroupPath::parse(&p.to_string_lossy())
                .map_err(|e| e.context(format!("{} linux.cgroupsPath", crate::CONFIG_FILE)))?,
        ),
    };
    let mut resources = match &linux.resources {
        None => crabcan_cgroups::Resources::default(),
        Some(r) => {
            refuse_if(nonempty_map(&r.rdma), "linux.resources.rdma")?;
            crate::resources::resources(r)?
        }
    };
    // As runc: the config's device rules, then the nodes every container has, then the
    // ones it asks for in linux.devices.
    if let Some(rules) = resources.devices.as_mut() {
        for r in crabcan_cgroups::default_rules()
            .into_iter()
            .filter(|r| r.allow)
        {
            crate::resources::push_allow(rules, r);
        }
        for d in &devices {
            let kind = match d.kind {
                crabcan_mounts::DeviceKind::Char => crabcan_cgroups::DeviceKind::Char,
                crabcan_mounts::DeviceKind::Block => crabcan_cgroups::DeviceKind::Block,
                crabcan_mounts::DeviceKind::Fifo => continue,
            };
            let (Ok(major), Ok(minor)) = (u32::try_from(d.major), u32::try_from(d.minor)) else {
                continue;
            };
            crate::resources::push_allow(
                rules,
                crabcan_cgroups::DeviceRule {
                    allow: true,
                    kind,
                    major: Some(major),
                    minor: Some(minor),
                    access: crabcan_cgroups::Access::RWM,
                },
            );
        }
    }
    let annotations: BTreeMap<String, String> = s
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Plan {
        root,
        root_readonly: s.root.as_ref().and_then(|r| r.readonly).unwrap_or(false),
        namespaces,
        uid_mappings,
        gid_mappings,
        hostname,
        domainname,
        process,
        seccomp,
        sysctl,
        personality,
        hooks,
        mounts,
        masked_paths,
        readonly_paths,
        devices,
        rootfs_propagation,
        cgroups_path,
        resources,
        annotations,
    })
}

fn refuse_if(cond: bool, path: &str) -> Result<()> {
    if cond {
        Err(field_error(path, "not supported"))
    } else {
        Ok(())
    }
}

fn nonempty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn nonempty_map<K, V>(v: &Option<std::collections::HashMap<K, V>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn root(b: &Bundle) -> Result<PathBuf> {
    let r = b
        .spec
        .root
        .as_ref()
        .ok_or_else(|| field_error("root", "missing"))?;
    let p = &r.path;
    if p.as_os_str().is_empty() {
        return Err(field_error("root.path", "empty"));
    }
    let full = if p.is_absolute() {
        p.clone()
    } else {
        b.dir.join(p)
    };
    Ok(full)
}

fn namespaces(linux: &spec::Linux) -> Result<Vec<Namespace>> {
    let mut out: Vec<Namespace> = Vec::new();
    for (i, ns) in linux.namespaces.iter().flatten().enumerate() {
        let at = format!("linux.namespaces[{i}]");
        let kind = match ns.kind {
            spec::NamespaceType::User => NsKind::User,
            spec::NamespaceType::Mount => NsKind::Mount,
            spec::NamespaceType::Uts => NsKind::Uts,
            spec::NamespaceType::Ipc => NsKind::Ipc,
            spec::NamespaceType::Network => NsKind::Net,
            spec::NamespaceType::Pid => NsKind::Pid,
            spec::NamespaceType::Cgroup => NsKind::Cgroup,
            spec::NamespaceType::Time => {
                return Err(field_error(
                    &format!("{at}.type"),
                    "time namespaces are not supported",
                ));
            }
        };
        if out.iter().any(|n| n.kind == kind) {
            return Err(field_error(
                &format!("{at}.type"),
                format!("{} namespace listed twice", kind.oci_name()),
            ));
        }
        let path = ns.path.clone().filter(|p| !p.as_os_str().is_empty());
        if let Some(p) = &path
            && !p.is_absolute()
        {
            return Err(field_error(
                &format!("{at}.path"),
                format!("{} is not an absolute path", p.display()),
            ));
        }
        out.push(Namespace { kind, path });
    }
    // A process in a user namespace it joined cannot create namespaces owned by the host's
    // user namespace, and one that creates a user namespace cannot join namespaces the
    // host's user namespace owns: only the consistent cases are taken.
    let user = out.iter().find(|n| n.kind == NsKind::User);
    if let Some(u) = user {
        let idx = out.iter().position(|n| n.kind == NsKind::User).unwrap_or(0);
        let mixed = if u.path.is_some() {
            out.iter()
                .any(|n| n.kind != NsKind::User && n.path.is_none())
        } else {
            out.iter().any(|n| n.path.is_some())
        };
        if mixed {
            return Err(field_error(
                &format!("linux.namespaces[{idx}]"),
                if u.path.is_some() {
                    "joining a user namespace while creating other namespaces is not supported"
                } else {
                    "creating a user namespace while joining other namespaces is not supported"
                },
            ));
        }
    }
    Ok(out)
}

fn id_mappings(v: &Option<Vec<spec::IdMapping>>, at: &str) -> Result<Vec<IdRange>> {
    let mut out = Vec::new();
    for (i, m) in v.iter().flatten().enumerate() {
        if m.size == 0
            || m.container_id.checked_add(m.size - 1).is_none()
            || m.host_id.checked_add(m.size - 1).is_none()
        {
            return Err(field_error(
                &format!("{at}[{i}]"),
                format!(
                    "invalid range containerID {} hostID {} size {}",
                    m.container_id, m.host_id, m.size
                ),
            ));
        }
        out.push(IdRange {
            inside: m.container_id,
            outside: m.host_id,
            count: m.size,
        });
    }
    Ok(out)
}

fn label(
    value: &Option<String>,
    at: &str,
    lsm: &str,
    enabled: bool,
    warn: &mut dyn FnMut(String),
) -> Result<()> {
    if let Some(l) = value.as_deref().filter(|l| !l.is_empty()) {
        if enabled {
            return Err(field_error(at, format!("{lsm} labels are not supported")));
        }
        warn(format!(
            "config.json {at} {l:?} skipped: {lsm} is not enabled on this host"
        ));
    }
    Ok(())
}

fn process(s: &spec::Spec, host: Host, warn: &mut dyn FnMut(String)) -> Result<Process> {
    let p = s
        .process
        .as_ref()
        .ok_or_else(|| field_error("process", "missing"))?;
    refuse_if(p.command_line.is_some(), "process.commandLine")?;
    refuse_if(p.io_priority.is_some(), "process.ioPriority")?;
    refuse_if(p.scheduler.is_some(), "process.scheduler")?;
    refuse_if(p.exec_cpu_affinity.is_some(), "process.execCPUAffinity")?;
    label(
        &p.apparmor_profile,
        "process.apparmorProfile",
        "AppArmor",
        host.apparmor,
        warn,
    )?;
    label(
        &p.selinux_label,
        "process.selinuxLabel",
        "SELinux",
        host.selinux,
        warn,
    )?;
    let args = p.args.clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(field_error("process.args", "empty (a command is required)"));
    }
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(field_error(
            &format!("process.args[{i}]"),
            "contains a NUL byte",
        ));
    }
    let env = p.env.clone().unwrap_or_default();
    for (i, e) in env.iter().enumerate() {
        if e.contains('\0') || !e.contains('=') || e.starts_with('=') {
            return Err(field_error(
                &format!("process.env[{i}]"),
                format!("invalid entry {e:?} (KEY=VALUE expected)"),
            ));
        }
    }
    let cwd = p.cwd.clone();
    if !cwd.is_absolute() {
        return Err(field_error(
            "process.cwd",
            format!("{:?} is not an absolute path", cwd.display().to_string()),
        ));
    }
    let u = &p.user;
    refuse_if(
        u.username.as_deref().is_some_and(|n| !n.is_empty()),
        "process.user.username",
    )?;
    let caps = match &p.capabilities {
        None => Capabilities::default(),
        Some(c) => Capabilities {
            bounding: capset(&c.bounding, "process.capabilities.bounding")?,
            effective: capset(&c.effective, "process.capabilities.effective")?,
            permitted: capset(&c.permitted, "process.capabilities.permitted")?,
            inheritable: capset(&c.inheritable, "process.capabilities.inheritable")?,
            ambient: capset(&c.ambient, "process.capabilities.ambient")?,
        },
    };
    let mut rlimits: Vec<Rlimit> = Vec::new();
    for (i, r) in p.rlimits.iter().flatten().enumerate() {
        let at = format!("process.rlimits[{i}]");
        let (name, resource) = rlimit(&r.kind).ok_or_else(|| {
            field_error(
                &format!("{at}.type"),
                format!("unknown rlimit {:?} (RLIMIT_CPU … RLIMIT_RTTIME)", r.kind),
            )
        })?;
        if rlimits.iter().any(|x| x.resource == resource) {
            return Err(field_error(
                &format!("{at}.type"),
                format!("{name} given twice"),
            ));
        }
        if r.soft > r.hard {
            return Err(field_error(
                &at,
                format!("soft limit {} above hard limit {}", r.soft, r.hard),
            ));
        }
        rlimits.push(Rlimit {
            name,
            resource,
            soft: r.soft,
            hard: r.hard,
        });
    }
    if let Some(adj) = p.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(field_error(
            "process.oomScoreAdj",
            format!("{adj} outside -1000..1000"),
        ));
    }
    let console_size = match p.console_size {
        None => None,
        Some(b) => {
            let fit = |v: u64, at: &str| {
                u16::try_from(v).map_err(|_| field_error(at, format!("{v} is too large")))
            };
            Some((
                fit(b.height, "process.consoleSize.height")?,
                fit(b.width, "process.consoleSize.width")?,
            ))
        }
    };
    Ok(Process {
        args,
        env,
        cwd,
        uid: u.uid,
        gid: u.gid,
        additional_gids: u.additional_gids.clone().unwrap_or_default(),
        umask: u.umask,
        caps,
        no_new_privs: p.no_new_privileges.unwrap_or(false),
        rlimits,
        oom_score_adj: p.oom_score_adj,
        terminal: p.terminal.unwrap_or(false),
        console_size,
    })
}

fn capset(v: &Option<Vec<String>>, at: &str) -> Result<CapSet> {
    let mut caps = Vec::new();
    for (i, name) in v.iter().flatten().enumerate() {
        let cap = Capability::parse(name).ok_or_else(|| {
            field_error(
                &format!("{at}[{i}]"),
                format!("unknown capability {name:?}"),
            )
        })?;
        caps.push(cap);
    }
    Ok(CapSet::of(&caps))
}

/// The config's name and the kernel's number of the rlimit `name`.
fn rlimit(name: &str) -> Option<(&'static str, u32)> {
    let names = &crabcan_security::KERNEL_RLIMIT_NAMES;
    let i = names.iter().position(|r| *r == name)?;
    Some((names[i], u32::try_from(i).ok()?))
}

/// sysctl prefixes that belong to the IPC namespace.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Whether `key` names a sysctl of a namespace the container has, or why not.
fn sysctl_allowed(key: &str, has: &dyn Fn(NsKind) -> bool) -> std::result::Result<(), String> {
    let need = |k: NsKind| {
        if has(k) {
            Ok(())
        } else {
            Err(format!(
                "needs a {} namespace in linux.namespaces",
                k.oci_name()
            ))
        }
    };
    if IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        return need(NsKind::Ipc);
    }
    if key.starts_with("net.") {
        return need(NsKind::Net);
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Err("set it with the hostname or domainname field instead".into());
    }
    Err("not a namespaced sysctl (it would change the host)".into())
}

fn sysctl(linux: &spec::Linux, has: &dyn Fn(NsKind) -> bool) -> Result<Vec<(PathBuf, String)>> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let mut keys: Vec<_> = linux.sysctl.iter().flatten().collect();
    keys.sort();
    for (k, v) in keys {
        let at = format!("linux.sysctl.{k}");
        let bad_key = k.is_empty()
            || k.split(['.', '/'])
                .any(|part| part.is_empty() || part == "..");
        if bad_key {
            return Err(field_error(&at, "invalid key"));
        }
        sysctl_allowed(k, has).map_err(|why| field_error(&at, why))?;
        if v.contains('\0') {
            return Err(field_error(&at, "value contains a NUL byte"));
        }
        out.push((PathBuf::from(k.replace('.', "/")), v.clone()));
    }
    Ok(out)
}

fn hook_list(v: &Option<Vec<spec::Hook>>, at: &str) -> Result<Vec<Hook>> {
    let mut out = Vec::new();
    for (i, h) in v.iter().flatten().enumerate() {
        let here = format!("{at}[{i}]");
        let path = h.path.clone();
        if !path.is_absolute() {
            return Err(field_error(
                &format!("{here}.path"),
                format!("{} is not an absolute path", path.display()),
            ));
        }
        let timeout = match h.timeout {
            None => None,
            Some(t) if t > 0 => Some(Duration::from_secs(t as u64)),
            Some(t) => {
                return Err(field_error(
                    &format!("{here}.timeout"),
                    format!("{t} is not a positive number of seconds"),
                ));
            }
        };
        let args = match &h.args {
            Some(a) if !a.is_empty() => a.clone(),
            _ => vec![path.to_string_lossy().into_owned()],
        };
        out.push(Hook {
            path,
            args,
            env: h.env.clone().unwrap_or_default(),
            timeout,
        });
    }
    Ok(out)
}

fn hooks(h: Option<&spec::Hooks>) -> Result<Hooks> {
    let Some(h) = h else {
        return Ok(Hooks::default());
    };
    Ok(Hooks {
        prestart: hook_list(&h.prestart, "hooks.prestart")?,
        create_runtime: hook_list(&h.create_runtime, "hooks.createRuntime")?,
        create_container: hook_list(&h.create_container, "hooks.createContainer")?,
        start_container: hook_list(&h.start_container, "hooks.startContainer")?,
        poststart: hook_list(&h.poststart, "hooks.poststart")?,
        poststop: hook_list(&h.poststop, "hooks.poststop")?,
    })
}

/// An absolute, normal path (no `.` or `..`), as the mount plan requires.
fn clean_abs(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn mounts(list: &[spec::Mount]) -> Result<Vec<crabcan_mounts::MountEntry>> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("mounts[{i}]");
        let dest = m.destination.clone();
        if !clean_abs(&dest) {
            return Err(field_error(
                &format!("{at}.destination"),
                format!(
                    "{} must be an absolute path without . or ..",
                    dest.display()
                ),
            ));
        }
        refuse_if(nonempty(&m.uid_mappings), &format!("{at}.uidMappings"))?;
        refuse_if(nonempty(&m.gid_mappings), &format!("{at}.gidMappings"))?;
        let words = m.options.clone().unwrap_or_default();
        let options = crabcan_mounts::MountOptions::parse(&words)
            .map_err(|e| e.context(format!("{} {at}.options", crate::CONFIG_FILE)))?;
        let is_bind = options.bind.is_some();
        let fstype = match m.kind.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ if is_bind => "bind".to_string(),
            _ => {
                return Err(field_error(
                    &format!("{at}.type"),
                    "missing (only a bind mount may omit it)",
                ));
            }
        };
        let source = m.source.clone().filter(|s| !s.as_os_str().is_empty());
        if is_bind || fstype == "bind" || fstype == "rbind" {
            match &source {
                Some(s) if s.is_absolute() => {}
                _ => {
                    return Err(field_error(
                        &format!("{at}.source"),
                        "a bind mount needs an absolute source path",
                    ));
                }
            }
        }
        out.push(crabcan_mounts::MountEntry {
            destination: dest,
            fstype,
            source,
            options,
        });
    }
    Ok(out)
}

fn abs_paths(v: &Option<Vec<String>>, at: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (i, p) in v.iter().flatten().enumerate() {
        let path = PathBuf::from(p);
        if !clean_abs(&path) {
            return Err(field_error(
                &format!("{at}[{i}]"),
                format!("{p} must be an absolute path without . or .."),
            ));
        }
        out.push(path);
    }
    Ok(out)
}

fn devices(list: &[spec::Device]) -> Result<Vec<crabcan_mounts::DeviceNode>> {
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let at = format!("linux.devices[{i}]");
        let path = d.path.clone();
        if !clean_abs(&path) || !path.starts_with("/dev") || path == Path::new("/dev") {
            return Err(field_error(
                &format!("{at}.path"),
                format!("{} must be an absolute path under /dev", path.display()),
            ));
        }
        let kind = match d.kind {
            spec::DeviceType::C | spec::DeviceType::U => crabcan_mounts::DeviceKind::Char,
            spec::DeviceType::B => crabcan_mounts::DeviceKind::Block,
            spec::DeviceType::P => crabcan_mounts::DeviceKind::Fifo,
            spec::DeviceType::A => {
                return Err(field_error(
                    &format!("{at}.type"),
                    "\"a\" is only meaningful in a device cgroup rule",
                ));
            }
        };
        let num = |v: i64, f: &str| {
            u64::try_from(v)
                .map_err(|_| field_error(&format!("{at}.{f}"), format!("{v} is negative")))
        };
        out.push(crabcan_mounts::DeviceNode {
            path,
            kind,
            major: num(d.major, "major")?,
            minor: num(d.minor, "minor")?,
            // The spec leaves it open; runc's and the kernel's usual mode for these nodes.
            file_mode: d.file_mode.unwrap_or(0o666) & 0o7777,
            uid: d.uid.unwrap_or(0),
            gid: d.gid.unwrap_or(0),
        });
    }
    Ok(out)
}
