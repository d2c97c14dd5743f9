//! A guardian process that cleans up on the host if crabcan is SIGKILLed.
//!
//! A killed process cannot clean up after itself; its container dies with it (parent-death
//! signal) and the mount namespace goes, but what crabcan wrote on the host (mount points it
//! had to create in a `--mount` root, the record of its id range) would stay. The guardian
//! is forked before the container; it waits on a pipe whose only writer is crabcan. crabcan
//! announces the container's first process on it ([`Guardian::watch`]), and each path it is
//! about to make after the fork ([`Guardian::note`]), and a final byte means crabcan
//! finished and cleaned up itself. EOF without that byte means crabcan died:
//! the guardian then kills the container (it may have cleared its own parent-death signal,
//! under `--no-init`), waits until it is gone, runs the cleanup and exits, so that nothing
//! it cleans up (an id range) is given to another container while this one still runs.
//!
//! It runs in a session of its own, so that a signal to crabcan's process group (`timeout
//! -s KILL` signals its whole group) does not reach it.
//!
//! Two things keep it out of a run's time. It runs as a batch task (`SCHED_BATCH`, the
//! normal share of the CPU, but a waking batch task never takes the CPU from a running one):
//! the dismissal wakes it, and woken on crabcan's own CPU as an ordinary task it took that
//! CPU from crabcan to exit there (0.19 ms median of the dismissal, stamped). And its
//! stdout and stderr are /dev/null: a caller that reads crabcan's output to its end (a
//! shell's `$(…)`, an engine) would otherwise wait for the guardian's exit too.

use crabcan_errors::{Result, SysContext};
use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The longest path noted: a message stays within a pipe's atomic write (PIPE_BUF, 4096).
const MAX_NOTE: usize = 4096 - 5;

/// A running guardian; [`Guardian::dismiss`] (or drop) ends it without cleaning up.
pub struct Guardian {
    pid: Pid,
    tx: Option<OwnedFd>,
}

/// Forks a guardian that calls `cleanup` if this process dies before dismissing it, with
/// the paths [`Guardian::note`] gave it. Refuses a multi-threaded caller (it forks).
pub fn guardian(cleanup: &mut dyn FnMut(&[PathBuf])) -> Result<Guardian> {
    crate::ensure_single_threaded("start the guardian")?;
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .sys_ctx(|| "create the guardian's pipe")?;
    // SAFETY: the caller is single-threaded; the child only reads a pipe, runs `cleanup`
    // (plain syscalls on data it owns) and _exits.
    match unsafe { nix::unistd::fork() }.sys_ctx(|| "fork the cleanup guardian")? {
        ForkResult::Child => {
            drop(tx);
            // A session (and process group) of its own: a kill of crabcan's whole group
            // (`timeout -s KILL`, a shell's job control) must not take the guardian along.
            let _ = nix::unistd::setsid();
            quiet_output();
            if let Watch::Died(container, noted) = watch_pipe(rx.as_fd()) {
                if let Some(fd) = container {
                    kill_and_wait(fd.as_fd());
                }
                cleanup(&noted);
            }
            // SAFETY: _exit skips the parent's atexit handlers and buffers, as it must here.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            // Any process may make its child a batch task; should it fail, the guardian
            // only costs what it did before.
            let _ = set_policy(child.as_raw(), libc::SCHED_BATCH);
            Ok(Guardian {
                pid: child,
                tx: Some(tx),
            })
        }
    }
}

/// Points stdout and stderr at /dev/null (the guardian writes nothing; stdin stays, the
/// terminal it may have to restore). Left as they are if /dev/null cannot be opened.
fn quiet_output() {
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: dup2 onto a standard descriptor of this process, which nothing here
            // holds as an OwnedFd.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
    }
}

/// Sets the scheduling policy of process `pid` at priority 0. A raw system
/// call: the C library's wrapper (musl's) refuses to change a whole process's policy.
fn set_policy(pid: libc::pid_t, policy: libc::c_int) -> nix::Result<()> {
    let priority: libc::c_int = 0;
    // SAFETY: sched_setscheduler reads one int (struct sched_param) through the pointer,
    // which points at a live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            pid,
            policy,
            &priority as *const libc::c_int,
        )
    };
    Errno::result(r).map(drop)
}

