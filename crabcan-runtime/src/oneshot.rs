//! `crabcan run`'s one-shot container, in the OCI lifecycle's steps: [`create`] makes
//! everything up to a container whose process waits to be released, [`Container::start`]
//! releases it, [`Container::wait`] forwards signals and returns its exit status, and
//! [`Container::delete`] undoes on the host what create made. Dropping a [`Container`]
//! deletes it, so that every way out, an error's included, cleans up.
//!
//! Unlike the OCI `create`, crabcan stays in the foreground: the process it clones is a
//! crabcan init, PID 1 of the container, that dies with crabcan (parent-death signal), and
//! a guardian process undoes on the host what a SIGKILLed crabcan could not.
//!
//! Order of [`create`]: the sealed re-exec (before anything touches the host), the name
//! taken, the id range leased, the mount points made, the guardian forked, the cgroup made
//! (one the run cannot do without: its v2 directory, the rest once the process is
//! released, while it makes its mounts), the process cloned (waiting; it enters its cgroup
//! by itself), its id maps written, and the descriptors it needs from the host opened.

use crate::foreground::{Registration, RunSpec, check_run_spec};
use crabcan_cgroups::{ContainerCgroup, LimitKind, Limits};
use crabcan_child::{ChildSpec, Guardian, IdLease, PtyEnds};
use crabcan_errors::{Errcode, Result};
use crabcan_mounts::Prepared;
use nix::sys::signal::SigSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Where root's crabcan records the id ranges its running containers hold: a directory
/// every host has and only root writes (see `crabcan_child::allocate_ids`).
const LEASE_DIR: &str = "/run";

/// Where an older crabcan recorded them (`<uid base>` files): a slot held there is skipped.
const LEGACY_LEASE_DIR: &str = "/run/crabcan/#ids";

/// Root's default state root, which a named run or an OCI container leaves behind empty;
/// a run as root removes it once empty (fails harmlessly otherwise), as the lease
/// directory's removal did before.
fn remove_default_root_if_empty() {
    let _ = std::fs::remove_dir(crate::state::default_root(0, None));
}

/// The process limit set where no pids cgroup counts the container's processes.
const DEFAULT_NPROC: u64 = 4096;

/// A one-shot container recorded under a name in the state directory while it runs, so
/// that the OCI commands (exec, state, list, ps, kill, delete) reach it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The state directory.
    pub root: PathBuf,
    /// The container's id there.
    pub name: String,
    /// How the front end shows the name in an error ("the container NAME").
    pub shown: String,
    /// The seccomp profile applied, as config.json's `linux.seccomp`; `None`: no filter.
    pub seccomp: Option<serde_json::Value>,
    /// The root is mounted read-only.
    pub read_only: bool,
}

/// The caller's terminal, for a command with a pty of its own ([`ChildSpec::tty`]). The
/// front end owns the terminal; the runtime calls it at the right moments.
pub struct Terminal {
    /// Puts the caller's terminal back after crabcan was killed (run by the guardian);
    /// `None`: nothing to put back.
    pub restore: Option<Box<dyn Fn()>>,
    /// Relays the caller's stdio to the command's pty until the container ends.
    pub relay: Relay,
}

/// Relays the caller's stdio to the command's pty until the container ends, forwarding
/// signals to it; returns its exit code.
pub type Relay = Box<dyn FnMut(&mut crabcan_child::Container, PtyEnds) -> Result<i32>>;

/// What a one-shot container is made of, as the front end decided it.
pub struct Spec {
    /// What the container's process gets, its mount plan included.
    pub child: ChildSpec,
    /// The limits asked for; crabcan adds its defaults (a pids cap, device rules).
    pub limits: Limits,
    /// How the front end names each limit, for an error about it.
    pub limit_name: fn(LimitKind) -> String,
    /// The container's host ids are a range of its own, leased here (the map in
    /// `child.idmap` is rebased onto it).
    pub auto_ids: bool,
    /// The caller set an nproc rlimit itself (so none is added where no cgroup counts
    /// processes).
    pub nproc_given: bool,
    /// Where and as what the container is recorded, if it is.
    pub record: Option<Record>,
    /// The caller's terminal; required when `child.tty` is set.
    pub terminal: Option<Terminal>,
    /// A seccomp program made while the container's process sets up, instead of one in
    /// `child.security`: the front end's compile of a given profile (with its own error),
    /// which so costs the start nothing where the process's setup takes as long.
    pub seccomp_later: Option<LaterFilter>,
}

