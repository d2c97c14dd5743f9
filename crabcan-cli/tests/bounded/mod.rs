//! Bounded waits for the end-to-end tests: every process a test starts is waited for with a
//! time limit and killed when it expires, so a hung container fails its test instead of
//! hanging the suite. Shadows `common::run` and `common::sh` with bounded versions.
#![allow(dead_code)]

use crate::common::{crabcan, rootfs};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one container run may take before the test fails. Generous: the machine is
/// shared and the VM runs under emulation.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Waits for `child` at most `limit`; on expiry SIGKILLs it (a container dies with its
/// crabcan), reaps it and fails the test naming `what`.
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait().expect("wait for a child process") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}: killed");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Whether `child` exits within `limit` (it is left running if not).
pub fn exits_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("wait for a child process") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `Command::output` with a bound: stdin closed, stdout and stderr captured.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_within(&mut child, limit, &what);
    Output {
        status,
        // The pipes close when the process and every holder of its ends are gone; a
        // container that outlived crabcan would keep them open, so this wait is bounded too.
        stdout: join_within(out, Duration::from_secs(10), "stdout"),
        stderr: join_within(err, Duration::from_secs(10), "stderr"),
    }
}

/// Reads `r` to its end on a thread; [`join_within`] collects the bytes.
pub fn drain(r: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// The bytes a [`drain`] thread read, waiting at most `limit` for the pipe to close.
pub fn join_within(h: JoinHandle<Vec<u8>>, limit: Duration, what: &str) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} stayed open {limit:?} after crabcan exited: a process outlived it"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().expect("pipe reader")
}

/// Runs crabcan with `args`, bounded by [`LIMIT`].
pub fn run(args: &[&str]) -> Output {
    let mut c = crabcan();
    c.args(args);
    output_within(&mut c, LIMIT)
}

/// Runs `sh -c SCRIPT` in a container over the test rootfs with `flags`, bounded by [`LIMIT`].
pub fn sh(flags: &[&str], script: &str) -> Output {
    let mut c = crabcan();
    c.arg("run").arg("--mount").arg(rootfs()).args(flags);
    c.args(["--", "/bin/sh", "-c", script]);
    output_within(&mut c, LIMIT)
}

/// The lines of a child's stdout, read on a thread so that each read can be bounded.
pub struct Lines {
    rx: Receiver<Option<String>>,
}

impl Lines {
    /// Starts reading `out`.
    pub fn new(out: ChildStdout) -> Lines {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        if tx.send(Some(line)).is_err() {
                            return;
                        }
                    }
                    _ => {
                        let _ = tx.send(None);
                        return;
                    }
                }
            }
        });
        Lines { rx }
    }

    /// The next line (without its newline), `None` at the end; `Err` when nothing came
    /// within `limit`.
    pub fn next_within(&self, limit: Duration) -> Result<Option<String>, Duration> {
        match self.rx.recv_timeout(limit) {
            Ok(l) => Ok(l.map(|l| l.trim_end_matches('\n').to_string())),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(limit),
        }
    }

    /// Everything up to the end of the output; `Err` when it does not end within `limit`.
    pub fn rest_within(&self, limit: Duration) -> Result<String, Duration> {
        let deadline = Instant::now() + limit;
        let mut all = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Some(l)) => all.push_str(&l),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => return Ok(all),
                Err(RecvTimeoutError::Timeout) => return Err(limit),
            }
        }
    }
}

/// Waits (bounded) until `child` prints its first line, which must be `ready`; kills it and
/// fails the test otherwise. Returns the reader for the rest of its output.
pub fn wait_ready(child: &mut Child) -> Lines {
    let lines = Lines::new(child.stdout.take().expect("piped stdout"));
    match lines.next_within(LIMIT) {
        Ok(Some(l)) if l == "ready" => lines,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the container did not print ready: {other:?}");
        }
    }
}