/// How the pipe ended.
enum Watch {
    /// crabcan dismissed the guardian.
    Dismissed,
    /// crabcan died; the container's first process, when it was announced (a pidfd), and
    /// the paths noted.
    Died(Option<OwnedFd>, Vec<PathBuf>),
}

/// Reads the pipe: `p` and 4 bytes announce a pid, `n`, a 4-byte length and that many
/// bytes note a path, `f` and the same forget one, `d` dismisses, EOF is crabcan's death.
fn watch_pipe(rx: BorrowedFd<'_>) -> Watch {
    let mut container = None;
    let mut noted = Vec::new();
    loop {
        let mut msg = [0u8; 5];
        match read_full(rx, &mut msg[..1]) {
            Some(()) if msg[0] == b'd' => return Watch::Dismissed,
            Some(()) if msg[0] == b'n' || msg[0] == b'f' => {
                let Some(()) = read_full(rx, &mut msg[1..]) else {
                    return Watch::Died(container, noted);
                };
                let len = u32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
                let mut path = vec![0u8; len.min(MAX_NOTE)];
                let Some(()) = read_full(rx, &mut path) else {
                    return Watch::Died(container, noted);
                };
                let path = PathBuf::from(std::ffi::OsString::from_vec(path));
                if msg[0] == b'n' {
                    noted.push(path);
                } else if let Some(i) = noted.iter().rposition(|p| *p == path) {
                    noted.remove(i);
                }
            }
            Some(()) if msg[0] == b'p' => {
                let Some(()) = read_full(rx, &mut msg[1..]) else {
                    return Watch::Died(container, noted);
                };
                let pid = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
                // SAFETY: pidfd_open takes a pid and flags; the result is a new fd we own.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                if fd >= 0 {
                    // SAFETY: the kernel just returned this fd to us.
                    container = Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
                }
            }
            Some(()) => {}
            None => return Watch::Died(container, noted),
        }
    }
}

/// Fills `buf` from `rx`; `None` at EOF or on an error.
fn read_full(rx: BorrowedFd<'_>, buf: &mut [u8]) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(rx, &mut buf[got..]) {
            Err(Errno::EINTR) => {}
            Ok(0) | Err(_) => return None,
            Ok(n) => got += n,
        }
    }
    Some(())
}

