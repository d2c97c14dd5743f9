//! Applying a [`CgroupPlan`]: find the hierarchy, enable controllers, create, write, remove.

use crate::host::{
    Cgroup2Mount, Placement, find_cgroup2_mount, own_cgroup_dir, own_cgroup_path,
    parse_controllers, parse_oom_kill, placement, v1_mount_of,
};
use crate::plan::{CgroupPlan, Controller, Source};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long [`Cgroup::remove`] waits for the kernel to let go of an emptied cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// How many times creation restarts when a concurrent removal deletes the shared parent.
const CREATE_ATTEMPTS: usize = 5;

/// What this host offers: the cgroup2 mount, crabcan's own cgroup, the available controllers.
#[derive(Debug, Clone)]
pub struct Host {
    mountinfo: String,
    mount: Option<Cgroup2Mount>,
    own_dir: Option<PathBuf>,
    available: Vec<String>,
}

impl Host {
    /// Reads /proc/self/mountinfo, /proc/self/cgroup and the hierarchy root's cgroup.controllers.
    pub fn detect() -> Result<Host> {
        // Bytes, not a String: one mount point with a non-UTF-8 name elsewhere on the host
        // must not make the cgroup2 mount unfindable.
        let raw = fs::read("/proc/self/mountinfo").sys_ctx(|| "read /proc/self/mountinfo")?;
        let mountinfo = String::from_utf8_lossy(&raw).into_owned();
        let Some(mount) = find_cgroup2_mount(&mountinfo) else {
            return Ok(Host {
                mountinfo,
                mount: None,
                own_dir: None,
                available: Vec::new(),
            });
        };
        let proc_cgroup =
            fs::read_to_string("/proc/self/cgroup").sys_ctx(|| "read /proc/self/cgroup")?;
        let own_path = own_cgroup_path(&proc_cgroup).ok_or_else(|| {
            Errcode::setup("no cgroup v2 entry (0::/…) in /proc/self/cgroup".to_string())
        })?;
        let own_dir = own_cgroup_dir(&mount, &own_path)?;
        if !own_dir.is_dir() {
            return Err(Errcode::setup(format!(
                "crabcan's own cgroup {own_path} is not visible at {}",
                own_dir.display()
            )));
        }
        let ctl = mount.mount_point.join("cgroup.controllers");
        let available = parse_controllers(
            &fs::read_to_string(&ctl).sys_ctx(|| format!("read {}", ctl.display()))?,
        );
        Ok(Host {
            mountinfo,
            mount: Some(mount),
            own_dir: Some(own_dir),
            available,
        })
    }

    /// Whether the hierarchy offers `controller` (listed in its root's cgroup.controllers).
    pub fn available(&self, controller: Controller) -> bool {
        self.available.iter().any(|c| c == controller.name())
    }

    /// Where the cgroup named `leaf` would be created; `None` without a cgroup2 mount.
    pub fn placement(&self, leaf: &str) -> Option<Placement> {
        let (mount, own) = (self.mount.as_ref()?, self.own_dir.as_ref()?);
        Some(placement(&mount.mount_point, own, leaf))
    }

    /// The error for `flag`, which needs `controller`, when this host does not offer it.
    pub fn unavailable(&self, flag: &str, controller: Controller) -> Errcode {
        unavailable_error(flag, controller, &self.mountinfo, self.mount.as_ref())
    }
}

/// The exit-125 error for `flag` when `controller` is missing, saying why from the layout.
pub fn unavailable_error(
    flag: &str,
    controller: Controller,
    mountinfo: &str,
    mount: Option<&Cgroup2Mount>,
) -> Errcode {
    let head = format!(
        "cannot apply {flag}: the cgroup v2 {controller} controller is not available on this host"
    );
    let Some(mount) = mount else {
        return Errcode::setup(format!("{head} (no cgroup2 hierarchy is mounted)")).with_hint(
            format!("mount one with 'mount -t cgroup2 none /sys/fs/cgroup', or drop {flag}"),
        );
    };
    if let Some(v1) = v1_mount_of(mountinfo, controller.name()) {
        return Errcode::setup(format!(
            "{head} (cgroup v1/v2 hybrid: {controller} is bound to the v1 hierarchy at {})",
            v1.display()
        ))
        .with_hint(format!(
            "boot with systemd.unified_cgroup_hierarchy=1 for a pure cgroup v2 host, or drop {flag}"
        ));
    }
    Errcode::setup(format!(
        "{head} (not listed in {})",
        mount.mount_point.join("cgroup.controllers").display()
    ))
    .with_hint(format!(
        "the kernel lacks it or the enclosing cgroup does not delegate it; or drop {flag}"
    ))
}