/// The front end's compile of the seccomp profile it was given ([`Spec::seccomp_later`]).
pub struct LaterFilter(pub Box<dyn FnOnce() -> Result<crabcan_security::Compiled>>);

impl std::fmt::Debug for LaterFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaterFilter(..)")
    }
}

/// A one-shot container from [`create`] to [`Container::delete`] (or drop).
pub struct Container {
    spec: ChildSpec,
    mask: SigSet,
    recorded: Option<RunSpec>,
    terminal: Option<Terminal>,
    registration: Option<Registration>,
    lease: Option<IdLease>,
    prepared: Option<Prepared>,
    guardian: Option<Guardian>,
    cgroup: Option<ContainerCgroup>,
    child: Option<crabcan_child::Container>,
    handed: Vec<OwnedFd>,
    seccomp_later: Option<LaterFilter>,
    /// The second step of a cgroup made in two ([`Container::start`] takes it), and whether
    /// crabcan runs as root (for its error).
    completing: Option<(CgroupPlan, bool)>,
    started: bool,
}

/// Creates the container: its process is cloned and mapped, enters its cgroup by itself,
/// and waits for [`Container::start`]. On any failure nothing is left on the host.
///
/// Where an id of the container could write crabcan's binary, this first re-executes the
/// program from a sealed copy of it (`crabcan_child::reexec_sealed`): then it does not
/// return, and the program starts again with the same arguments. So call it before the
/// program changes anything, while single-threaded.
pub fn create(spec: Spec) -> Result<Container> {
    let Spec {
        child: spec,
        limits,
        limit_name,
        auto_ids,
        nproc_given,
        record,
        terminal,
        seccomp_later,
    } = spec;
    let mut spec = spec;
    spec.seccomp_later = seccomp_later.is_some();
    if spec.tty.is_some() && terminal.is_none() {
        return Err(Errcode::setup(
            "the command's pty needs the caller's terminal, and none was given",
        ));
    }
    let is_root = nix::unistd::Uid::effective().is_root();
    // Before crabcan touches the host, while single-threaded: unless no id the container
    // maps could write crabcan's binary, run from a sealed in-memory copy of it, so that no
    // process of the container can reach the host's file (crabcan_child::reexec_sealed).
    // Root's own id range comes from this host's pool (read once for the whole run).
    let pool = if auto_ids {
        crabcan_child::host_pool()
    } else {
        crabcan_child::Pool::EMPTY
    };
    let (uids, gids) = if auto_ids {
        pool.host_ranges()
    } else {
        spec.idmap.host_ranges()
    };
    if crabcan_child::exe_writable_by(&uids, &gids)? {
        log::debug!("re-executing from a sealed copy of crabcan's binary");
        // crabcan's init and the waiting crabcan run as long as the container: the copy.
        crabcan_child::reexec_sealed(
            std::env::args_os().collect(),
            std::env::vars_os().collect(),
            crabcan_child::ImageUse::WhileItRuns,
        )?;
    }
    if log::log_enabled!(log::Level::Debug) {
        for line in spec.mounts.describe() {
            log::debug!("mount plan: {line}");
        }
    }
    // Checked with its pid, as the directory name holds both (the `@` of the leaf counts
    // as one character like the `-` here): the whole must fit a file name.
    crabcan_cgroups::check_container_name(&format!("{}-{}", spec.hostname, std::process::id()))?;
    let cg_path = crabcan_cgroups::CgroupPath::run(&crabcan_cgroups::run_leaf(
        &spec.hostname,
        std::process::id(),
    ))?;
    if let Some(r) = &record {
        // An exec into the container reads what the run applies from its record: a record
        // it could not read fails the run now, before the host is changed.
        check_run_spec(&RunSpec::of_child(&spec, r.seccomp.clone(), r.read_only)?)
            .map_err(|e| e.context(format!("cannot record {}", r.shown)))?;
    }
    // From here on crabcan changes the host (mount points, a cgroup, an id range): a
    // Ctrl-C must come through the wait, after which delete cleans up, not kill crabcan
    // half-way.
    let mask = crabcan_child::block_signals()?;
    let mut c = Container {
        spec,
        mask,
        recorded: None,
        terminal,
        registration: None,
        lease: None,
        prepared: None,
        guardian: None,
        cgroup: None,
        child: None,
        handed: Vec::new(),
        seccomp_later,
        completing: None,
        started: false,
    };
    // The name is taken first: a second run with it fails before it changes anything.
    if let Some(r) = &record {
        c.registration = Some(Registration::reserve(&r.root, &r.name)?);
    }
    if auto_ids {
        let lease = crabcan_child::allocate_ids(
            Path::new(LEASE_DIR),
            Some(Path::new(LEGACY_LEASE_DIR)),
            &pool,
        )?;
        let slot = lease.slot();
        c.spec.idmap.rebase(slot.uid, slot.gid);
        c.lease = Some(lease);
    }
    // The guardian comes before the mount points: prepare announces each before it makes
    // it, and the guardian, told, removes it should crabcan be killed half-way. Forked only
    // when crabcan holds something on the host that a SIGKILL would strand (at the first
    // announcement, when nothing else needs it). It removes them in the very directory
    // prepare makes them in (a copy of its descriptor), not in whatever the root's path
    // leads to by then.
    let root = crabcan_mounts::open_root(&c.spec.mounts)?;
    let guarded_root = match &root {
        Some(r) => Some(
            r.try_clone()
                .map_err(|e| Errcode::setup(format!("cannot keep the root's descriptor: {e}")))?,
        ),
        None => None,
    };
    let Container {
        spec,
        terminal,
        registration,
        lease,
        guardian,
        prepared,
        ..
    } = &mut c;
    let restore = terminal.as_ref().and_then(|t| t.restore.as_ref());
    let owned = registration
        .as_ref()
        .map(|r| (r.dir().to_path_buf(), r.owner()));
    let needed_now = lease.is_some() || restore.is_some() || owned.is_some();
    let mut start_guardian = || {
        crabcan_child::guardian(&mut |points| {
            if let Some(root) = &guarded_root {
                let _ = crate::remove_mount_points_in(std::os::fd::AsFd::as_fd(root), points);
            }
            if let Some(l) = lease.as_mut() {
                l.remove_now();
            }
            // The cgroup goes now, not at the next run's sweep (which cannot judge a
            // crabcan that ran in another pid namespace). The container is gone by now
            // (the guardian waited for it); its cgroup, made after the guardian, is found
            // by its path, which holds this run's pid.
            if let Ok(layout) = crabcan_cgroups::Layout::detect()
                && let Ok(cg) = ContainerCgroup::open(&layout, &cg_path)
            {
                let _ = cg.remove();
            }
            if let Some((dir, owner)) = &owned {
                crate::foreground::remove_if_owned(dir, *owner);
            }
            if is_root {
                remove_default_root_if_empty();
            }
            if let Some(restore) = restore {
                restore();
            }
        })
    };
    if needed_now {
        *guardian = Some(start_guardian()?);
    }
    let mut announced: Vec<PathBuf> = Vec::new();
    let made = prepared.insert(crabcan_mounts::prepare_in(
        &spec.mounts,
        root,
        &mut |point| {
            if guardian.is_none() {
                *guardian = Some(start_guardian()?);
            }
            announced.push(point.to_path_buf());
            guardian.as_ref().map_or(Ok(()), |g| g.note(point))
        },
    )?);
    // What was announced and not made (made by someone else meanwhile, two containers on
    // one root; or a dangling symlink, whose target was made instead) is not this run's
    // to remove: taken back one by one, so that a kill meanwhile strands nothing made.
    if let Some(g) = guardian.as_ref() {
        let kept: std::collections::HashSet<&Path> = made.created().collect();
        for p in announced.iter().filter(|p| !kept.contains(p.as_path())) {
            g.forget(p)?;
        }
    }
    // The guardian has its copy; the container's process, cloned below, gets none.
    drop(guarded_root);
    if let Some(p) = &c.prepared {
        for p in p.created() {
            log::debug!("created mount point {} in the root", p.display());
        }
    }
    // Described only for a debug log: the text costs ~35 µs of a start.
    if log::log_enabled!(log::Level::Debug) {
        let described = crabcan_security::describe(&c.spec.security);
        log::debug!(
            "security: {}",
            if c.seccomp_later.is_some() {
                described.replace(
                    "seccomp unconfined",
                    "seccomp the given profile, compiled while the process sets up",
                )
            } else {
                described
            }
        );
    }
    // A cgroup the run cannot do without is made in two steps: its v2 directory before the
    // clone of the container's process, the rest while it makes its mounts
    // (Container::start); one that may be skipped is made whole first,
    // as whether it exists decides the nproc rlimit below, which the process takes with it.
    let mut later = None;
    let pids_cap = match plan_cgroup(&limits, limit_name, is_root, &cg_path)? {
        // In two steps only as the global root: the process enters the v1 hierarchies with
        // the container's ids, and the kernel lets only the global root (the opener of the
        // `tasks` files) move a process of other ids there. Crabcan as root inside a user
        // namespace makes it whole first, the process entering before it takes those ids.
        Some(p) if p.required && is_root && in_initial_userns() => {
            let cg =
                ContainerCgroup::create_v2_first(&p.layout, &cg_path, &p.resources, |_| Ok(()))
                    .map_err(|e| p.error(e, is_root))?;
            c.cgroup = Some(cg);
            let caps = p.caps_pids();
            later = Some(p);
            caps
        }
        Some(p) => match make_cgroup(&p, is_root, &cg_path)? {
            Some(cg) => {
                c.cgroup = Some(cg);
                p.caps_pids()
            }
            None => false,
        },
        None => false,
    };
    if !pids_cap && !nproc_given && limits.pids != Some(crabcan_cgroups::UNLIMITED) {
        // Without any pids cgroup a fork bomb would only stop at the host's pid_max. The
        // kernel counts processes per user and user namespace: a cap per id of the
        // container, weaker than a cgroup (a container that switches ids gets it again per
        // id), but far below pid_max for a shell's fork bomb.
        log::debug!("no pids cgroup: process limit {DEFAULT_NPROC} (rlimit)");
        c.spec.rlimits.push(crabcan_security::RlimitSpec {
            name: "nproc",
            resource: nix::sys::resource::Resource::RLIMIT_NPROC,
            soft: DEFAULT_NPROC,
            hard: Some(DEFAULT_NPROC),
        });
    }
    // What the record gives an exec by default: the command's process as it now stands.
    if let Some(r) = record {
        c.recorded = Some(RunSpec::of_child(&c.spec, r.seccomp, r.read_only)?);
    }
    c.spawn(later, is_root)?;
    Ok(c)
}