/// SIGKILLs the process behind `pidfd` and waits until it has exited; a container's first
/// process exits only once every process of its PID namespace is gone. There is no bound:
/// what the cleanup gives back (the id range above all) must not go to another container
/// while one of this container's processes still runs, however long the kernel takes to
/// let it die (a process in uninterruptible sleep on a hung filesystem dies only when that
/// returns).
fn kill_and_wait(pidfd: BorrowedFd<'_>) {
    // SAFETY: pidfd_send_signal on a pidfd we hold, without siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    loop {
        let mut fds = [nix::poll::PollFd::new(pidfd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(n) if n > 0 => return,
            Ok(_) | Err(Errno::EINTR) => {}
            // Nothing else is expected of a pidfd we hold; should the kernel be short of
            // memory, ask again a little later rather than give the ids back early.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

impl Guardian {
    /// Announces the container's first process: if crabcan dies, the guardian kills it and
    /// waits for it before cleaning up.
    pub fn watch(&self, container: Pid) {
        if let Some(tx) = &self.tx {
            let mut msg = [b'p'; 5];
            msg[1..].copy_from_slice(&container.as_raw().to_ne_bytes());
            let _ = nix::unistd::write(tx, &msg);
        }
    }

    /// Tells the guardian about `path`, which crabcan is about to make: if crabcan dies, it
    /// is among the paths its cleanup is given. A path that does not fit one message (a
    /// pipe's atomic write, 4 KiB) is refused: the caller must not make it.
    pub fn note(&self, path: &Path) -> Result<()> {
        self.send_path(b'n', path)
    }

    /// Takes back a path noted before (crabcan did not make it after all: it was made by
    /// someone else meanwhile, or found to be a symlink). One message per path, so that a
    /// kill at any point leaves the guardian with at least what was made.
    pub fn forget(&self, path: &Path) -> Result<()> {
        self.send_path(b'f', path)
    }

    fn send_path(&self, kind: u8, path: &Path) -> Result<()> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() > MAX_NOTE {
            return Err(crabcan_errors::Errcode::usage(format!(
                "cannot make the mount point {}: its path in the root is longer than {MAX_NOTE} \
                 bytes",
                path.display()
            )));
        }
        if let Some(tx) = &self.tx {
            let mut msg = Vec::with_capacity(5 + bytes.len());
            msg.push(kind);
            msg.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
            msg.extend_from_slice(bytes);
            // One write: a pipe takes up to PIPE_BUF bytes whole.
            let _ = nix::unistd::write(tx, &msg);
        }
        Ok(())
    }

    /// Tells the guardian all is well (crabcan cleaned up itself); reaps it if it is gone
    /// already (otherwise it ends on its own and the process that inherits it reaps it).
    pub fn dismiss(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = nix::unistd::write(&tx, b"d");
            drop(tx);
            // Reaped if it is gone already; otherwise it ends on its own in a moment and
            // is reaped by whoever inherits it when this process exits. Waiting for its
            // exit would add a scheduling round trip to every run.
            let _ = nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes_after(send: impl FnOnce(&Guardian)) -> Vec<PathBuf> {
        let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let g = Guardian {
            pid: Pid::from_raw(0),
            tx: Some(tx),
        };
        send(&g);
        // crabcan's death, as the guardian sees it: the pipe's end without a dismissal.
        let mut g = std::mem::ManuallyDrop::new(g);
        drop(g.tx.take());
        match watch_pipe(rx.as_fd()) {
            Watch::Died(None, noted) => noted,
            Watch::Died(Some(_), _) => panic!("a container announced"),
            Watch::Dismissed => panic!("dismissed"),
        }
    }

    /// What the guardian removes after crabcan's death is what was noted and not taken
    /// back (a path noted and then not made by this run is not its to remove).
    #[test]
    fn the_guardian_removes_what_was_noted_and_not_taken_back() {
        let noted = notes_after(|g| {
            g.note(Path::new("/a")).unwrap();
            g.note(Path::new("/a/b c")).unwrap();
        });
        assert_eq!(noted, [PathBuf::from("/a"), PathBuf::from("/a/b c")]);
        let noted = notes_after(|g| {
            g.note(Path::new("/a")).unwrap();
            g.note(Path::new("/taken")).unwrap();
            g.note(Path::new("/a/b")).unwrap();
            g.forget(Path::new("/taken")).unwrap();
            g.forget(Path::new("/never noted")).unwrap();
        });
        assert_eq!(noted, [PathBuf::from("/a"), PathBuf::from("/a/b")]);
    }

    /// A path that does not fit one atomic message is refused, not cut to another path.
    #[test]
    fn a_path_too_long_to_note_is_refused() {
        let long = PathBuf::from(format!("/{}", "x".repeat(MAX_NOTE)));
        let noted = notes_after(|g| {
            let e = g.note(&long).unwrap_err();
            assert!(e.to_string().contains("longer than"), "{e}");
            g.note(Path::new("/ok")).unwrap();
        });
        assert_eq!(noted, [PathBuf::from("/ok")]);
    }

    /// The guardian's wait returns only once the killed process has exited: a process
    /// that ignores every signal it can (SIGTERM, SIGINT) is a zombie when it returns.
    #[test]
    fn the_guardian_returns_only_once_the_killed_process_is_gone() {
        // SAFETY: the child only calls async-signal-safe functions (signal, pause, _exit).
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            ForkResult::Child => {
                // SAFETY: plain libc calls in the forked child.
                unsafe {
                    libc::signal(libc::SIGTERM, libc::SIG_IGN);
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    loop {
                        libc::pause();
                    }
                }
            }
            ForkResult::Parent { child } => child,
        };
        // SAFETY: pidfd_open of our own child; the result is a new fd we own.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
        assert!(raw >= 0, "pidfd_open: {}", Errno::last());
        // SAFETY: the kernel just returned this fd to us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        kill_and_wait(pidfd.as_fd());
        let status =
            nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(child, nix::sys::signal::Signal::SIGKILL, false)
        );
    }
}
