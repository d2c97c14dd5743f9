//! `cargo xtask engines [--runtime PATH] [-- FILTER…]`: podman, containerd (ctr) and docker
//! driving an OCI runtime binary, by the tests of `crabcan-engine-tests`.
//!
//! The runtime is crabcan's debug binary (built here) unless `--runtime` names another one,
//! such as `/usr/sbin/runc`, which is how the tests themselves are checked.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::{self, Result};

/// The Debian packages the engine tests drive, each with a file that shows it is installed.
pub const PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/podman", "podman"),
    ("/usr/bin/conmon", "conmon"),
    ("/usr/bin/containerd", "containerd"),
    ("/usr/sbin/dockerd", "docker.io"),
    ("/usr/sbin/runc", "runc"),
];

/// Installs whichever of [`PACKAGES`] is missing (apt-get; the package lists are refreshed
/// only when a first attempt fails). Installing starts no daemon here: there is no init
/// system to start them, and the tests start their own.
pub fn ensure_packages() -> Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(file, _)| !Path::new(file).is_file())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    util::apt_install(&missing)
}

/// The runtime binary: `--runtime PATH` (absolute, must exist), or crabcan's debug binary,
/// built now.
pub(crate) fn runtime(given: Option<&str>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Path::new(p)
            .canonicalize()
            .map_err(|e| format!("--runtime {p}: {e}"));
    }
    util::cargo_artifacts(&["build", "-p", "crabcan-cli", "--bin", "crabcan"])?
        .into_iter()
        .find(|a| a.name == "crabcan" && a.kind == "bin" && !a.test)
        .and_then(|a| a.executable)
        .ok_or_else(|| "cargo built no crabcan executable".to_string())
}

/// Runs the engine tests; returns whether they passed.
pub fn run(args: &[String]) -> Result<bool> {
    let mut given = None;
    let mut filters: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "--runtime" => {
                given = Some(
                    it.next()
                        .ok_or_else(|| "--runtime needs a path".to_string())?,
                )
            }
            _ if a.starts_with("--runtime=") => given = Some(&a["--runtime=".len()..]),
            "--" => filters.extend(it.by_ref()),
            other => return Err(format!("engines: unexpected argument `{other}`")),
        }
    }
    if !util::is_root() {
        return Err(
            "cargo xtask engines starts podman, containerd and dockerd: run it as root".into(),
        );
    }
    ensure_packages().map_err(|e| format!("cannot install the engines: {e}"))?;
    let rootfs = util::target_dir().join("test-rootfs");
    crate::rootfs::ensure(&rootfs)?;
    let runtime = runtime(given)?;
    eprintln!("engines: runtime {}", runtime.display());
    // Every engine's tests run even when another's fail. One test at a time: the engines share host places no private directory covers (shim
    // sockets under /run/containerd/s, the runtime's default root), and the machine is small.
    let status = util::cargo()
        .args([
            "test",
            "--no-fail-fast",
            "-p",
            "crabcan-engine-tests",
            "--features",
            "engines",
            "--",
            "--test-threads=1",
        ])
        .args(&filters)
        .env("CRABCAN_ENGINE_RUNTIME", &runtime)
        .env("CRABCAN_TEST_ROOTFS", &rootfs)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    Ok(status.success())
}