impl Container {
    /// Clones the container's process (it enters its cgroup by itself, then waits),
    /// announces it to the guardian, maps its ids and opens what its mounts need from the
    /// host. A cgroup `later` planned in two steps is completed by [`Container::start`].
    fn spawn(&mut self, later: Option<CgroupPlan>, is_root: bool) -> Result<()> {
        // The process writes itself into its cgroup, which spares every run the kernel's
        // wait for an RCU grace period that moving it by pid costs (crabcan_cgroups::Entry).
        // The one case left to the move by pid: the entry's files cannot be opened by
        // crabcan (a cgroup delegated with `cgroup.procs` writable but not a v1 `tasks`
        // file); then the move by pid below tries, and its error, if any, is the one shown.
        let entry = match &self.cgroup {
            Some(cg) => match cg.entry() {
                Ok(e) => Some(e),
                Err(e) => {
                    log::debug!("the container's process cannot enter its cgroup itself: {e}");
                    None
                }
            },
            None => None,
        };
        let joining = match (&entry, &later) {
            (Some(e), Some(_)) => crabcan_child::Joining::Later(e),
            (Some(e), None) => crabcan_child::Joining::Now(e),
            (None, _) => crabcan_child::Joining::None,
        };
        let child = self
            .child
            .insert(crabcan_child::spawn(&self.spec, &self.mask, joining)?);
        log::debug!("container process {} cloned", child.pid());
        if let Some(g) = &self.guardian {
            // Should crabcan die, the guardian kills the container and waits for it before
            // it gives its id range back.
            g.watch(child.pid());
        }
        // Without crabcan's init no process of the container keeps the lease open (the
        // init does, as long as the container lives): named in the lease, the process keeps
        // its slot from other runs even if crabcan and the guardian are killed together.
        // Before the process is released, so before its command can clear its parent-death
        // signal.
        if !self.spec.init
            && let Some(lease) = &self.lease
        {
            lease.record_holder(child.pid().as_raw())?;
        }
        // The rest of a cgroup made in two steps: once the process is released, while it
        // makes its mounts (start), for a process that enters it by itself; for one moved
        // by pid (below), now.
        if let (Some(p), Some(cg)) = (later, self.cgroup.as_mut()) {
            if entry.is_some() {
                self.completing = Some((p, is_root));
            } else {
                cg.complete().map_err(|e| p.error(e, is_root))?;
                log_cgroup(cg, &p.resources);
            }
        }
        child.write_id_maps(&self.spec.idmap)?;
        log::debug!(
            "id maps written: uid_map '{}', gid_map '{}'",
            self.spec.idmap.uid_map().trim(),
            self.spec.idmap.gid_map().trim()
        );
        // The root as opened once by prepare, and the idmapped clones (made here: they
        // need privilege over the host's filesystems, which the container's process lacks).
        let userns = if crabcan_mounts::needs_idmap(&self.spec.mounts) {
            Some(child.userns()?)
        } else {
            None
        };
        self.handed = crabcan_mounts::handover(
            &self.spec.mounts,
            self.prepared.as_ref().and_then(Prepared::root),
            userns.as_ref().map(std::os::fd::AsFd::as_fd),
        )?;
        log::debug!("{} mount descriptors handed over", self.handed.len());
        if let Some(cg) = &self.cgroup {
            if entry.is_some() {
                log::debug!("container process enters {:?} itself", cg.paths());
            } else {
                cg.add_process(child.pid().as_raw())?;
                log::debug!("container process placed in {:?}", cg.paths());
            }
        }
        Ok(())
    }

