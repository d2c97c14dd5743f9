//! Bounded waits: every command an engine test runs has a time limit and is killed when it
//! expires, so a hung engine or runtime fails its test instead of hanging the suite.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one engine command may take. Generous: the machine is shared, and a first
/// `podman` call on a fresh store or a dockerd start takes seconds.
pub const LIMIT: Duration = Duration::from_secs(120);

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Out {
    /// What ran, for messages.
    pub what: String,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Its stdout, as text.
    pub stdout: String,
    /// Its stderr, as text.
    pub stderr: String,
}

impl Out {
    /// Fails the test unless the command exited 0; returns its stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "{} failed ({:?}); stderr:\n{}\nstdout:\n{}",
            self.what,
            self.code,
            self.stderr,
            self.stdout
        );
        &self.stdout
    }

    /// Fails the test unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{}: expected exit status {code}; stderr:\n{}\nstdout:\n{}",
            self.what,
            self.stderr,
            self.stdout
        );
        self
    }
}

/// A short rendering of `cmd` for messages: the program's file name and its arguments.
pub fn describe(cmd: &Command) -> String {
    let prog = std::path::Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("`{prog} {}`", args.join(" "))
}

/// Waits for `child` at most `limit`; `None` when it is still running (it is left running).
pub fn exits_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

fn drain(r: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn join_within(h: JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    while !h.is_finished() {
        if Instant::now() >= deadline {
            // A process that outlived the command still holds the pipe: the caller's
            // leftover check names it; the output so far is lost, which the message says.
            return b"<output pipe still open: a process outlived the command>".to_vec();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().unwrap_or_default()
}

/// Runs `cmd` to its end with stdin from /dev/null, bounded by `limit`: on expiry it is
/// SIGKILLed and the test fails naming it.
#[track_caller]
pub fn output_within(cmd: &mut Command, limit: Duration) -> Out {
    let what = describe(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let Some(status) = exits_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish within {limit:?}: killed");
    };
    // The test harness shows this only for a failed test: what ran, how long, how it ended.
    eprintln!("{what}: {status} after {} ms", start.elapsed().as_millis());
    // Detached containers keep no copy of these pipes (the engines give them their own), but a
    // stray one would: bound the wait for the pipes to close as well.
    Out {
        what,
        code: status.code(),
        stdout: String::from_utf8_lossy(&join_within(out, Duration::from_secs(10))).into_owned(),
        stderr: String::from_utf8_lossy(&join_within(err, Duration::from_secs(10))).into_owned(),
    }
}

/// [`output_within`] with the default [`LIMIT`].
#[track_caller]
pub fn output(cmd: &mut Command) -> Out {
    output_within(cmd, LIMIT)
}

/// Polls `ready` until it returns `Some`, at most `limit`; fails the test naming `what`.
#[track_caller]
pub fn until<T>(limit: Duration, what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}