/// A created cgroup directory holding one container; removed on [`Cgroup::remove`] or drop.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    parent: PathBuf,
    removed: bool,
}

impl Cgroup {
    /// Creates the container's cgroup and writes the plan's limits.
    ///
    /// `Ok(None)` when there is nothing to do: no limits asked and no controller for the
    /// defaults (or no usable cgroup2 tree at all). An explicitly asked limit that cannot be
    /// applied is an error naming the flag, the controller and why.
    pub fn create(plan: &CgroupPlan) -> Result<Option<Cgroup>> {
        if plan.writes.is_empty() {
            return Ok(None);
        }
        let explicit = plan.has_explicit();
        match Host::detect() {
            Ok(host) => create_on(&host, plan),
            Err(e) if explicit => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Moves process `pid` into the cgroup (writes cgroup.procs).
    ///
    /// The parent calls it before releasing the child, so everything the container runs
    /// starts inside the limits.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let procs = self.path.join("cgroup.procs");
        write_file(&procs, &pid.to_string())
            .sys_ctx(|| format!("add process {pid} to cgroup {}", self.path.display()))
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup (memory.events).
    pub fn oom_killed(&self) -> bool {
        fs::read_to_string(self.path.join("memory.events"))
            .map(|t| parse_oom_kill(&t) > 0)
            .unwrap_or(false)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kills what is left in the cgroup, removes it, and removes the shared parent if empty.
    pub fn remove(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        remove_tree(&self.path)?;
        remove_parent_if_empty(&self.parent)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Best effort: the error has nowhere to go here, remove() reports it.
        let _ = self.teardown();
    }
}

fn create_on(host: &Host, plan: &CgroupPlan) -> Result<Option<Cgroup>> {
    let explicit = plan.has_explicit();
    let required = plan.required_controllers();
    for &c in &required {
        if !host.available(c) {
            return Err(host.unavailable(plan.flag_for(c).unwrap_or("a cgroup limit"), c));
        }
    }
    let optional: Vec<Controller> = plan
        .optional_controllers()
        .into_iter()
        .filter(|&c| host.available(c))
        .collect();
    if required.is_empty() && optional.is_empty() {
        return Ok(None);
    }
    let Some(place) = host.placement(&plan.name) else {
        return Ok(None);
    };

    // Steps shared by all limits are reported under the first explicit flag.
    let label = required
        .first()
        .and_then(|&c| plan.flag_for(c))
        .unwrap_or("the default pids limit");
    let mut attempt = 0;
    let (cgroup, enabled) = loop {
        attempt += 1;
        match prepare(&place, plan, label, &required, optional.clone()) {
            Ok(done) => break done,
            // Another crabcan removed the shared parent between our steps: start again.
            Err(e) if e.errno() == Some(Errno::ENOENT) && attempt < CREATE_ATTEMPTS => {}
            Err(e) => {
                let _ = remove_parent_if_empty(place.parent_dir());
                return if explicit { Err(e) } else { Ok(None) };
            }
        }
    };
    if required.is_empty() && enabled.is_empty() {
        // Only defaults were planned and none could be enabled: no cgroup after all.
        return Ok(None);
    }

    for w in &plan.writes {
        if !required.contains(&w.controller) && !enabled.contains(&w.controller) {
            continue;
        }
        let flag = match w.source {
            Source::Flag(f) => f,
            Source::Default => "a default limit",
        };
        let file = cgroup.path.join(w.file);
        let result = if file.exists() {
            write_file(&file, &w.value).map_err(|e| {
                failed(
                    flag,
                    format!("write '{}' to {}", w.value, file.display()),
                    e,
                )
            })
        } else {
            Err(missing_file_error(flag, w.file, &file))
        };
        match (result, w.source) {
            (Ok(()), _) | (Err(_), Source::Default) => {}
            // Dropping `cgroup` on this return removes the half-made directory.
            (Err(e), Source::Flag(_)) => return Err(e),
        }
    }
    Ok(Some(cgroup))
}

/// Enables controllers down the chain, creates the parent and the container's directory.
/// Returns the cgroup and the optional controllers that could be enabled.
fn prepare(
    place: &Placement,
    plan: &CgroupPlan,
    label: &str,
    required: &[Controller],
    mut optional: Vec<Controller>,
) -> Result<(Cgroup, Vec<Controller>)> {
    let parent = place.parent_dir();
    for dir in &place.chain {
        if dir == parent {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(failed(label, format!("create cgroup {}", dir.display()), e)),
            }
        }
        for &c in required {
            enable(dir, c, plan.flag_for(c).unwrap_or(label))?;
        }
        optional.retain(|&c| enable(dir, c, label).is_ok());
    }
    if required.is_empty() && optional.is_empty() {
        return Err(Errcode::setup("no controller could be enabled"));
    }
    sweep_stale(parent);
    let path = place.cgroup.clone();
    if let Err(e) = fs::create_dir(&path) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(failed(
                label,
                format!("create cgroup {}", path.display()),
                e,
            ));
        }
        // A leftover of a run that was killed: reusable only if nothing runs in it.
        if fs::remove_dir(&path).is_err() {
            return Err(Errcode::usage(format!(
                "a container named '{}' seems to be running already: its cgroup {} exists and is in use",
                plan.name.trim_start_matches(crate::plan::CGROUP_PREFIX),
                path.display()
            )));
        }
        fs::create_dir(&path)
            .map_err(|e| failed(label, format!("create cgroup {}", path.display()), e))?;
    }
    let cgroup = Cgroup {
        path,
        parent: parent.to_path_buf(),
        removed: false,
    };
    Ok((cgroup, optional))
}

