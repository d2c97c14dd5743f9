//! Bounded waits for the tests' child processes: a hung child fails its test (killed on
//! expiry) instead of hanging the suite.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a child may run before the test fails.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Waits for `child` at most `limit`; on expiry SIGKILLs and reaps it and fails the test.
pub fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("wait for a child process") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "child process {} did not finish within {limit:?}: killed",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the child's piped stdout and stderr to their end on threads, and waits for it
/// within `limit`. Returns the exit status and both texts.
pub fn finish(child: &mut Child, limit: Duration) -> (ExitStatus, String, String) {
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_within(child, limit);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(out.is_finished() && err.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "the child's output stayed open after it exited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (status, out.join().unwrap(), err.join().unwrap())
}

/// `Command::output` with a bound.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child process");
    let (status, stdout, stderr) = finish(&mut child, limit);
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}
