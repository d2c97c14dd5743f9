//! A container's cgroup in every hierarchy of the host: created, joined, updated, frozen,
//! read and removed as one.

use crate::cgroup::{io_err, remove_tree, write_file};
use crate::devices::{V1Write, confine_v2};
use crate::layout::{Layout, Mode};
use crate::path::CgroupPath;
use crate::resources::{DevicePlan, ResourcePlan, Resources, Target, memsw_first, plan_resources};
use crate::stats::{Stats, read_stats};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode as FileMode;
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a freeze or thaw may take before it is given up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times creation restarts when a concurrent removal deletes a parent directory
/// on the way (another tool's, which crabcan made missing levels of).
const CREATE_ATTEMPTS: usize = 5;

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    /// The v1 controllers of the hierarchy; empty for v2.
    controllers: Vec<String>,
    /// The directory.
    path: PathBuf,
}

impl Dir {
    fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

/// Which of a cgroup's directories a step makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    V1,
    V2,
}

impl Part {
    fn has(self, d: &Dir) -> bool {
        match self {
            Part::All => true,
            Part::V1 => !d.is_v2(),
            Part::V2 => d.is_v2(),
        }
    }
}

/// Refuses a cgroup given by path that processes already use in one of `dirs`: it belongs
/// to someone else (another container), and adopting it would put our limits on them and
/// kill them at removal. Checked in every hierarchy before anything is made or written.
fn refuse_in_use(path: &CgroupPath, dirs: &[Dir]) -> Result<()> {
    if path.is_run() {
        return Ok(());
    }
    for d in dirs {
        let mut pids = Vec::new();
        if d.path.is_dir() && collect_pids(&d.path, &mut pids).is_ok() && !pids.is_empty() {
            return Err(Errcode::usage(format!(
                "cgroup {} is not empty: {} process(es) run in it",
                d.path.display(),
                pids.len()
            )));
        }
    }
    Ok(())
}

/// The directories where [`DeadRuns::sweep`] looks for the cgroups of dead runs: the
/// parents of a run's cgroup directories ([`ContainerCgroup::dead_runs`]).
#[derive(Debug, Clone)]
pub struct DeadRuns {
    parents: Vec<PathBuf>,
}

impl DeadRuns {
    /// Removes the empty cgroups that runs which are gone left in these directories.
    pub fn sweep(self) {
        for parent in &self.parents {
            crate::cgroup::sweep_stale(parent);
        }
    }
}

/// A container's cgroup: one directory per mounted hierarchy (every v1 one, and v2).
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    layout: Layout,
    path: CgroupPath,
    /// The directories made (or found).
    dirs: Vec<Dir>,
    /// What the second step of a creation in two has still to do
    /// ([`ContainerCgroup::complete`]).
    pending: Option<Pending>,
}

/// The second step of a creation in two: the directories to make, and the resources as the
/// first step checked and planned them.
#[derive(Debug, Clone)]
struct Pending {
    dirs: Vec<Dir>,
    plan: ResourcePlan,
}

/// A container's cgroup as descriptors, for a single-threaded process to enter it by
/// itself.
///
/// Moving another process (its pid written to `cgroup.procs`) takes the kernel's global
/// cgroup threadgroup lock for writing, which waits for an RCU grace period: 5 to 15 ms on
/// a busy host, per container start. Two ways in skip that lock: a thread that writes `0`
/// (itself) to a v1 hierarchy's `tasks` file moves only itself, which the kernel does
/// without it, and a process cloned with `CLONE_INTO_CGROUP` starts in the v2 directory.
/// A single-threaded process that moved itself has moved all of itself.
#[derive(Debug)]
pub struct Entry {
    v1_tasks: Vec<(PathBuf, OwnedFd)>,
    v2_dir: Option<(PathBuf, OwnedFd)>,
}

