//! OCI `run` in the foreground with the config `crabcan spec` writes (`process.terminal`
//! true) and no console socket: crabcan makes the pty through the container's own console
//! path and relays it to its stdio, as runc does for someone at a terminal.

mod bounded;
mod common;
mod engine;
mod term;

use bounded::wait_within;
use common::*;
use engine::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use term::*;

engine_env! {
    /// One test's state root and bundles, under target/.
    struct Env {}
}

impl Env {
    fn new(name: &str) -> Env {
        Env {
            e: Engine::new(&format!("oci-tty-{name}")),
        }
    }

    /// A bundle `name` as `crabcan spec` writes it, but for the root path and the args.
    fn spec_bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        let b = self.dir.path().join(name);
        std::fs::create_dir_all(&b).unwrap();
        assert_ok(&bounded::output_within(
            crabcan().arg("spec").arg("-b").arg(&b),
            LIMIT,
        ));
        let path = b.join("config.json");
        let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            c["process"]["terminal"],
            json!(true),
            "spec's config has a terminal"
        );
        c["root"]["path"] = json!(rootfs());
        c["process"]["args"] = json!(args);
        std::fs::write(&path, c.to_string()).unwrap();
        b
    }

    /// Nothing of `id` is left: no state directory, and the state root holds nothing else.
    fn assert_gone(&self, id: &str) {
        assert!(
            !self.root().join(id).exists(),
            "{id}'s state directory is left"
        );
        let left: Vec<_> = std::fs::read_dir(self.root())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the state root: {left:?}");
    }
}

/// `sh -c SCRIPT` run with `crabcan run` on a fresh terminal of `size` (crabcan the leader
/// of its session, the terminal its controlling one); `f` plays the person once the
/// container runs (SCRIPT must keep it running until `f` acts). Checks that crabcan ended
/// with `code`, the terminal's settings are what they were before and the container is
/// gone (record, cgroups, mounts); returns what the terminal showed.
fn session(
    name: &str,
    script: &str,
    size: (u16, u16),
    code: i32,
    f: impl FnOnce(&mut Term, &mut std::process::Child),
) -> String {
    let env = Env::new(name);
    let b = env.spec_bundle("b", &["sh", "-c", script]);
    let id = format!("{name}-{}", std::process::id());
    env.made(&id);
    let before_host = host_state();
    let mut term = Term::open(size.0, size.1);
    let before = term.settings();
    assert!(!term.is_raw(), "a fresh pty is in cooked mode");
    let root = env.root();
    let mut child = KillOnDrop(term.spawn(&[
        "--root",
        &root.to_string_lossy(),
        "run",
        "--bundle",
        &b.to_string_lossy(),
        &id,
    ]));
    until("the container runs", || {
        (env.status(&id) == "running").then_some(())
    });
    let cgroups = env.cgroup_dirs(&id);
    assert!(!cgroups.is_empty(), "{id} has no cgroup");
    f(&mut term, &mut child.0);
    let status = wait_within(&mut child.0, LIMIT, "crabcan run");
    let shown = term.text();
    assert_eq!(
        status.code(),
        Some(code),
        "crabcan ended with {status:?}; the terminal showed:\n{shown}"
    );
    assert_eq!(
        term.settings(),
        before,
        "the terminal's settings were not restored; the terminal showed:\n{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");
    env.assert_gone(&id);
    for d in &cgroups {
        assert!(!d.exists(), "cgroup {} is left", d.display());
    }
    assert_eq!(host_state(), before_host, "host state changed");
    drop(term);
    shown
}

#[test]
fn a_foreground_run_relays_a_pty_of_its_own() {
    let script = "tty; [ -t 0 ] && [ -t 1 ] && echo BOTH-$((6*7)); stty size; \
                  echo READY-$((1+1)); read x; echo GOT-$x-$((3*3)); stty size; exit 5";
    session("relay", script, (37, 101), 5, |term, child| {
        term.expect("/dev/pts/");
        term.expect("BOTH-42");
        // The pty takes the caller's window size.
        term.expect("37 101");
        term.expect("READY-2");
        assert!(term.is_raw(), "the caller's terminal is not in raw mode");
        // The window changes: the pty follows. The kernel signals the terminal's
        // foreground group (crabcan) itself; say it again as a terminal emulator would.
        term.resize(50, 132);
        signal_crabcan(child, nix::sys::signal::Signal::SIGWINCH);
        // Typed keys reach the process; its echo comes back through the pty.
        term.type_in(b"abc\r");
        term.expect("GOT-abc-9");
        term.expect("50 132");
    });
}

