//! Runs a configured container: plan, prepare, spawn, map, release, wait, clean up.

use crate::config::{Config, Named};
use crabcan_child::ChildSpec;
use crabcan_errors::{Errcode, Result};
use std::path::Path;

/// Where root's crabcan records what it holds on the host while a container runs.
const STATE_DIR: &str = "/run/crabcan";

/// The process limit set where no pids cgroup counts the container's processes.
const DEFAULT_NPROC: u64 = 4096;

/// Runs the container described by `cfg` and returns the exit code crabcan should end with.
pub fn run(cfg: Config) -> Result<i32> {
    let Config {
        child: mut spec,
        seccomp_off,
        limits,
        auto_ids,
        nproc_given,
        named,
    } = cfg;
    let pids_limit = limits.pids;
    let is_root = nix::unistd::Uid::effective().is_root();
    // Before crabcan touches the host, while single-threaded: unless no id the container
    // maps could write crabcan's binary, run from a sealed in-memory copy of it, so that no
    // process of the container can reach the host's file (crabcan_child::reexec_sealed).
    // Root's own id range comes from this host's pool (read once for the whole run).
    let pool = if auto_ids {
        crabcan_child::host_pool()
    } else {
        Vec::new()
    };
    let (uids, gids) = if auto_ids {
        crabcan_child::pool_host_ranges(&pool)
    } else {
        spec.idmap.host_ranges()
    };
    if crabcan_child::exe_writable_by(&uids, &gids)? {
        log::debug!("re-executing from a sealed copy of crabcan's binary");
        crabcan_child::reexec_sealed(std::env::args_os().collect(), std::env::vars_os().collect())?;
    }
    if log::log_enabled!(log::Level::Debug) {
        for line in spec.mounts.describe() {
            log::debug!("mount plan: {line}");
        }
    }
    let cg_name = format!("{}-{}", spec.hostname, std::process::id());
    crabcan_cgroups::check_container_name(&cg_name)?;
    let cg_path =
        crabcan_cgroups::CgroupPath::run(&format!("{}{cg_name}", crabcan_cgroups::CGROUP_PREFIX))?;
    if let Some(n) = &named {
        // An exec into the container reads what the run applies from its record: a record
        // it could not read fails the run now, before the host is changed.
        crabcan_runtime::check_run_spec(&run_spec(&spec, n)?)
            .map_err(|e| e.context(format!("cannot record the container --name {}", n.name)))?;
    }
    // From here on crabcan changes the host (mount points, a cgroup, an id range): a
    // Ctrl-C must come through the wait loop, which cleans up, not kill crabcan half-way.
    let mask = crabcan_child::block_signals()?;
    // The name is taken first: a second run with it fails before it changes anything.
    let mut registration = match &named {
        Some(n) => Some(crabcan_runtime::Registration::reserve(&n.root, &n.name)?),
        None => None,
    };
    let mut lease = if auto_ids {
        let lease = crabcan_child::allocate_ids(Path::new(STATE_DIR), &pool)?;
        let slot = lease.slot();
        spec.idmap.rebase(slot.uid, slot.gid);
        Some(lease)
    } else {
        None
    };
    let mut prepared = crabcan_mounts::prepare(&spec.mounts).map_err(userns_hint)?;
    // Only when crabcan holds something on the host that a SIGKILL would strand.
    // With -t, the caller's terminal goes raw: a SIGKILLed crabcan cannot put it back.
    let cooked = if spec.tty.is_some() {
        crate::terminal::Saved::read()
    } else {
        None
    };
    let owned = registration
        .as_ref()
        .map(|r| (r.dir().to_path_buf(), r.owner()));
    let guardian =
        if prepared.is_empty() && lease.is_none() && cooked.is_none() && registration.is_none() {
            None
        } else {
            Some(crabcan_child::guardian(&mut || {
                let _ = prepared.remove_now();
                if let Some(l) = lease.as_mut() {
                    l.remove_now();
                }
                if let Some((dir, owner)) = &owned {
                    // A named container's record names its cgroup: the cgroup goes with
                    // it, not at the next run's sweep. The container is gone by now (the
                    // guardian waited for it); its cgroup, made after the guardian, is
                    // found by its path.
                    if let Ok(layout) = crabcan_cgroups::Layout::detect()
                        && let Ok(cg) = crabcan_cgroups::ContainerCgroup::open(&layout, &cg_path)
                    {
                        let _ = cg.remove();
                    }
                    crabcan_runtime::remove_if_owned(dir, *owner);
                }
                if let Some(t) = &cooked {
                    t.restore();
                }
            })?)
        };
    for p in prepared.created() {
        log::debug!("created mount point {} in the root", p.display());
    }
    if seccomp_off {
        log::warn!("--seccomp unconfined: the container runs without a system call filter");
    }
    log::debug!("security: {}", crabcan_security::describe(&spec.security));
    let cgroup = make_cgroup(&limits, is_root, &cg_path)?;
    let pids_cap = cgroup.as_ref().is_some_and(|(_, pids)| *pids);
    let cgroup = cgroup.map(|(cg, _)| cg);
    if !pids_cap && !nproc_given && pids_limit != Some(crabcan_cgroups::UNLIMITED) {
        // Without any pids cgroup a fork bomb would only stop at the host's pid_max. The
        // kernel counts processes per user and user namespace: a cap per id of the
        // container, weaker than a cgroup (a container that switches ids gets it again per
        // id), but far below pid_max for a shell's fork bomb.
        log::debug!("no pids cgroup: process limit {DEFAULT_NPROC} (rlimit)");
        spec.rlimits.push(crabcan_cgroups::RlimitSpec {
            name: "nproc",
            resource: nix::sys::resource::Resource::RLIMIT_NPROC,
            soft: DEFAULT_NPROC,
            hard: Some(DEFAULT_NPROC),
        });
    }
    // What the record gives an exec by default: the command's process as it now stands.
    let recorded = match &named {
        Some(n) => Some(run_spec(&spec, n)?),
        None => None,
    };
    let record = registration.as_mut().zip(recorded.as_ref());
    // With -t, the caller's terminal is raw from here until the container is gone,
    // whatever happens in between (the guard is dropped on every way out of the block).
    let result = {
        let raw = match spec.tty.as_mut() {
            Some(t) => {
                t.size = crate::terminal::caller_size();
                crate::terminal::RawMode::enter()
            }
            None => Ok(None),
        };
        raw.and_then(|_raw| {
            start_and_wait(
                &spec,
                &mask,
                cgroup.as_ref(),
                prepared.root(),
                guardian.as_ref(),
                record,
            )
        })
    };
    let result = match (result, &cgroup) {
        (Ok(137), Some(cg)) if cg.oom_kills() > 0 => {
            // One line naming the limit; the exit code stays the container's own.
            eprintln!(
                "crabcan: the container was killed by the kernel's OOM killer: it reached --memory ({} bytes)",
                limits.memory.map_or("?".into(), |m| m.to_string())
            );
            Ok(137)
        }
        (r, _) => r,
    };
    if let Some(cg) = cgroup
        && let Err(e) = cg.remove()
    {
        log::warn!("{e}");
    }
    if let Err(e) = prepared.cleanup() {
        log::warn!("{e}");
    }
    if let Some(l) = lease.take() {
        l.release();
    }
    // Last: a `delete --force` waiting for the record to go returns once all is undone.
    if let Some(r) = registration.take()
        && let Err(e) = r.finish()
    {
        log::warn!("{e}");
    }
    if let Some(g) = guardian {
        g.dismiss();
    }
    result
}

