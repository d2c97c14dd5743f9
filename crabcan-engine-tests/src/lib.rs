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

use std::time::Duration;

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
