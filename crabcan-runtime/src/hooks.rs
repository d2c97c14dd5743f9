//! Hooks run in the runtime's namespaces (prestart, createRuntime, poststart, poststop):
//! the state JSON on stdin, the hook's own argv and environment, killed at its timeout.

use crate::state::HookRecord;
use crabcan_errors::{Errcode, Result};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hooks` one after the other; the first failure stops the rest.
pub fn run_all(kind: &str, hooks: &[HookRecord], state: &[u8]) -> Result<()> {
    for h in hooks {
        run(kind, h, state)?;
    }
    Ok(())
}

/// Runs one hook.
pub fn run(kind: &str, h: &HookRecord, state: &[u8]) -> Result<()> {
    let fail =
        |why: String| Errcode::setup(format!("{kind} hook {} failed: {why}", h.path.display()));
    let mut cmd = Command::new(&h.path);
    if let Some((first, rest)) = h.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, first);
        cmd.args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // A hook's stdout would mix with the container's output on the engine's pipe: send it
    // to stderr, where runtime messages go.
    if let Ok(err) = std::io::stderr().as_fd_dup() {
        cmd.stdout(err);
    }
    // A hook dies with the runtime that waits for it: a killed create leaves no process.
    // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A group of its own, so that a timeout kills whatever the hook started too.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that never reads its stdin is not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = h.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(fail(st.to_string())),
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                h.timeout.unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

trait DupFd {
    fn as_fd_dup(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl DupFd for std::io::Stderr {
    fn as_fd_dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}