/// The container's cgroup: the limits asked for, plus crabcan's defaults (a pids cap where
/// the controller exists; device rules for root's containers). Returns it and whether it
/// caps processes. An explicit limit that cannot be applied, or root's device rules where a
/// device controller exists, fail the run; an ordinary user's defaults are skipped when no
/// cgroup is delegated to the user (then an nproc rlimit stands in for the pids cap, and
/// host permissions decide which device nodes open).
fn make_cgroup(
    limits: &crabcan_cgroups::Limits,
    is_root: bool,
    path: &crabcan_cgroups::CgroupPath,
) -> Result<Option<(crabcan_cgroups::ContainerCgroup, bool)>> {
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
    // One clear error for a limit whose controller exists nowhere, naming the flag.
    let asked_for = [
        ("--memory", "memory", limits.memory.is_some()),
        ("--memory-swap", "memory", limits.memory_swap.is_some()),
        ("--pids", "pids", asked.pids.is_some()),
        ("--cpus", "cpu", limits.cpus.is_some()),
        ("--cpu-weight", "cpu", limits.cpu_weight.is_some()),
    ];
    for (flag, controller, given) in asked_for {
        if given && !layout.has(controller) {
            return Err(cg::missing(controller, &layout).context(format!("cannot apply {flag}")));
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
    let caps = full.pids.is_some();
    match cg::ContainerCgroup::create(&layout, path, &full) {
        Ok(c) => {
            for d in c.paths() {
                log::debug!("cgroup {} created", d.display());
            }
            if full.devices.is_some()
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
            Ok(Some((c, caps)))
        }
        Err(e) if explicit || is_root => {
            let e = e.context("cannot set up the container's cgroup");
            let denied = matches!(
                e.errno(),
                Some(
                    nix::errno::Errno::EACCES | nix::errno::Errno::EPERM | nix::errno::Errno::EROFS
                )
            );
            Err(if denied && !is_root {
                e.with_hint("cgroup limits need root or a cgroup delegated to this user; drop the limit flags")
            } else {
                e
            })
        }
        Err(e) => {
            log::debug!("default limits skipped: {e}");
            Ok(None)
        }
    }
}

fn start_and_wait(
    spec: &ChildSpec,
    mask: &nix::sys::signal::SigSet,
    cgroup: Option<&crabcan_cgroups::ContainerCgroup>,
    root: Option<std::os::fd::BorrowedFd<'_>>,
    guardian: Option<&crabcan_child::Guardian>,
    record: Option<(
        &mut crabcan_runtime::Registration,
        &crabcan_runtime::RunSpec,
    )>,
) -> Result<i32> {
    let mut child = crabcan_child::spawn(spec, mask)?;
    log::debug!("container process {} cloned", child.pid());
    if let Some(g) = guardian {
        // Should crabcan die, the guardian kills the container and waits for it before it
        // gives its id range back.
        g.watch(child.pid());
    }
    child.write_id_maps(&spec.idmap)?;
    log::debug!(
        "id maps written: uid_map '{}', gid_map '{}'",
        spec.idmap.uid_map().trim(),
        spec.idmap.gid_map().trim()
    );
    // The root as opened once by prepare, and the idmapped clones (made here: they need
    // privilege over the host's filesystems, which the container's process lacks).
    let userns = if crabcan_mounts::needs_idmap(&spec.mounts) {
        Some(child.userns()?)
    } else {
        None
    };
    let handed = crabcan_mounts::handover(
        &spec.mounts,
        root,
        userns.as_ref().map(std::os::fd::AsFd::as_fd),
    )
    .map_err(userns_hint)?;
    log::debug!("{} mount descriptors handed over", handed.len());
    let pid = child.pid().as_raw();
    if let Some(cg) = cgroup {
        cg.add_process(pid)?;
        log::debug!("container process placed in {:?}", cg.paths());
    }
    child.release(handed)?;
    log::debug!("container running {:?}", spec.argv);
    // Only now, set up completely: an exec must never join a container whose root is
    // not switched yet.
    if let Some((r, run)) = record {
        r.record(pid, run, cgroup)?;
        log::debug!("container recorded in {}", r.dir().display());
    }
    let code = match (spec.tty.is_some(), child.take_pty()) {
        (false, _) => child.wait()?,
        (true, Some(pty)) => crate::terminal::relay(&mut child, pty)?,
        (true, None) => {
            return Err(Errcode::setup(
                "the container's process sent no pty master before exec",
            ));
        }
    };
    log::debug!("container exited with {code}");
    Ok(code)
}

/// What the run gives its command (and an exec into it by default): the process as
/// `spec` has it, with the caller's umask and the hard limits the rlimits end up with,
/// and the container's namespaces and id maps.
fn run_spec(spec: &ChildSpec, named: &Named) -> Result<crabcan_runtime::RunSpec> {
    use crabcan_oci::NsKind;
    let text = |v: &[std::ffi::CString]| -> Vec<String> {
        v.iter().map(|c| c.to_string_lossy().into_owned()).collect()
    };
    // umask can only be read by setting it: put it straight back (single-threaded).
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::stat::umask(umask);
    let mut rlimits = Vec::with_capacity(spec.rlimits.len());
    for r in &spec.rlimits {
        let resource = r.resource as u32;
        let name = crabcan_runtime::rlimit_name(resource)
            .ok_or_else(|| Errcode::setup(format!("rlimit {} has no name", r.name)))?;
        let (_, cur_hard) = nix::sys::resource::getrlimit(r.resource).map_err(|e| {
            Errcode::sys(format!("read the current {} limit (getrlimit)", r.name), e)
        })?;
        rlimits.push(crabcan_oci::Rlimit {
            name,
            resource,
            soft: r.soft,
            hard: crabcan_cgroups::target_hard(r, cur_hard),
        });
    }
    let mut namespaces = vec![
        NsKind::User,
        NsKind::Mount,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::Pid,
        NsKind::Cgroup,
    ];
    if spec.net == crabcan_child::Net::None {
        namespaces.push(NsKind::Net);
    }
    let ranges = |v: &[crabcan_child::Range]| -> Vec<crabcan_oci::IdRange> {
        v.iter()
            .map(|r| crabcan_oci::IdRange {
                inside: r.inside,
                outside: r.outside,
                count: r.count,
            })
            .collect()
    };
    Ok(crabcan_runtime::RunSpec {
        process: crabcan_oci::Process {
            args: text(&spec.argv),
            env: text(&spec.env),
            cwd: spec.workdir.clone(),
            uid: spec.uid,
            gid: spec.uid,
            additional_gids: Vec::new(),
            umask: Some(umask.bits() as u32),
            caps: spec.security.capabilities(),
            no_new_privs: spec.security.no_new_privs(),
            rlimits,
            oom_score_adj: None,
            terminal: false,
            console_size: None,
        },
        seccomp: named.seccomp.clone(),
        hostname: spec.hostname.clone(),
        rootfs: match &spec.mounts.root {
            crabcan_mounts::Root::Dir(d) => Some(d.clone()),
            _ => None,
        },
        readonly_root: named.read_only,
        namespaces,
        uid_mappings: ranges(&spec.idmap.uids),
        gid_mappings: ranges(&spec.idmap.gids),
    })
}

/// The mounts' hints say "without an id map"; on this command line that is `--userns host`.
fn userns_hint(e: Errcode) -> Errcode {
    let shown = e.to_string();
    if shown.contains("(realpath), or run without an id map") {
        e.with_hint("give the path without symlinks (realpath), or run with --userns host")
    } else if shown.contains("cannot be idmapped; only a container without an id map") {
        e.with_hint(
            "its filesystem cannot be idmapped; --userns host runs without \
             an id map (container root is then host root)",
        )
    } else {
        e
    }
}
