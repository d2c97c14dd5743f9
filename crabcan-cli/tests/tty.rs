//! End to end: `crabcan run -t` on a real pty that the test opens and plays the person
//! at. crabcan gets the pty's slave as stdin, stdout, stderr and controlling terminal (in
//! a session of its own, as a login shell would start it); the test writes keys to the
//! master and reads what the terminal shows.

mod bounded;
mod common;
mod term;

use bounded::{LIMIT, exits_within, wait_within};
use common::*;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use term::*;

/// `name` made unique to this test process.
fn marker(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// crabcan's arguments for an interactive shell in the test root, with `extra` flags.
fn shell_args(mark: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "-it", "--mount"]
        .into_iter()
        .map(String::from)
        .collect();
    v.push(rootfs().to_string_lossy().into_owned());
    v.extend(["--hostname".to_string(), mark.to_string()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(["--", "/bin/sh"].map(String::from));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Pids of live `sleep SECONDS` processes (the number picked to be this test's own).
fn sleeps(seconds: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            if args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == seconds.as_bytes() {
                out.push(pid);
            }
        }
    }
    out
}

/// Runs `f` on a fresh terminal with crabcan started on it, then checks: crabcan ended with
/// `code`, the terminal's settings are what they were before, the shell never complained
/// about job control, and nothing of the container is left on the host.
fn session(
    name: &str,
    extra: &[&str],
    size: (u16, u16),
    code: Option<i32>,
    f: impl FnOnce(&mut Term, &mut Child),
) -> String {
    require_root();
    let mark = marker(name);
    let before_host = host_state();
    let mut term = Term::open(size.0, size.1);
    let before = term.settings();
    assert!(!term.is_raw(), "a fresh pty is in cooked mode");
    let mut child = KillOnDrop(term.spawn(&refs(&shell_args(&mark, extra))));
    f(&mut term, &mut child.0);
    let status = wait_within(&mut child.0, LIMIT, "crabcan -it");
    let shown = term.text();
    assert_eq!(
        status.code(),
        code,
        "crabcan ended with {status:?}; the terminal showed:\n{shown}"
    );
    // After a SIGKILL of crabcan its guardian puts them back, a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while term.settings() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        term.settings(),
        before,
        "the terminal's settings were not restored; the terminal showed:\n{shown}"
    );
    for complaint in [
        "job control turned off",
        "cannot set terminal process group",
        "no job control",
    ] {
        assert!(!shown.contains(complaint), "{complaint:?} in:\n{shown}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&mark).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with(&mark),
        Vec::<i32>::new(),
        "processes left behind"
    );
    assert_eq!(host_state(), before_host, "host state changed");
    drop(term);
    shown
}

/// The shell's answer `tag-<digits>` computed inside, so the echo of the typed line
/// (which still reads `$((…))`) never matches.
fn ask(term: &mut Term, tag: &str) {
    term.type_in(format!("echo {tag}-$((6*7))\n").as_bytes());
    term.expect(&format!("{tag}-42"));
}

fn job_control(extra: &[&str]) {
    session("tty-jobs", extra, (24, 80), Some(0), |term, _| {
        // The terminal is a /dev/pts path of the container's own devpts, and the shell has
        // job control: `$-` holds `m`, and `set -m` raises no complaint.
        term.type_in(b"tty; set -m; echo \"FLAGS=$-=\"\n");
        term.expect("/dev/pts/");
        assert!(term.wait_for("FLAGS=", ANSWER), "{}", term.text());
        let flags = {
            let shown = term.text();
            let at = shown.rfind("FLAGS=").unwrap();
            shown[at + 6..].split('=').next().unwrap_or("").to_string()
        };
        assert!(
            flags.contains('m'),
            "no job control in the shell (flags {flags:?}):\n{}",
            term.text()
        );
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        // A job stopped and resumed through the terminal: Ctrl-Z stops the foreground job
        // (the terminal's line discipline signals it), `fg` brings it back.
        term.type_in(b"sleep 2\n");
        std::thread::sleep(Duration::from_millis(300));
        term.type_in(b"\x1a");
        term.expect("Stopped");
        ask(term, "STOPPED");
        term.type_in(b"fg; echo RESUMED-$((2+3))\n");
        term.expect("RESUMED-5");
        term.type_in(b"exit\n");
    });
}

#[test]
fn a_shell_gets_a_pty_with_job_control() {
    job_control(&[]);
}

#[test]
fn a_shell_gets_a_pty_with_job_control_as_pid_1() {
    job_control(&["--no-init"]);
}

#[test]
fn ctrl_c_stops_the_foreground_job_and_the_shell_stays() {
    let secs = format!("{}", 90_000 + std::process::id() % 9_000);
    session("tty-intr", &[], (24, 80), Some(0), |term, _| {
        ask(term, "READY");
        term.type_in(format!("sleep {secs}\n").as_bytes());
        let deadline = Instant::now() + ANSWER;
        while sleeps(&secs).is_empty() {
            assert!(
                Instant::now() < deadline,
                "sleep never started:\n{}",
                term.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        term.type_in(b"\x03");
        ask(term, "AFTER");
        assert_eq!(
            sleeps(&secs),
            Vec::<i32>::new(),
            "the sleep survived Ctrl-C"
        );
        term.type_in(b"exit\n");
    });
}

#[test]
fn the_window_size_follows_the_callers_terminal() {
    session("tty-size", &[], (37, 101), Some(0), |term, child| {
        term.type_in(b"stty size\n");
        term.expect("37 101");
        term.resize(50, 132);
        // The kernel signals the terminal's foreground group (crabcan) itself; say it again
        // as a window manager's terminal would.
        signal_crabcan(child, nix::sys::signal::Signal::SIGWINCH);
        term.type_in(b"stty size\n");
        term.expect("50 132");
        term.type_in(b"exit\n");
    });
}

#[test]
fn the_terminal_is_restored_when_the_command_fails() {
    session("tty-exit", &[], (24, 80), Some(3), |term, _| {
        ask(term, "READY");
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        term.type_in(b"exit 3\n");
    });
}

#[test]
fn the_terminal_is_restored_when_the_command_is_killed() {
    session("tty-kill", &[], (24, 80), Some(137), |term, _| {
        ask(term, "READY");
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        term.type_in(b"kill -KILL $$\n");
    });
}

#[test]
fn the_terminal_is_restored_when_crabcan_is_signalled() {
    session("tty-hup", &[], (24, 80), Some(129), |term, child| {
        ask(term, "READY");
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        // A hangup, as when the caller's terminal goes away: passed on to the shell,
        // which ends.
        signal_crabcan(child, nix::sys::signal::Signal::SIGHUP);
    });
}

// Host only for now: in the VM guest the guardian's restore is not seen and the cause is not
// yet found (an open defect, not a host package the guest lacks).
#[test]
fn host_only_the_terminal_is_restored_when_crabcan_is_killed() {
    session("tty-sigkill", &[], (24, 80), None, |term, child| {
        ask(term, "READY");
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        signal_crabcan(child, nix::sys::signal::Signal::SIGKILL);
    });
}

#[test]
fn the_terminal_is_restored_after_a_setup_failure() {
    let shown = session(
        "tty-setup",
        &["--workdir", "/no/such/dir"],
        (24, 80),
        Some(125),
        |term, child| {
            exits_within(child, LIMIT);
            // Written before the exit, but read from the pty by another thread: wait for
            // it (the test VM once saw only "crabcan: cannot ").
            term.expect("/no/such/dir");
        },
    );
    let errors: Vec<&str> = shown.lines().filter(|l| l.contains("crabcan:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{shown}");
    assert!(errors[0].contains("/no/such/dir"), "{shown}");
}

#[test]
fn without_a_terminal_on_stdin_the_pty_gets_end_of_file() {
    require_root();
    let mark = marker("tty-pipe");
    let root = rootfs();
    let mut child = crabcan()
        .args(["run", "-t", "--hostname", &mark, "--mount"])
        .arg(&root)
        .args(["--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start crabcan");
    // Typed ahead, then stdin ends: the shell reads the line, then end of file, and exits.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"tty; echo PIPED-$((2*3))\n")
        .expect("write stdin");
    drop(stdin);
    let out = bounded::drain(child.stdout.take());
    let err = bounded::drain(child.stderr.take());
    let status = wait_within(&mut child, LIMIT, "crabcan -t with a pipe on stdin");
    let out = String::from_utf8_lossy(&bounded::join_within(
        out,
        Duration::from_secs(10),
        "stdout",
    ))
    .into_owned();
    let err = String::from_utf8_lossy(&bounded::join_within(
        err,
        Duration::from_secs(10),
        "stderr",
    ))
    .into_owned();
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("PIPED-6"), "{out}");
    assert_eq!(processes_with(&mark), Vec::<i32>::new());
}