/// The pid of the crabcan that owns a container cgroup named `crabcan-<name>-<pid>`.
pub fn owner_pid(dir_name: &str) -> Option<i32> {
    let rest = dir_name.strip_prefix(crate::plan::CGROUP_PREFIX)?;
    let (_, pid) = rest.rsplit_once('-')?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Removes the empty cgroups of containers whose crabcan is gone (a SIGKILLed crabcan
/// cannot remove its own). A cgroup still holding processes refuses `rmdir` and stays.
pub(crate) fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        let gone =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        if gone {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Makes `controller` available to the children of `dir` (a no-op when it already is).
fn enable(dir: &Path, controller: Controller, flag: &str) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&file)
        .map_err(|e| failed(flag, format!("read {}", file.display()), e))?;
    if parse_controllers(&current)
        .iter()
        .any(|c| c == controller.name())
    {
        return Ok(());
    }
    write_file(&file, &format!("+{}", controller.name())).map_err(|e| {
        failed(
            flag,
            format!("enable the {controller} controller in {}", file.display()),
            e,
        )
    })
}

/// "cannot apply FLAG: WHAT: ERRNO", with a hint for the errnos a cgroup tree usually gives.
fn failed(flag: &str, what: String, e: io::Error) -> Errcode {
    let e = io_err(e, format!("apply {flag}: {what}"));
    let hint = match e.errno() {
        Some(Errno::EBUSY) => Some(
            "that cgroup has processes of its own, and cgroup v2 lets only a cgroup without processes pass controllers to its children; run crabcan from a cgroup whose parent delegates them",
        ),
        Some(Errno::EACCES | Errno::EPERM | Errno::EROFS) => Some(
            "creating cgroups needs write access to the cgroup v2 tree: run as root or in a delegated cgroup",
        ),
        _ => None,
    };
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

fn missing_file_error(flag: &str, name: &str, file: &Path) -> Errcode {
    let (why, hint) = if name == "memory.swap.max" {
        (
            "the kernel does not account swap for cgroups",
            format!("boot with swapaccount=1, or drop {flag}"),
        )
    } else {
        (
            "the kernel does not provide it",
            format!("drop {flag} on this kernel"),
        )
    };
    Errcode::setup(format!(
        "cannot apply {flag}: {} does not exist: {why}",
        file.display()
    ))
    .with_hint(hint)
}

/// Kills every process in `dir` and below, then removes the directories bottom-up, retrying
/// while the kernel still counts exiting processes.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    let mut delay = Duration::from_millis(1);
    loop {
        kill_all(dir);
        let result = remove_children(dir).and_then(|()| {
            fs::remove_dir(dir).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        });
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(Errno::EBUSY as i32) && Instant::now() < deadline =>
            {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(io_err(e, format!("remove cgroup {}", dir.display()))),
        }
    }
}

/// Removes sub-cgroups the container may have made (a cgroup directory holds only kernel
/// files, which need no removal, and sub-cgroups).
fn remove_children(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let sub = entry.path();
            remove_children(&sub)?;
            match fs::remove_dir(&sub) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// SIGKILLs everything in the subtree: cgroup.kill where the kernel has it (5.14+), else
/// each pid listed in cgroup.procs.
fn kill_all(dir: &Path) {
    let killer = dir.join("cgroup.kill");
    if killer.exists() {
        let _ = write_file(&killer, "1");
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kill_all(&entry.path());
            }
        }
    }
}

