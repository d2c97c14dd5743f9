//! Tests that drive the real engines (podman through conmon, containerd through `ctr`, and
//! dockerd on containerd) with an OCI runtime binary, and check each behaviour by its effect.
//!
//! The runtime is `CRABCAN_ENGINE_RUNTIME` (default: the workspace's `target/debug/crabcan`,
//! which these tests do not build). `cargo xtask engines [--runtime PATH]` builds what is
//! needed and runs them; the test targets exist only with the `engines` feature, so
//! `cargo test --workspace` leaves them out.
//!
//! Every engine runs with private state under `target/engine-tests/`, and every test ends by
//! checking that its containers left no mount, process, cgroup, shim socket or runtime state
//! on the host (see [`scope`]).

pub mod bounded;
pub mod containerd;
pub mod daemon;
pub mod docker;
pub mod image;
pub mod podman;
pub mod scope;

use bounded::Out;
use std::time::Duration;

/// What docker's and podman's command lines have in common, so that one check serves both.
pub trait Cli {
    /// Runs the engine's command with `args`, bounded.
    fn run_cmd(&self, args: &[&str]) -> Out;
    /// `run` with the test's standard options, then `options`, the image and `command`.
    fn run(&self, options: &[&str], command: &[&str]) -> Out;
    /// The host pid of a running container's first process.
    fn pid(&self, name: &str) -> u32;
    /// A container name unique to the test.
    fn name(&self) -> String;
}

impl Cli for docker::Docker {
    fn run_cmd(&self, args: &[&str]) -> Out {
        docker::Docker::run_cmd(self, args)
    }
    fn run(&self, options: &[&str], command: &[&str]) -> Out {
        docker::Docker::run(self, options, command)
    }
    fn pid(&self, name: &str) -> u32 {
        docker::Docker::pid(self, name)
    }
    fn name(&self) -> String {
        docker::Docker::name(self)
    }
}

impl Cli for podman::Podman {
    fn run_cmd(&self, args: &[&str]) -> Out {
        podman::Podman::run_cmd(self, args)
    }
    fn run(&self, options: &[&str], command: &[&str]) -> Out {
        podman::Podman::run(self, options, command)
    }
    fn pid(&self, name: &str) -> u32 {
        podman::Podman::pid(self, name)
    }
    fn name(&self) -> String {
        podman::Podman::name(self)
    }
}

/// `exec -u 65534 -w /tmp -e FOO=bar` into a running container named with hostname
/// `hostname`: the process has that user, directory and environment, and the container's
/// hostname and PID namespace (its pid 1 is the container's sleep); an exec's exit status
/// comes back, and `exec -t` gets a pty. Returns the container's name.
#[track_caller]
pub fn check_exec_user_workdir_env_and_tty(e: &impl Cli, hostname: &str) -> String {
    let name = e.name();
    e.run(
        &["-d", "--name", &name, "--hostname", hostname],
        &["sleep", "600"],
    )
    .ok();
    let out = e.run_cmd(&[
        "exec",
        "-u",
        "65534",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        &name,
        "sh",
        "-c",
        "id -u; pwd; echo $FOO; hostname; cat /proc/1/cmdline",
    ]);
    assert_eq!(
        out.ok(),
        format!("65534\n/tmp\nbar\n{hostname}\nsleep\x00600\x00")
    );
    e.run_cmd(&["exec", &name, "sh", "-c", "exit 5"])
        .expect_code(5);
    let tty = e.run_cmd(&["exec", "-t", &name, "tty"]);
    assert!(tty.ok().starts_with("/dev/pts/"), "{:?}", tty.stdout);
    name
}

/// `pause` freezes a [`COUNTER`] container (the engine reports it paused) and `unpause`
/// thaws it, both by effect.
#[track_caller]
pub fn check_pause_and_unpause(e: &impl Cli) {
    let name = e.name();
    e.run(&["-d", "--name", &name], &["sh", "-c", COUNTER]).ok();
    let pid = e.pid(&name);
    assert_pause_and_resume(
        pid,
        || {
            e.run_cmd(&["pause", &name]).ok();
            let st = e.run_cmd(&["inspect", "--format", "{{.State.Status}}", &name]);
            assert_eq!(st.ok().trim(), "paused");
        },
        || {
            e.run_cmd(&["unpause", &name]).ok();
        },
    );
}

/// A shell loop that writes an ever-growing count to `/tmp/count`: a paused container's count
/// stands still.
pub const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.02; done";

/// The count a [`COUNTER`] container has reached, read through its first process's root.
pub fn count(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Checks by effect that the container whose first process is `pid` is paused: its cgroup is
/// frozen and its count does not move; and that `resume` then makes the count move again.
#[track_caller]
pub fn assert_pause_and_resume(pid: u32, pause: impl FnOnce(), resume: impl FnOnce()) {
    let limit = Duration::from_secs(20);
    let first = bounded::until(limit, "the counter starts", || count(pid));
    bounded::until(limit, "the counter moves before the pause", || {
        count(pid).filter(|c| *c > first)
    });
    pause();
    assert_eq!(
        scope::frozen(pid),
        Some(true),
        "the container's cgroup is not frozen"
    );
    let held = bounded::until(limit, "the count is readable while paused", || count(pid));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(pid),
        Some(held),
        "the count moved while the container was paused"
    );
    resume();
    assert_eq!(
        scope::frozen(pid),
        Some(false),
        "the cgroup is still frozen after resume"
    );
    bounded::until(limit, "the counter moves again after resume", || {
        count(pid).filter(|c| *c > held)
    });
}
