//! Runs a configured container: plan, prepare, spawn, map, release, wait, clean up.

use crate::config::Config;
use crabcan_child::ChildSpec;
use crabcan_errors::Result;

/// Runs the container described by `cfg` and returns the exit code crabcan should end with.
pub fn run(cfg: Config) -> Result<i32> {
    let Config {
        child: spec,
        seccomp_off,
        limits,
        ..
    } = cfg;
    if log::log_enabled!(log::Level::Debug) {
        for line in spec.mounts.describe() {
            log::debug!("mount plan: {line}");
        }
    }
    let cg_name = format!("{}-{}", spec.hostname, std::process::id());
    let cg_plan = crabcan_cgroups::plan(&limits, &cg_name)?;
    // From here on crabcan changes the host (mount points, a cgroup): a Ctrl-C must come
    // through the wait loop, which cleans up, not kill crabcan half-way.
    let mask = crabcan_child::block_signals()?;
    let mut prepared = crabcan_mounts::prepare(&spec.mounts)?;
    // Only when crabcan wrote something on the host that a SIGKILL would strand.
    let guardian = if prepared.is_empty() {
        None
    } else {
        Some(crabcan_child::guardian(&mut || {
            let _ = prepared.remove_now();
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
    let result = start_and_wait(&spec, &mask, cgroup.as_ref());
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
    if let Some(cg) = cgroup
        && let Err(e) = cg.remove()
    {
        log::warn!("{e}");
    }
    if let Err(e) = prepared.cleanup() {
        log::warn!("{e}");
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

fn start_and_wait(
    spec: &ChildSpec,
    mask: &nix::sys::signal::SigSet,
    cgroup: Option<&crabcan_cgroups::Cgroup>,
) -> Result<i32> {
    let mut child = crabcan_child::spawn(spec, mask)?;
    log::debug!("container process {} cloned", child.pid());
    child.write_id_maps(&spec.idmap)?;
    log::debug!(
        "id maps written: uid_map '{}', gid_map '{}'",
        spec.idmap.uid_map().trim(),
        spec.idmap.gid_map().trim()
    );
    if let Some(cg) = cgroup {
        cg.add_process(child.pid().as_raw())?;
        log::debug!("container process placed in {}", cg.path().display());
    }
    child.release()?;
    log::debug!("container running {:?}", spec.argv);
    let code = child.wait()?;
    log::debug!("container exited with {code}");
    Ok(code)
}