/// Removes the shared parent directory unless another container still uses it.
pub(crate) fn remove_parent_if_empty(parent: &Path) -> Result<()> {
    match fs::remove_dir(parent) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error().map(Errno::from_raw),
                Some(Errno::EBUSY | Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOENT)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e).sys_ctx(|| format!("remove cgroup {}", parent.display())),
    }
}

/// An io error as an [`Errcode`] naming `what` and keeping its errno.
pub(crate) fn io_err(e: io::Error, what: String) -> Errcode {
    Errcode::sys(
        what,
        Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)),
    )
}

/// Cgroup files take one value per write(2), so the text must go in one call.
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_pid_is_the_last_dash_number() {
        assert_eq!(super::owner_pid("crabcan-brave-otter-12-4321"), Some(4321));
        assert_eq!(super::owner_pid("crabcan-box-7"), Some(7));
        assert_eq!(super::owner_pid("crabcan-box"), None);
        assert_eq!(super::owner_pid("other-box-7"), None);
        assert_eq!(super::owner_pid("crabcan-box-0"), None);
    }

    use super::*;
    use crate::host::tests::HYBRID_MOUNTINFO;

    #[test]
    fn hybrid_host_explains_the_missing_controller() {
        let m = find_cgroup2_mount(HYBRID_MOUNTINFO);
        let e = unavailable_error("--memory", Controller::Memory, HYBRID_MOUNTINFO, m.as_ref());
        let s = e.to_string();
        assert!(
            s.starts_with(
                "cannot apply --memory: the cgroup v2 memory controller is not available on this host (cgroup v1/v2 hybrid"
            ),
            "{s}"
        );
        assert!(s.contains("/sys/fs/cgroup/memory"), "{s}");
        assert_eq!(e.exit_code(), 125);
    }

    #[test]
    fn no_cgroup2_and_plain_missing_are_explained() {
        let s = unavailable_error("--pids", Controller::Pids, "", None).to_string();
        assert!(
            s.contains("--pids") && s.contains("no cgroup2 hierarchy"),
            "{s}"
        );
        let mi = "26 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let m = find_cgroup2_mount(mi);
        let s = unavailable_error("--cpus", Controller::Cpu, mi, m.as_ref()).to_string();
        assert!(
            s.contains("cpu controller") && s.contains("/sys/fs/cgroup/cgroup.controllers"),
            "{s}"
        );
    }

    #[test]
    fn failures_name_the_flag_and_hint_at_the_usual_causes() {
        let busy = failed(
            "--memory",
            "enable the memory controller in /cg/user.slice/cgroup.subtree_control".into(),
            io::Error::from_raw_os_error(Errno::EBUSY as i32),
        )
        .to_string();
        assert!(
            busy.starts_with("cannot apply --memory: enable the memory controller in /cg/user.slice/cgroup.subtree_control: Device or resource busy"),
            "{busy}"
        );
        assert!(busy.contains("without processes"), "{busy}");
        let denied = failed(
            "--pids",
            "create cgroup /cg/crabcan".into(),
            io::Error::from_raw_os_error(Errno::EACCES as i32),
        )
        .to_string();
        assert!(
            denied.contains("run as root or in a delegated cgroup"),
            "{denied}"
        );
        let swap = missing_file_error(
            "--memory-swap",
            "memory.swap.max",
            Path::new("/cg/crabcan/crabcan-a/memory.swap.max"),
        )
        .to_string();
        assert!(
            swap.starts_with(
                "cannot apply --memory-swap: /cg/crabcan/crabcan-a/memory.swap.max does not exist"
            ),
            "{swap}"
        );
        assert!(swap.contains("swapaccount=1"), "{swap}");
    }
}
