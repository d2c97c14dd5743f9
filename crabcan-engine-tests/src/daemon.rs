//! A daemon the test starts (containerd, dockerd): started with its output in a log file,
//! waited for with a bound, and stopped by its pid.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bounded;
use crate::scope::Scope;

/// How long a daemon may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A running daemon.
pub struct Daemon {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`, recording its pid in `scope`, and waits (bounded)
    /// until `ready` says it serves; fails the test with the end of its log otherwise.
    #[track_caller]
    pub fn start(
        what: &'static str,
        cmd: &mut Command,
        log: &Path,
        scope: &Scope,
        mut ready: impl FnMut() -> bool,
    ) -> Daemon {
        let out = fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        scope.track_pid(child.id());
        let mut d = Daemon {
            what,
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!(
                    "{what} exited at start ({st}); its log ends:\n{}",
                    d.log_tail()
                );
            }
            if ready() {
                return d;
            }
            if Instant::now() >= deadline {
                let tail = d.log_tail();
                d.kill();
                panic!("{what} did not serve within {START_LIMIT:?}; its log ends:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, a bounded wait, then SIGKILL; fails the test if it had to kill.
    #[track_caller]
    pub fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if bounded::exits_within(&mut self.child, STOP_LIMIT).is_none() {
            let tail = self.log_tail();
            self.kill();
            panic!(
                "{} did not exit within {STOP_LIMIT:?} of SIGTERM: killed; its log ends:\n{tail}",
                self.what
            );
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `path` exists and is a socket.
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