#[test]
fn the_terminal_is_restored_when_crabcan_is_signalled() {
    // The process is PID 1 of its pid namespace: only a signal it handles reaches it.
    session(
        "hup",
        "trap 'exit 9' HUP; echo READY-$((1+1)); while :; do sleep 0.05; done",
        (24, 80),
        9,
        |term, child| {
            term.expect("READY-2");
            assert!(term.is_raw(), "the caller's terminal is not in raw mode");
            // Passed on to the process, which ends on it.
            signal_crabcan(child, nix::sys::signal::Signal::SIGHUP);
        },
    );
}

#[test]
fn the_terminal_is_restored_when_the_process_is_killed() {
    session(
        "kill",
        "echo READY-$((1+1)); read x",
        (24, 80),
        137,
        |term, child| {
            term.expect("READY-2");
            assert!(term.is_raw(), "the caller's terminal is not in raw mode");
            // From the host: a PID 1 cannot be killed from inside its namespace.
            let pid = child_of(child.id()).expect("the container's process, crabcan's child");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("SIGKILL to the container's process");
        },
    );
}

#[test]
fn a_setup_failure_is_one_line_and_leaves_the_terminal_as_it_was() {
    let env = Env::new("fail");
    let b = env.spec_bundle("b", &["no-such-command-pty"]);
    let id = format!("fail-{}", std::process::id());
    env.made(&id);
    let mut term = Term::open(24, 80);
    let before = term.settings();
    let root = env.root();
    let mut child = KillOnDrop(term.spawn(&[
        "--root",
        &root.to_string_lossy(),
        "run",
        "-b",
        &b.to_string_lossy(),
        &id,
    ]));
    let status = wait_within(&mut child.0, LIMIT, "crabcan run");
    // Written before the exit, but read from the pty by another thread: wait for its end.
    term.expect("executable file not found");
    let shown = term.text();
    assert_eq!(status.code(), Some(1), "{shown}");
    assert_eq!(term.settings(), before, "{shown}");
    let errors: Vec<&str> = shown.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{shown}");
    assert!(
        errors[0].contains("\"no-such-command-pty\": executable file not found"),
        "{shown}"
    );
    env.assert_gone(&id);
}

#[test]
fn without_a_terminal_on_stdin_the_pty_is_relayed_as_is() {
    let env = Env::new("pipe");
    let b = env.spec_bundle(
        "b",
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo BOTH-$((6*7)); read x; echo GOT-$x-$((3*3)); \
             exit 4",
        ],
    );
    let id = format!("pipe-{}", std::process::id());
    env.made(&id);
    let input = env.dir.path().join("input");
    std::fs::write(&input, "typed\n").unwrap();
    let mut child = env
        .cmd(&["run", "-b", &b.to_string_lossy(), &id])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start crabcan");
    let out = bounded::join_within(
        {
            let mut o = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = std::io::Read::read_to_end(&mut o, &mut v);
                v
            })
        },
        LIMIT,
        "crabcan's stdout",
    );
    let status = wait_within(&mut child, LIMIT, "crabcan run");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status.code(), Some(4), "{out}\n{err}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("BOTH-42"), "{out:?}");
    assert!(out.contains("GOT-typed-9"), "{out:?}");
    assert!(err.is_empty(), "{err}");
    env.assert_gone(&id);
}

#[test]
fn a_detached_run_without_a_console_socket_is_refused() {
    let env = Env::new("detach");
    let b = env.spec_bundle("b", &["true"]);
    let o = env.cc(&["run", "-d", "-b", &b.to_string_lossy(), "detach-x1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_one_line(
        &o,
        "cannot allocate tty if crabcan will detach without setting console socket",
    );
    env.assert_gone("detach-x1");
}