impl Entry {
    /// The v2 directory, for `clone3`'s `CLONE_INTO_CGROUP`; `None` without a v2 hierarchy.
    pub fn v2_dir(&self) -> Option<BorrowedFd<'_>> {
        self.v2_dir.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// The v1 hierarchies' `tasks` files (directory, descriptor), to hand to the process
    /// that enters ([`Entry::of_v1`]); the v2 directory is left out (the process was cloned
    /// into it).
    pub fn into_v1(self) -> Vec<(PathBuf, OwnedFd)> {
        self.v1_tasks
    }

    /// An entry into v1 hierarchies only, from what [`Entry::into_v1`] handed over.
    pub fn of_v1(v1_tasks: Vec<(PathBuf, OwnedFd)>) -> Entry {
        Entry {
            v1_tasks,
            v2_dir: None,
        }
    }

    /// Every descriptor it holds, for a caller that closes all others.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.v1_tasks
            .iter()
            .chain(self.v2_dir.iter())
            .map(|(_, fd)| fd.as_fd())
            .collect()
    }

    /// Moves the calling thread into every v1 hierarchy's directory. The caller must be
    /// single-threaded: only the thread that writes moves. `in_v2` says the process is in the
    /// v2 directory already (cloned into it); otherwise it is placed there by the classic
    /// write, lock and all.
    pub fn enter_self(&self, in_v2: bool) -> Result<()> {
        for (dir, fd) in &self.v1_tasks {
            write_fd(fd, b"0").map_err(|e| {
                Errcode::sys(format!("enter cgroup {} (write tasks)", dir.display()), e)
            })?;
        }
        if !in_v2 && let Some((dir, fd)) = &self.v2_dir {
            let procs = nix::fcntl::openat(
                fd,
                "cgroup.procs",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                FileMode::empty(),
            )
            .sys_ctx(|| format!("open {}/cgroup.procs", dir.display()))?;
            write_fd(&procs, b"0").map_err(|e| {
                Errcode::sys(
                    format!("enter cgroup {} (write cgroup.procs)", dir.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

/// One write(2) of the whole value, as cgroup files take it.
fn write_fd(fd: &OwnedFd, value: &[u8]) -> std::result::Result<(), Errno> {
    loop {
        match nix::unistd::write(fd, value) {
            Err(Errno::EINTR) => continue,
            Ok(n) if n == value.len() => return Ok(()),
            Ok(_) => return Err(Errno::EIO),
            Err(e) => return Err(e),
        }
    }
}

impl ContainerCgroup {
    /// Creates the cgroup at `path` in every hierarchy, copies the cpuset of the parent
    /// into a new v1 cpuset directory, writes `resources` and the device rules. On failure
    /// nothing it created is left behind.
    pub fn create(
        layout: &Layout,
        path: &CgroupPath,
        resources: &Resources,
    ) -> Result<ContainerCgroup> {
        let plan = plan_resources(resources, layout)?;
        let cg = Self::make(layout, path, dirs_for(layout, path)?, &plan, Part::All)?;
        if let Err(e) = cg.apply(&plan, true) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// Removes the empty cgroups that runs which are gone left beside this one (a crabcan
    /// SIGKILLed together with its guardian cannot remove its own). For a run's cgroup
    /// ([`CgroupPath::run`]); a caller calls it where it costs no time (crabcan's run: while
    /// the container's process sets up): it reads the directory of every hierarchy.
    pub fn sweep_dead_runs(&self) {
        self.dead_runs().sweep();
    }

    /// [`ContainerCgroup::sweep_dead_runs`] as a value of its own, which borrows nothing of
    /// the cgroup: to sweep while the cgroup is being completed. It looks beside every
    /// directory the cgroup has once complete, made yet or not.
    pub fn dead_runs(&self) -> DeadRuns {
        let pending = self.pending.iter().flat_map(|p| &p.dirs);
        let parents = if self.path.is_run() {
            self.dirs
                .iter()
                .chain(pending)
                .filter_map(|d| d.path.parent().map(Path::to_path_buf))
                .collect()
        } else {
            Vec::new()
        };
        DeadRuns { parents }
    }

    /// The first step of a creation in two, for a process that starts in the cgroup between
    /// them: only the v2 directory, which a process can be cloned into (`CLONE_INTO_CGROUP`,
    /// see [`Entry`]; [`ContainerCgroup::entry`] opens it). [`ContainerCgroup::complete`]
    /// makes the rest, so that the kernel's work for the cgroup and for the process's
    /// namespaces can overlap. On failure nothing it made is left behind.
    ///
    /// `record` is given every directory the cgroup will have once complete, after the
    /// check that none is in use by others and before anything is made: a caller killed
    /// at any later point has named whatever was left (and a record of it never names
    /// directories of someone else's that the second step would have refused).
    pub fn create_v2_first(
        layout: &Layout,
        path: &CgroupPath,
        resources: &Resources,
        record: impl FnOnce(Vec<PathBuf>) -> Result<()>,
    ) -> Result<ContainerCgroup> {
        let plan = plan_resources(resources, layout)?;
        let dirs = dirs_for(layout, path)?;
        // Every hierarchy now, not only the v2 one this step makes: the process is cloned
        // before the second step would find the v1 ones in use.
        refuse_in_use(path, &dirs)?;
        record(dirs.iter().map(|d| d.path.clone()).collect())?;
        let (v2, v1): (Vec<Dir>, Vec<Dir>) = dirs.into_iter().partition(Dir::is_v2);
        let mut cg = Self::make(layout, path, v2, &plan, Part::V2)?;
        cg.pending = Some(Pending { dirs: v1, plan });
        Ok(cg)
    }

    /// The second step of [`ContainerCgroup::create_v2_first`]: the v1 directories, then
    /// the resources and device rules it was given (checked and planned there) in every
    /// hierarchy. The process in the cgroup must not run anything of its own before this
    /// has returned: its limits start here. On failure the caller removes the cgroup
    /// ([`ContainerCgroup::remove`]) once that process is gone.
    pub fn complete(&mut self) -> Result<()> {
        let Some(Pending { dirs, plan }) = self.pending.take() else {
            return Err(Errcode::setup(
                "the cgroup was not made in two steps, or was completed already",
            ));
        };
        let made = self.make_dirs(dirs, &plan, Part::V1);
        // In the order of a cgroup made at once (see `paths`).
        self.dirs.sort_by_key(Dir::is_v2);
        made?;
        self.apply(&plan, true)
    }

    /// Makes the directories of `part` (none exists in use by others), again from the start
    /// when a concurrent removal took a parent away on the way. On failure nothing it made
    /// is left behind.
    fn make(
        layout: &Layout,
        path: &CgroupPath,
        dirs: Vec<Dir>,
        plan: &ResourcePlan,
        part: Part,
    ) -> Result<ContainerCgroup> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cg = ContainerCgroup {
                layout: layout.clone(),
                path: path.clone(),
                dirs: Vec::new(),
                pending: None,
            };
            match cg.make_dirs(dirs.clone(), plan, part) {
                Ok(()) => return Ok(cg),
                // Someone removed a parent directory between our steps: again.
                Err(e) if e.errno() == Some(Errno::ENOENT) && attempt < CREATE_ATTEMPTS => {
                    let _ = cg.remove();
                }
                Err(e) => {
                    let _ = cg.remove();
                    return Err(e);
                }
            }
        }
    }

    /// The cgroup at `path` as an earlier [`ContainerCgroup::create`] made it, for a later
    /// process (update, pause, stats, delete). Hierarchies without the directory are left
    /// out; none at all is an error.
    pub fn open(layout: &Layout, path: &CgroupPath) -> Result<ContainerCgroup> {
        let mut cg = ContainerCgroup {
            layout: layout.clone(),
            path: path.clone(),
            dirs: Vec::new(),
            pending: None,
        };
        for d in dirs_for(layout, path)? {
            if d.path.is_dir() {
                cg.dirs.push(d);
            }
        }
        if cg.dirs.is_empty() {
            return Err(Errcode::setup(format!(
                "cgroup {path} does not exist in any hierarchy"
            )));
        }
        Ok(cg)
    }

    /// The cgroup whose directories a state file recorded ([`ContainerCgroup::paths`]), for
    /// a later process whose own cgroup may differ from the creator's (a relative path
    /// resolves against the caller's cgroup). A path under no hierarchy of `layout` is an
    /// error; directories that are gone are left out, and none at all is an error.
    pub fn open_paths(
        layout: &Layout,
        path: &CgroupPath,
        paths: &[PathBuf],
    ) -> Result<ContainerCgroup> {
        let mut cg = ContainerCgroup {
            layout: layout.clone(),
            path: path.clone(),
            dirs: Vec::new(),
            pending: None,
        };
        for p in paths {
            let controllers =
                if let Some(h) = layout.v1.iter().find(|h| p.starts_with(&h.mount_point)) {
                    h.controllers.clone()
                } else if layout
                    .v2
                    .as_ref()
                    .is_some_and(|h| p.starts_with(&h.mount_point))
                {
                    Vec::new()
                } else {
                    return Err(Errcode::setup(format!(
                        "recorded cgroup {} is under no cgroup hierarchy of this host",
                        p.display()
                    )));
                };
            if p.is_dir() {
                cg.dirs.push(Dir {
                    controllers,
                    path: p.clone(),
                });
            }
        }
        if cg.dirs.is_empty() {
            return Err(Errcode::setup(format!(
                "cgroup {path} does not exist in any hierarchy"
            )));
        }
        Ok(cg)
    }

    /// Every directory of the container, v1 hierarchies first, then v2.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Where device rules of this layout go: the v1 devices directory where a v1 devices
    /// hierarchy exists (as runc does on hybrid hosts), else the v2 directory (a device
    /// program on it).
    pub fn devices_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.has("devices"))
            .or_else(|| self.dirs.iter().find(|d| d.is_v2()))
            .map(|d| d.path.as_path())
    }

    /// The cgroup v2 directory, if the host has a v2 hierarchy.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.is_v2())
            .map(|d| d.path.as_path())
    }

    /// The path it was created with.
    pub fn cgroup_path(&self) -> &CgroupPath {
        &self.path
    }

    /// Places process `pid` in every directory (before the container's process runs).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            let procs = d.path.join("cgroup.procs");
            write_file(&procs, &pid.to_string()).map_err(|e| {
                io_err(
                    e,
                    format!("add process {pid} to cgroup {}", d.path.display()),
                )
            })?;
        }
        Ok(())
    }

    /// Opens what a process needs to enter this cgroup by itself (see [`Entry`]). Done by
    /// the privileged caller, before the process exists: it then needs no path and no
    /// privilege of its own to enter.
    pub fn entry(&self) -> Result<Entry> {
        self.open_entry(true)
    }

    /// [`ContainerCgroup::entry`] of the v1 hierarchies only: what a process cloned into
    /// the v2 directory still needs once [`ContainerCgroup::complete`] has made them.
    pub fn v1_entry(&self) -> Result<Entry> {
        self.open_entry(false)
    }

    fn open_entry(&self, with_v2: bool) -> Result<Entry> {
        let open = |path: PathBuf, flags: OFlag| {
            nix::fcntl::open(&path, flags | OFlag::O_CLOEXEC, FileMode::empty())
                .sys_ctx(|| format!("open {}", path.display()))
        };
        let mut e = Entry {
            v1_tasks: Vec::new(),
            v2_dir: None,
        };
        for d in &self.dirs {
            if d.is_v2() {
                if with_v2 {
                    e.v2_dir = Some((d.path.clone(), open(d.path.clone(), OFlag::O_DIRECTORY)?));
                }
            } else {
                e.v1_tasks
                    .push((d.path.clone(), open(d.path.join("tasks"), OFlag::O_WRONLY)?));
            }
        }
        Ok(e)
    }

    /// Changes limits in place. Memory and memory+swap are written in the order that keeps
    /// every intermediate state valid. Device rules are left as they are (as runc's update
    /// does): they are given only on create.
    pub fn update(&self, resources: &Resources) -> Result<()> {
        let mut r = resources.clone();
        r.devices = None;
        let plan = plan_resources(&r, &self.layout)?;
        self.apply(&plan, false)
    }

    /// Freezes every process and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the processes and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            Freezer::V1(dir) => Ok(read(&dir.join("freezer.state"))?.trim() == "FROZEN"),
            Freezer::V2(dir) => Ok(v2_frozen(&dir)?),
        }
    }

    /// The pids of every process in the cgroup and its sub-cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self.procs_dir();
        let mut out = Vec::new();
        collect_pids(dir, &mut out)
            .map_err(|e| io_err(e, format!("read the processes of cgroup {}", dir.display())))?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Usage counters, in the shape of runc's `events --stats` data.
    pub fn stats(&self) -> Result<Stats> {
        let v1 = |c: &str| {
            self.dirs
                .iter()
                .find(|d| d.has(c))
                .map(|d| d.path.as_path())
        };
        let v2 = self
            .dirs
            .iter()
            .find(|d| d.is_v2())
            .map(|d| d.path.as_path());
        read_stats(&v1, v2)
    }

    /// How many times the kernel's OOM killer killed a process of the cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.memory_dir() {
            Some(d) if d.is_v2() => d.path.join("memory.events"),
            Some(d) => d.path.join("memory.oom_control"),
            None => return 0,
        };
        fs::read_to_string(file)
            .map(|t| crate::host::parse_oom_kill(&t))
            .unwrap_or(0)
    }

    /// Sends `signal` to every process. SIGKILL on a v2-only host uses cgroup.kill;
    /// otherwise the cgroup is frozen while the signal goes out, so no process forks past
    /// it, then thawed.
    pub fn kill_all(&self, signal: Signal) -> Result<()> {
        if signal == Signal::SIGKILL
            && let Some(d) = self.dirs.iter().find(|d| d.is_v2())
            && self.layout.mode() == Mode::Unified
            && d.path.join("cgroup.kill").exists()
        {
            return write_file(&d.path.join("cgroup.kill"), "1").map_err(|e| {
                io_err(
                    e,
                    format!("kill the processes of cgroup {}", d.path.display()),
                )
            });
        }
        let frozen = self.freezer().is_ok() && self.freeze().is_ok();
        let result = self.pids().map(|pids| {
            for pid in pids {
                // A process that exited meanwhile is no error.
                let _ = kill(Pid::from_raw(pid), signal);
            }
        });
        if frozen {
            self.thaw()?;
        }
        result
    }

    /// Kills every process, waits for them, and removes the directory in every hierarchy
    /// (retrying while the kernel still counts exiting processes).
    pub fn remove(self) -> Result<()> {
        // The usual case, its processes gone: each directory goes with one rmdir, which the
        // kernel refuses while a process or a sub-cgroup is left in it.
        let busy: Vec<&Dir> = self
            .dirs
            .iter()
            .filter(|d| fs::remove_dir(&d.path).is_err_and(|e| e.kind() != io::ErrorKind::NotFound))
            .collect();
        if !busy.is_empty() {
            if self.freezer().is_ok() && self.is_frozen().unwrap_or(false) {
                // A frozen process cannot die: thaw so the kill below takes effect.
                let _ = self.thaw();
            }
            if let Ok(Freezer::V1(dir)) = self.freezer() {
                // Nor can one in a sub-cgroup the container froze itself, which a thawed
                // parent leaves frozen (v2 lets a frozen process die of SIGKILL).
                thaw_v1_below(&dir);
            }
        }
        let mut first: Option<Errcode> = None;
        for d in &self.dirs {
            if busy.iter().any(|b| b.path == d.path)
                && let Err(e) = remove_tree(&d.path)
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Makes those of `dirs` in `part`.
    fn make_dirs(&mut self, dirs: Vec<Dir>, plan: &ResourcePlan, part: Part) -> Result<()> {
        let mine: Vec<Dir> = dirs.into_iter().filter(|d| part.has(d)).collect();
        refuse_in_use(&self.path, &mine)?;
        for d in mine {
            let mount = self.mount_of(&d).to_path_buf();
            let created = create_chain(&mount, &d)?;
            if created.is_none() && self.path.is_run() {
                // A leftover of a killed run is reusable only if nothing runs in it.
                fs::remove_dir(&d.path)
                    .and_then(|()| fs::create_dir(&d.path))
                    .map_err(|_| {
                        Errcode::usage(format!(
                            "cgroup {} exists and is in use: is a container of that name running?",
                            d.path.display()
                        ))
                    })?;
            }
            self.dirs.push(d);
            let d = &self.dirs[self.dirs.len() - 1];
            // crabcan run's cgroup sits right below the caller's (v1), whose cpuset holds a
            // process and so cannot be empty; create_chain filled the new one. A given path
            // may pass levels others made and left empty.
            if d.has("cpuset") && !(self.path.is_run() && created.is_some()) {
                copy_cpuset_down(&mount, &d.path)?;
            }
            if d.is_v2() {
                self.enable_v2(&mount, &d.path, &plan.v2_controllers())?;
            }
        }
        Ok(())
    }

    fn mount_of(&self, d: &Dir) -> &Path {
        if d.is_v2() {
            self.layout.v2.as_ref().map(|h| h.mount_point.as_path())
        } else {
            self.layout
                .v1
                .iter()
                .find(|h| h.controllers == d.controllers)
                .map(|h| h.mount_point.as_path())
        }
        .unwrap_or(Path::new("/"))
    }

    /// Enables the controllers the writes need from the hierarchy's root down to the
    /// container's parent. On a v2-only host the others the root offers are enabled too
    /// where the kernel lets us (stats and later updates need them), and skipped where it
    /// does not; on a hybrid host the v2 side is left as it is beyond what is needed.
    fn enable_v2(&self, mount: &Path, dir: &Path, required: &[String]) -> Result<()> {
        let offered: Vec<String> = if self.layout.mode() == Mode::Unified {
            self.layout
                .v2
                .as_ref()
                .map(|h| h.controllers.clone())
                .unwrap_or_default()
        } else {
            required.to_vec()
        };
        let Ok(rel) = dir.parent().unwrap_or(mount).strip_prefix(mount) else {
            return Ok(());
        };
        let mut chain = vec![mount.to_path_buf()];
        let mut p = mount.to_path_buf();
        for c in rel.components() {
            p.push(c);
            chain.push(p.clone());
        }
        for level in &chain {
            let file = level.join("cgroup.subtree_control");
            let current = fs::read_to_string(&file).unwrap_or_default();
            for c in &offered {
                if current.split_whitespace().any(|x| x == c) {
                    continue;
                }
                let r = write_file(&file, &format!("+{c}"));
                if let Err(e) = r
                    && required.contains(c)
                {
                    return Err(io_err(
                        e,
                        format!("enable the {c} controller in {}", file.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn apply(&self, plan: &ResourcePlan, create: bool) -> Result<()> {
        let mut writes: Vec<&crate::resources::Write> = plan.writes.iter().collect();
        // memory.limit_in_bytes may never exceed memsw: pick the order from the current value.
        let pos = |f: &str| writes.iter().position(|w| w.file == f);
        if let (Some(l), Some(s)) = (
            pos("memory.limit_in_bytes"),
            pos("memory.memsw.limit_in_bytes"),
        ) && let Some(d) = self.dir_for(&writes[s].target)
        {
            let current = read(&d.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            let new: i64 = writes[s].value.parse().unwrap_or(-1);
            if memsw_first(current, new) {
                writes.swap(l, s);
            }
        }
        for w in writes {
            let Some(dir) = self.dir_for(&w.target) else {
                return Err(Errcode::setup(format!(
                    "{}: the cgroup has no directory in the hierarchy of {}",
                    w.what,
                    match &w.target {
                        Target::V1(c) => c.as_str(),
                        Target::V2 => "cgroup v2",
                    }
                )));
            };
            let file = dir.join(&w.file);
            if !file.exists() {
                return Err(missing_file(w.what, &w.file, &file));
            }
            write_file(&file, &w.value).map_err(|e| {
                io_err(
                    e,
                    format!("write '{}' to {} ({})", w.value, file.display(), w.what),
                )
            })?;
        }
        match &plan.devices {
            Some(DevicePlan::V1(lines)) if create => self.write_v1_devices(lines)?,
            Some(DevicePlan::V2(rules)) if create => {
                let Some(d) = self.dirs.iter().find(|d| d.is_v2()) else {
                    return Err(Errcode::setup(
                        "device rules: the cgroup has no cgroup v2 directory",
                    ));
                };
                confine_v2(rules, &d.path)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn write_v1_devices(&self, lines: &[V1Write]) -> Result<()> {
        let Some(d) = self.dirs.iter().find(|d| d.has("devices")) else {
            return Err(Errcode::setup(
                "device rules: the cgroup has no devices directory",
            ));
        };
        // One open per run of lines to the same file: the kernel takes each write(2) as one
        // rule, so a default set of nine rules is two opens, not nine.
        let mut open: Option<(&str, fs::File)> = None;
        for l in lines {
            let file = d.path.join(l.file);
            let what = || format!("write '{}' to {} (device rules)", l.value, file.display());
            let f = match open.take() {
                Some((name, f)) if name == l.file => open.insert((name, f)),
                _ => open.insert((
                    l.file,
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .sys_ctx(what)?,
                )),
            };
            io::Write::write_all(&mut f.1, l.value.as_bytes()).sys_ctx(what)?;
        }
        Ok(())
    }

    fn dir_for(&self, t: &Target) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| match t {
                Target::V1(c) => d.has(c),
                Target::V2 => d.is_v2(),
            })
            .map(|d| d.path.as_path())
    }

    fn memory_dir(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.has("memory")).or_else(|| {
            self.dirs
                .iter()
                .find(|d| d.is_v2() && self.layout.mode() == Mode::Unified)
        })
    }

    /// Where processes are listed: the v2 directory on a v2-only host, else a v1 one (a
    /// hybrid host's v2 directory holds the same processes, but v1 is where they are
    /// frozen and counted).
    fn procs_dir(&self) -> &Path {
        let pick = self
            .dirs
            .iter()
            .find(|d| d.has("freezer") || d.has("pids"))
            .or_else(|| self.dirs.first());
        pick.map_or(Path::new("/nonexistent"), |d| d.path.as_path())
    }

    fn freezer(&self) -> Result<Freezer> {
        if let Some(d) = self.dirs.iter().find(|d| d.has("freezer")) {
            return Ok(Freezer::V1(d.path.clone()));
        }
        if let Some(d) = self.dirs.iter().find(|d| d.is_v2())
            && d.path.join("cgroup.freeze").exists()
        {
            return Ok(Freezer::V2(d.path.clone()));
        }
        Err(Errcode::setup(
            "no freezer on this host (no v1 freezer hierarchy, no cgroup.freeze in cgroup v2)",
        ))
    }

    fn set_frozen(&self, on: bool) -> Result<()> {
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut delay = Duration::from_millis(1);
        match self.freezer()? {
            Freezer::V1(dir) => {
                let file = dir.join("freezer.state");
                let want = if on { "FROZEN" } else { "THAWED" };
                loop {
                    // Rewritten on every round: a v1 freeze that meets a process in an
                    // uninterruptible sleep stays FREEZING until asked again.
                    write_file(&file, want)
                        .map_err(|e| io_err(e, format!("write {want} to {}", file.display())))?;
                    if read(&file)?.trim() == want {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        if on {
                            let _ = write_file(&file, "THAWED");
                        }
                        return Err(Errcode::setup(format!(
                            "{} did not reach {want} within {}s",
                            file.display(),
                            FREEZE_TIMEOUT.as_secs()
                        )));
                    }
                    sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(20));
                }
            }
            Freezer::V2(dir) => {
                let file = dir.join("cgroup.freeze");
                let v = if on { "1" } else { "0" };
                write_file(&file, v)
                    .map_err(|e| io_err(e, format!("write {v} to {}", file.display())))?;
                loop {
                    if v2_frozen(&dir)? == on {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        if on {
                            let _ = write_file(&file, "0");
                        }
                        return Err(Errcode::setup(format!(
                            "{} did not report frozen {v} within {}s",
                            dir.join("cgroup.events").display(),
                            FREEZE_TIMEOUT.as_secs()
                        )));
                    }
                    sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(20));
                }
            }
        }
    }
}

enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

/// Thaws every v1 freezer cgroup below `dir`, parents first.
fn thaw_v1_below(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = e.path();
            let _ = write_file(&sub.join("freezer.state"), "THAWED");
            thaw_v1_below(&sub);
        }
    }
}

fn v2_frozen(dir: &Path) -> Result<bool> {
    Ok(read(&dir.join("cgroup.events"))?
        .lines()
        .any(|l| l.trim() == "frozen 1"))
}

fn read(file: &Path) -> Result<String> {
    fs::read_to_string(file).map_err(|e| io_err(e, format!("read {}", file.display())))
}

/// The container's directory in each hierarchy: every v1 one, then v2.
fn dirs_for(layout: &Layout, path: &CgroupPath) -> Result<Vec<Dir>> {
    let mut out = Vec::new();
    for h in &layout.v1 {
        out.push(Dir {
            controllers: h.controllers.clone(),
            path: h.dir_of(&path.resolve(&h.own, false))?,
        });
    }
    if let Some(h) = &layout.v2 {
        out.push(Dir {
            controllers: Vec::new(),
            path: h.dir_of(&path.resolve(&h.own, true))?,
        });
    }
    Ok(out)
}

/// Creates the directories from `mount` down to `d`; `Some(())` when the last one is new,
/// `None` when it existed.
fn create_chain(mount: &Path, d: &Dir) -> Result<Option<()>> {
    let rel = d.path.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut p = mount.to_path_buf();
    let mut last_new = None;
    for c in rel.components() {
        p.push(c);
        match fs::create_dir(&p) {
            Ok(()) => {
                last_new = Some(());
                if d.has("cpuset") {
                    // A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and no
                    // process may join it until they are set: fill it from its parent.
                    copy_cpuset_from_parent(&p)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_new = None,
            Err(e) => return Err(io_err(e, format!("create cgroup {}", p.display()))),
        }
    }
    Ok(last_new)
}

/// Fills empty cpuset.cpus/mems from the root down to `dir` (levels made by others may be
/// empty too).
fn copy_cpuset_down(mount: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut p = mount.to_path_buf();
    for c in rel.components() {
        p.push(c);
        copy_cpuset_from_parent(&p)?;
    }
    Ok(())
}

fn copy_cpuset_from_parent(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = dir.join(f);
        if read(&mine)?.trim().is_empty() {
            let theirs = read(&parent.join(f))?;
            write_file(&mine, theirs.trim()).map_err(|e| {
                io_err(
                    e,
                    format!("copy {f} of {} into {}", parent.display(), dir.display()),
                )
            })?;
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> io::Result<()> {
    let text = fs::read_to_string(dir.join("cgroup.procs"))?;
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            collect_pids(&e.path(), out)?;
        }
    }
    Ok(())
}

/// The error for a file of a present controller that this kernel lacks.
fn missing_file(what: &str, name: &str, file: &Path) -> Errcode {
    let (why, hint) = match name {
        "memory.memsw.limit_in_bytes" | "memory.swap.max" => (
            "the kernel does not account swap for cgroups",
            "boot with swapaccount=1, or give no swap limit",
        ),
        "blkio.weight" | "blkio.weight_device" => (
            "the kernel's I/O scheduler offers no proportional weights here (CFQ/BFQ)",
            "give no block I/O weight on this host",
        ),
        _ => (
            "the kernel does not provide it",
            "give no such limit on this kernel",
        ),
    };
    Errcode::setup(format!("{what}: {} does not exist: {why}", file.display())).with_hint(hint)
}
