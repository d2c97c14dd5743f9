//! `cargo xtask ci`: everything CI checks, in order, on a fresh machine as root.

use crate::util::{self, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs the checks; `--no-vm` stops after the host suite. Returns whether all passed.
pub fn run(args: &[String]) -> Result<bool> {
    let vm = match args {
        [] => true,
        [a] if a == "--no-vm" => false,
        _ => return Err("ci takes no arguments but --no-vm".into()),
    };
    if !util::is_root() {
        return Err("cargo xtask ci runs the privileged suite: run it as root (CI does)".into());
    }
    let start = Instant::now();
    step("install the musl target", util::ensure_musl_target)?;
    step("install newuidmap/newgidmap (uidmap)", ensure_uidmap)?;
    step("install strace", ensure_strace)?;
    step(
        "install libseccomp's Python bindings (python3-seccomp)",
        ensure_python_seccomp,
    )?;
    step(
        "install the container engines (podman, conmon, containerd, docker.io, runc)",
        crate::engines::ensure_packages,
    )?;
    step(
        "install the protobuf compiler for the CRI bindings (protobuf-compiler)",
        crate::cri::ensure_protoc,
    )?;
    step("build the test root filesystem", || {
        crate::rootfs::ensure(&util::target_dir().join("test-rootfs"))
    })?;
    let checks: [(&str, &[&str]); 3] = [
        ("cargo fmt --check", &["fmt", "--all", "--", "--check"]),
        (
            "cargo clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The engine and CRI test targets exist only with their features.
        (
            "cargo clippy of the engine and CRI tests",
            &[
                "clippy",
                "-p",
                "crabcan-engine-tests",
                "-p",
                "crabcan-cri-tests",
                "--features",
                "crabcan-engine-tests/engines,crabcan-cri-tests/cri",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    for (name, cargo_args) in checks {
        let t = Instant::now();
        eprintln!("ci: {name}");
        let status = util::cargo()
            .args(cargo_args)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        if !status.success() {
            eprintln!("ci: FAILED: {name} ({status})");
            return Ok(false);
        }
        eprintln!("ci: {name} passed in {:.1} s", t.elapsed().as_secs_f64());
    }
    // The guest emulates one CPU on one host core for about 20 minutes: it runs while the
    // host suite uses the other, and its output comes at the end.
    let guest = if vm {
        eprintln!("ci: cargo xtask vm-test (building the guest's binaries)");
        let guest = crate::vmtest::pack_guest(&[])?;
        eprintln!("ci: cargo xtask vm-test runs beside the host suite; its output comes after");
        Some(std::thread::spawn(move || guest.boot(false)))
    } else {
        None
    };
    let host = host_suite();
    let guest = guest.map(|g| {
        eprintln!("ci: waiting for cargo xtask vm-test");
        g.join()
            .unwrap_or_else(|_| Err("the VM test's thread panicked".into()))
    });
    if !host? {
        return Ok(false);
    }
    if let Some(g) = guest {
        if !g? {
            eprintln!("ci: FAILED: cargo xtask vm-test");
            return Ok(false);
        }
    }
    eprintln!(
        "ci: all checks passed in {:.1} s{}",
        start.elapsed().as_secs_f64(),
        if vm {
            ""
        } else {
            " (without the VM: the cgroup v2 limit tests did not run)"
        }
    );
    Ok(true)
}

/// The host's own tests, then podman, containerd and docker, then kubelet's CRI calls, with
/// crabcan as their runtime.
fn host_suite() -> Result<bool> {
    let t = Instant::now();
    eprintln!("ci: cargo test --workspace");
    let status = util::cargo()
        .args(["test", "--workspace"])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    if !status.success() {
        eprintln!("ci: FAILED: cargo test --workspace ({status})");
        return Ok(false);
    }
    eprintln!(
        "ci: cargo test --workspace passed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for (name, task) in [
        (
            "cargo xtask engines",
            crate::engines::run as fn(&[String]) -> Result<bool>,
        ),
        ("cargo xtask cri", crate::cri::run),
    ] {
        let t = Instant::now();
        eprintln!("ci: {name}");
        if !task(&[])? {
            eprintln!("ci: FAILED: {name}");
            return Ok(false);
        }
        eprintln!("ci: {name} passed in {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(true)
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("ci: {name}");
    f().map_err(|e| format!("{name}: {e}"))
}

/// The rootless-with-subordinate-ids test needs the system's setuid id-map helpers.
fn ensure_uidmap() -> Result<()> {
    if ["/usr/bin/newuidmap", "/usr/bin/newgidmap"]
        .iter()
        .all(|p| Path::new(p).is_file())
    {
        return Ok(());
    }
    util::apt_install(&["uidmap"])
}

/// A hostile-image test holds a window of `create` open by delaying one of its syscalls.
fn ensure_strace() -> Result<()> {
    if Path::new("/usr/bin/strace").is_file() {
        return Ok(());
    }
    util::apt_install(&["strace"])
}

/// The seccomp differential test compiles every profile with libseccomp too, through
/// Debian's bindings run by the system Python.
fn ensure_python_seccomp() -> Result<()> {
    let present = || {
        Command::new("/usr/bin/python3")
            .args(["-c", "import seccomp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return Ok(());
    }
    util::apt_install(&["python3-seccomp"])
}
