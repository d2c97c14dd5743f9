//! Runs a configured container: plan, prepare, spawn, map, release, wait, clean up.

use crate::config::Config;
use crabcan_child::{ChildSpec, NoHooks};
use crabcan_errors::Result;

/// Runs the container described by `cfg` and returns the exit code crabcan should end with.
pub fn run(cfg: Config) -> Result<i32> {
    let plan = crabcan_mounts::plan(&cfg.mounts)?;
    for line in plan.describe() {
        log::debug!("mount plan: {line}");
    }
    let prepared = crabcan_mounts::prepare(&plan)?;
    for p in prepared.created() {
        log::debug!("created mount point {} in the root", p.display());
    }
    let hooks = NoHooks;
    let spec = ChildSpec {
        argv: cfg.argv,
        env: cfg.env,
        workdir: cfg.workdir,
        hostname: cfg.hostname,
        uid: cfg.uid,
        idmap: cfg.idmap,
        mounts: plan,
        net: cfg.net,
        hooks: &hooks,
    };
    log::debug!("hostname {}", spec.hostname);
    let mask = crabcan_child::block_signals()?;
    let result = start_and_wait(&spec, &mask);
    if let Err(e) = prepared.cleanup() {
        log::warn!("{e}");
    }
    result
}

fn start_and_wait(spec: &ChildSpec<'_>, mask: &nix::sys::signal::SigSet) -> Result<i32> {
    let mut child = crabcan_child::spawn(spec, mask)?;
    log::debug!("container process {} cloned", child.pid());
    child.write_id_maps(&spec.idmap)?;
    log::debug!(
        "id maps written: uid_map '{}', gid_map '{}'",
        spec.idmap.uid_map().trim(),
        spec.idmap.gid_map().trim()
    );
    child.release()?;
    log::debug!("container running {:?}", spec.argv);
    let code = child.wait()?;
    log::debug!("container exited with {code}");
    Ok(code)
}
