//! Runs a configured container: plan, prepare, spawn, map, release, wait, clean up.

use crate::config::Config;
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
    let cg_plan = crabcan_cgroups::plan(&limits, &cg_name)?;
    // From here on crabcan changes the host (mount points, a cgroup, an id range): a
    // Ctrl-C must come through the wait loop, which cleans up, not kill crabcan half-way.
    let mask = crabcan_child::block_signals()?;
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
    let guardian = if prepared.is_empty() && lease.is_none() {
        None
    } else {
        Some(crabcan_child::guardian(&mut || {
            let _ = prepared.remove_now();
            if let Some(l) = lease.as_mut() {
                l.remove_now();
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
    log::debug!("{}", crabcan_cgroups::describe(&cg_plan));
    log::debug!("hostname {}", spec.hostname);
    let cgroup = crabcan_cgroups::Cgroup::create(&cg_plan)?;
    if let Some(cg) = &cgroup {
        log::debug!("cgroup {} created", cg.path().display());
    }
    let pids_v2 = cgroup
        .as_ref()
        .is_some_and(|cg| cg.path().join("pids.max").exists());
    // Without a cgroup v2 pids controller (this kind of hybrid host keeps pids on cgroup
    // v1), root's container gets the same default cap in the v1 pids hierarchy.
    let pids_v1 = if !pids_v2 && pids_limit != Some(crabcan_cgroups::UNLIMITED) && is_root {
        let cap = crabcan_cgroups::V1Write {
            file: "pids.max",
            value: crabcan_cgroups::DEFAULT_PIDS_MAX.to_string(),
        };
        let v1 = crabcan_cgroups::V1Cgroup::create_in("pids", &[cap], &cg_plan.name)?;
        if let Some(v) = &v1 {
            log::debug!(
                "pids.max {} in {}",
                crabcan_cgroups::DEFAULT_PIDS_MAX,
                v.path().display()
            );
        }
        v1
    } else {
        None
    };
    if !pids_v2 && pids_v1.is_none() && !nproc_given {
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
    // The second line of defence behind `nodev`: the container's cgroup opens only the
    // standard device nodes. Where a controller exists a failure is an error. An ordinary
    // user's container maps the user's own ids, so host permissions already limit it to
    // the nodes the user can open, and it could not load the program or write v1 rules.
    let device_rules = crabcan_cgroups::default_rules();
    if log::log_enabled!(log::Level::Debug) {
        for r in &device_rules {
            log::debug!("device rule: {}", r.describe());
        }
    }
    let devices = if is_root {
        crabcan_cgroups::DeviceConfinement::apply(
            &device_rules,
            cgroup.as_ref().map(|cg| cg.path()),
            &cg_plan.name,
        )
    } else {
        log::debug!("devices: not root, the host's permissions decide which nodes open");
        Ok(None)
    };
    let (devices, result) = match devices {
        Ok(devices) => {
            match &devices {
                Some(d) => log::debug!("device rules applied on {}", d.path().display()),
                None => log::debug!("devices: no device controller on this host"),
            }
            let places = Places {
                cgroup: cgroup.as_ref(),
                devices: devices.as_ref(),
                pids: pids_v1.as_ref(),
            };
            let r = start_and_wait(&spec, &mask, &places, prepared.root(), guardian.as_ref());
            (devices, r)
        }
        Err(e) => (None, Err(e)),
    };
    let result = match (result, &cgroup) {
        (Ok(137), Some(cg)) if cg.oom_killed() => {
            // One line naming the limit; the exit code stays the container's own.
            eprintln!(
                "crabcan: the container was killed by the kernel's OOM killer: it reached --memory ({} bytes)",
                memory_max(&cg_plan)
            );
            Ok(137)
        }
        (r, _) => r,
    };
    if let Some(d) = devices
        && let Err(e) = d.remove()
    {
        log::warn!("{e}");
    }
    if let Some(p) = pids_v1
        && let Err(e) = p.remove()
    {
        log::warn!("{e}");
    }
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
    if let Some(g) = guardian {
        g.dismiss();
    }
    result
}

fn memory_max(plan: &crabcan_cgroups::CgroupPlan) -> String {
    plan.writes
        .iter()
        .find(|w| w.file == "memory.max")
        .map(|w| w.value.clone())
        .unwrap_or_else(|| "memory.max".into())
}

/// Where the container's process goes before it is released.
struct Places<'a> {
    cgroup: Option<&'a crabcan_cgroups::Cgroup>,
    devices: Option<&'a crabcan_cgroups::DeviceConfinement>,
    pids: Option<&'a crabcan_cgroups::V1Cgroup>,
}

fn start_and_wait(
    spec: &ChildSpec,
    mask: &nix::sys::signal::SigSet,
    places: &Places<'_>,
    root: Option<std::os::fd::BorrowedFd<'_>>,
    guardian: Option<&crabcan_child::Guardian>,
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
    if let Some(cg) = places.cgroup {
        cg.add_process(pid)?;
        log::debug!("container process placed in {}", cg.path().display());
    }
    if let Some(d) = places.devices {
        d.add_process(pid)?;
    }
    if let Some(p) = places.pids {
        p.add_process(pid)?;
    }
    child.release(handed)?;
    log::debug!("container running {:?}", spec.argv);
    let code = child.wait()?;
    log::debug!("container exited with {code}");
    Ok(code)
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
