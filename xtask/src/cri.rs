//! `cargo xtask cri [--runtime PATH] [-- FILTER…]`: the Kubernetes node path, pods through
//! containerd's CRI plugin with an OCI runtime as the `crabcan` handler's binary, by the tests
//! of `crabcan-cri-tests`.
//!
//! The runtime is crabcan's release binary, static for musl (built here: the same artifact
//! `cargo xtask bench` measures, so the two share one build), unless `--runtime` names
//! another one, such as `/usr/sbin/runc`, which is how the tests themselves are checked. The
//! speed comparison must time what users run: the debug build spent twice as long in
//! every call.

use std::path::Path;
use std::process::Stdio;

use crate::util::{self, Result};

/// Installs the protobuf compiler the CRI bindings' build script runs, when it is missing.
pub fn ensure_protoc() -> Result<()> {
    if Path::new("/usr/bin/protoc").is_file() {
        return Ok(());
    }
    util::apt_install(&["protobuf-compiler"])
}

/// Runs the CRI tests, then the speed comparison with its figures shown; returns whether
/// all passed.
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
            other => return Err(format!("cri: unexpected argument `{other}`")),
        }
    }
    if !util::is_root() {
        return Err("cargo xtask cri starts containerd and runs pods: run it as root".into());
    }
    crate::engines::ensure_packages().map_err(|e| format!("cannot install containerd: {e}"))?;
    ensure_protoc().map_err(|e| format!("cannot install protobuf-compiler: {e}"))?;
    let rootfs = util::target_dir().join("test-rootfs");
    crate::rootfs::ensure(&rootfs)?;
    let runtime = match given {
        Some(_) => crate::engines::runtime(given)?,
        None => {
            let t = std::time::Instant::now();
            let bin = util::build_musl_bin("crabcan-cli", "crabcan", true)?;
            eprintln!(
                "cri: release build of crabcan took {:.1} s",
                t.elapsed().as_secs_f64()
            );
            bin
        }
    };
    eprintln!("cri: runtime {}", runtime.display());
    let test = |target: &str, extra: &[&str]| {
        util::cargo()
            .args([
                "test",
                "-p",
                "crabcan-cri-tests",
                "--features",
                "cri",
                "--test",
                target,
                "--",
                "--test-threads=1",
            ])
            .args(extra)
            .args(&filters)
            .env("CRABCAN_CRI_RUNTIME", &runtime)
            // The shared harness's scope looks the runtime up under its own name.
            .env("CRABCAN_ENGINE_RUNTIME", &runtime)
            .env("CRABCAN_TEST_ROOTFS", &rootfs)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cargo test: {e}"))
    };
    let pods = test("pod", &[])?;
    // The speed comparison prints its figures: shown, not captured.
    let speed = test("speed", &["--nocapture"])?;
    Ok(pods.success() && speed.success())
}