    /// The container's first process (its init) on the host.
    pub fn pid(&self) -> Option<nix::unistd::Pid> {
        self.child.as_ref().map(crabcan_child::Container::pid)
    }

    /// Releases the container: its process sets itself up and execs the command; returns
    /// once it has, or with its setup error. A recorded container is recorded as running
    /// now, set up completely.
    pub fn start(&mut self) -> Result<()> {
        let child = match self.child.as_mut() {
            Some(c) if !self.started => c,
            _ => return Err(Errcode::setup("the container was started already")),
        };
        self.started = true;
        let filter = self.seccomp_later.take().map(|f| f.0);
        // The cgroups of dead runs beside the container's go while its process sets up,
        // after the rest of its cgroup: with the time the parent's part of the setup leaves.
        let sweep = self.cgroup.as_ref().map(ContainerCgroup::dead_runs);
        let then = sweep.map(|s| Box::new(move || s.sweep()) as Box<dyn FnOnce()>);
        let cgroup = match (self.completing.take(), self.cgroup.as_mut()) {
            (Some((p, is_root)), Some(cg)) => {
                let complete = move || {
                    cg.complete().map_err(|e| p.error(e, is_root))?;
                    log_cgroup(cg, &p.resources);
                    cg.v1_entry()
                };
                Some(Box::new(complete) as Box<dyn FnOnce() -> Result<_> + '_>)
            }
            _ => None,
        };
        let handed = std::mem::take(&mut self.handed);
        child.release_with(
            handed,
            crabcan_child::Meanwhile {
                cgroup,
                filter,
                then,
            },
        )?;
        log::debug!("container running {:?}", self.spec.argv);
        // Only now, set up completely: an exec must never join a container whose root is
        // not switched yet.
        if let (Some(reg), Some(run)) = (self.registration.as_mut(), &self.recorded) {
            reg.record(child.pid().as_raw(), run, self.cgroup.as_ref())?;
            log::debug!("container recorded in {}", reg.dir().display());
        }
        Ok(())
    }

    /// Waits for the started container to end, forwarding crabcan's signals to it (and,
    /// with a pty, relaying the caller's terminal); returns its exit code (128+N when killed
    /// by signal N).
    pub fn wait(&mut self) -> Result<i32> {
        let child = match self.child.as_mut() {
            Some(c) if self.started => c,
            _ => return Err(Errcode::setup("the container was not started")),
        };
        let code = match (&mut self.terminal, self.spec.tty.is_some()) {
            (Some(t), true) => match child.take_pty() {
                Some(pty) => (t.relay)(child, pty)?,
                None => {
                    return Err(Errcode::setup(
                        "the container's process sent no pty master before exec",
                    ));
                }
            },
            _ => child.wait()?,
        };
        log::debug!("container exited with {code}");
        Ok(code)
    }

    /// How many times the kernel's OOM killer killed a process of the container's cgroup.
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, ContainerCgroup::oom_kills)
    }

    /// Undoes what create made: kills what is left of the container, removes its cgroup,
    /// the mount points made in its root, its id range lease and its record (last, so that
    /// a `delete --force` waiting for the record returns once all is undone), and dismisses
    /// the guardian. A failure is logged as a warning: the rest is undone all the same.
    pub fn delete(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
        self.handed.clear();
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            log::warn!("{e}");
        }
        if let Some(p) = self.prepared.take()
            && let Err(e) = p.cleanup()
        {
            log::warn!("{e}");
        }
        let as_root = nix::unistd::geteuid().is_root();
        if let Some(l) = self.lease.take() {
            l.release();
        }
        if let Some(r) = self.registration.take()
            && let Err(e) = r.finish()
        {
            log::warn!("{e}");
        }
        if as_root {
            remove_default_root_if_empty();
        }
        if let Some(g) = self.guardian.take() {
            g.dismiss();
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The container's cgroup as planned: the limits asked for, plus crabcan's defaults (a pids
/// cap where the controller exists; device rules for root's containers).
struct CgroupPlan {
    layout: crabcan_cgroups::Layout,
    resources: crabcan_cgroups::Resources,
    /// A failure to make it fails the run: a limit was asked for, or crabcan runs as root.
    /// Otherwise (an ordinary user's defaults, where no cgroup is delegated to the user) it
    /// is skipped: then an nproc rlimit stands in for the pids cap, and host permissions
    /// decide which device nodes open.
    required: bool,
}

impl CgroupPlan {
    /// Whether the cgroup caps the container's processes.
    fn caps_pids(&self) -> bool {
        self.resources.pids.is_some()
    }

    /// The error of making the cgroup, as the run reports it.
    fn error(&self, e: Errcode, is_root: bool) -> Errcode {
        let e = e.context("cannot set up the container's cgroup");
        let denied = matches!(
            e.errno(),
            Some(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM | nix::errno::Errno::EROFS)
        );
        if denied && !is_root {
            e.with_hint(
                "cgroup limits need root or a cgroup delegated to this user; drop the limit flags",
            )
        } else {
            e
        }
    }
}

/// Plans the container's cgroup; `None` when it has none (no cgroup hierarchy, and nothing
/// asked for; or nothing to apply). An explicit limit whose controller exists nowhere fails
/// here, naming the limit.
fn plan_cgroup(
    limits: &Limits,
    limit_name: fn(LimitKind) -> String,
    is_root: bool,
    path: &crabcan_cgroups::CgroupPath,
) -> Result<Option<CgroupPlan>> {
    use crabcan_cgroups as cg;
    let asked = limits
        .resources()
        .map_err(|(_, e)| e.context("invalid limits"))?;
    let explicit = asked != cg::Resources::default();
    let layout = match cg::Layout::detect() {
        Ok(l) => l,
        Err(e) if explicit => return Err(e),
        Err(e) => {
            log::debug!("no cgroups: {e}");
            return Ok(None);
        }
    };
    log::debug!("{}", layout.describe());
    // One clear error for a limit whose controller exists nowhere, naming the limit.
    let asked_for = [
        (LimitKind::Memory, "memory", limits.memory.is_some()),
        (
            LimitKind::MemorySwap,
            "memory",
            limits.memory_swap.is_some(),
        ),
        (LimitKind::Pids, "pids", asked.pids.is_some()),
        (LimitKind::Cpus, "cpu", limits.cpus.is_some()),
        (LimitKind::CpuWeight, "cpu", limits.cpu_weight.is_some()),
    ];
    for (kind, controller, given) in asked_for {
        if given && !layout.has(controller) {
            return Err(cg::missing(controller, &layout)
                .context(format!("cannot apply {}", limit_name(kind))));
        }
    }
    let mut full = asked.clone();
    if limits.wants_default_pids() && layout.has("pids") {
        full.pids = Some(cg::Pids {
            limit: cg::DEFAULT_PIDS_MAX as i64,
        });
    }
    // The second line of defence behind `nodev`: the container opens only the standard
    // device nodes. An ordinary user's container maps the user's own ids, so host
    // permissions already limit it to the nodes the user can open.
    if is_root && (layout.has("devices") || layout.v2.is_some()) {
        full.devices = Some(cg::default_rules());
    }
    if full == cg::Resources::default() {
        return Ok(None);
    }
    if log::log_enabled!(log::Level::Debug) {
        for line in cg::plan_resources(&full, &layout)?.describe() {
            log::debug!("cgroup {path}: {line}");
        }
    }
    Ok(Some(CgroupPlan {
        layout,
        resources: full,
        required: explicit || is_root,
    }))
}

/// Whether this process is in the host's initial user namespace, whose root is the global
/// root: the kernel gives that namespace's `/proc/self/ns/user` a fixed inode number
/// (`PROC_USER_INIT_INO`). An error answers no.
fn in_initial_userns() -> bool {
    const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;
    nix::sys::stat::stat("/proc/self/ns/user").is_ok_and(|st| st.st_ino == PROC_USER_INIT_INO)
}

/// Makes the planned cgroup whole; `None` when it could not be made and is not required.
fn make_cgroup(
    plan: &CgroupPlan,
    is_root: bool,
    path: &crabcan_cgroups::CgroupPath,
) -> Result<Option<ContainerCgroup>> {
    match ContainerCgroup::create(&plan.layout, path, &plan.resources) {
        Ok(c) => {
            log_cgroup(&c, &plan.resources);
            Ok(Some(c))
        }
        Err(e) if plan.required => Err(plan.error(e, is_root)),
        Err(e) => {
            log::debug!("default limits skipped: {e}");
            Ok(None)
        }
    }
}

fn log_cgroup(c: &ContainerCgroup, resources: &crabcan_cgroups::Resources) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    for d in c.paths() {
        log::debug!("cgroup {} created", d.display());
    }
    if resources.devices.is_some()
        && let Some(d) = c.devices_dir()
    {
        let v2 = match c.v2_dir() {
            Some(v2) if v2 != d => format!(
                " (cgroup v1; the container's cgroup v2 directory {} has none)",
                v2.display()
            ),
            _ => String::new(),
        };
        log::debug!("device rules applied on {}{v2}", d.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crabcan_oci::NsKind;

    /// The host's tests run in its initial user namespace; a process in a user namespace
    /// of its own (where it may be root) is not in it, and so gets its cgroup made whole.
    #[test]
    fn only_the_initial_user_namespace_counts_as_the_hosts() {
        assert!(
            in_initial_userns(),
            "the tests run in the host's user namespace"
        );
        // SAFETY: the forked child only makes system calls and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let inside = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok()
                    && !in_initial_userns();
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(if inside { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    fn child(net: crabcan_child::Net, root: crabcan_mounts::Root) -> ChildSpec {
        let security = crabcan_security::plan(&crabcan_security::SecurityConfig::default())
            .expect("the default security plan");
        ChildSpec {
            argv: vec![c"/bin/sh".into(), c"-c".into(), c"true".into()],
            env: vec![c"PATH=/bin".into()],
            workdir: "/srv".into(),
            hostname: "box".into(),
            uid: 0,
            idmap: crabcan_child::IdMap::for_caller(0, 0, Some(3_221_225_472), None).unwrap(),
            mounts: crabcan_mounts::plan(&crabcan_mounts::MountConfig::new(root)).unwrap(),
            net,
            security,
            rlimits: vec![crabcan_security::parse_rlimit("nofile=100:200").unwrap()],
            init: true,
            tty: None,
            seccomp_later: false,
        }
    }

    fn spec(child: ChildSpec) -> Spec {
        Spec {
            child,
            limits: Limits::default(),
            limit_name: |k| format!("{k:?}"),
            auto_ids: false,
            nproc_given: false,
            record: None,
            terminal: None,
            seccomp_later: None,
        }
    }

    /// The record of a run is what its command gets, and it reads back as exec reads it.
    #[test]
    fn the_record_of_a_run_is_its_commands_process() {
        let c = child(
            crabcan_child::Net::None,
            crabcan_mounts::Root::Dir("/srv/rootfs".into()),
        );
        let seccomp: serde_json::Value =
            serde_json::from_str(crabcan_security::profile::CRABCAN_DEFAULT_JSON).unwrap();
        let run = RunSpec::of_child(&c, Some(seccomp.clone()), true).unwrap();
        check_run_spec(&run).unwrap();
        assert_eq!(run.process.args, ["/bin/sh", "-c", "true"]);
        assert_eq!(run.process.env, ["PATH=/bin"]);
        assert_eq!(run.process.cwd, Path::new("/srv"));
        assert_eq!(run.process.caps, c.security.capabilities());
        assert!(run.process.no_new_privs);
        let nofile = &run.process.rlimits[0];
        assert_eq!(
            (nofile.name, nofile.soft, nofile.hard),
            ("RLIMIT_NOFILE", 100, 200)
        );
        assert_eq!(run.seccomp, Some(seccomp));
        assert_eq!(run.rootfs.as_deref(), Some(Path::new("/srv/rootfs")));
        assert!(run.readonly_root);
        assert!(run.namespaces.contains(&NsKind::Net));
        assert_eq!(run.uid_mappings.len(), 1);
        assert_eq!(
            (run.uid_mappings[0].inside, run.uid_mappings[0].outside),
            (0, 3_221_225_472)
        );
        assert_eq!(run.gid_mappings, run.uid_mappings);
    }

    #[test]
    fn the_hosts_network_and_a_scratch_root_are_recorded_as_such() {
        let c = child(crabcan_child::Net::Host, crabcan_mounts::Root::Scratch);
        let run = RunSpec::of_child(&c, None, false).unwrap();
        assert!(!run.namespaces.contains(&NsKind::Net));
        assert_eq!(run.rootfs, None);
        assert_eq!(run.seccomp, None);
        assert!(!run.readonly_root);
    }

    /// A pty with nobody to relay it would leave the command without input or output:
    /// refused before anything is made.
    #[test]
    fn a_pty_without_the_callers_terminal_is_refused() {
        let mut c = child(crabcan_child::Net::None, crabcan_mounts::Root::Scratch);
        c.tty = Some(crabcan_child::Tty::default());
        let e = create(spec(c)).err().expect("refused");
        assert!(e.to_string().contains("needs the caller's terminal"), "{e}");
    }
}
