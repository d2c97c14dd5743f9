//! Privileged tests that need a cgroup v2 hierarchy with the memory, pids and cpu
//! controllers (the test VM). They fail, never pass silently, when the host lacks them.
//! Limits are checked by effect: a fork loop hits pids.max, a large allocation is OOM-killed,
//! a busy loop is throttled.

mod support;

use crabcan_cgroups::{Cgroup, Controller, Host, Limits, plan};
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use support::{LIMIT, finish, wait_within};

const NEEDS: &str = "needs cgroup v2 memory/pids/cpu controllers: run by cargo xtask vm-test";

/// The tests check that the shared parent directory disappears, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn setup() -> (MutexGuard<'static, ()>, Host) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test {NEEDS} and must run as root"
    );
    let host = Host::detect().unwrap();
    for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
        assert!(
            host.available(c),
            "this test {NEEDS}; here: {}",
            host.unavailable("the test", c)
        );
    }
    (guard, host)
}

/// A shell that waits for a line on stdin before running `script`, so it can be put in the
/// cgroup first, as crabcan does with the container's child.
fn gated(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in:\n{text}"))
}

fn assert_gone(cgroup: &Path, host: &Host) {
    assert!(!cgroup.exists(), "{} still exists", cgroup.display());
    let parent = host.placement("x").unwrap();
    assert!(
        !parent.parent_dir().exists(),
        "{} still exists",
        parent.parent_dir().display()
    );
}

#[test]
#[ignore = "needs cgroup v2 memory/pids/cpu controllers: run by cargo xtask vm-test"]
fn pids_max_stops_a_fork_loop() {
    let (_g, host) = setup();
    let limits = Limits {
        pids: Some(8),
        ..Limits::default()
    };
    let cg = Cgroup::create(&plan(&limits, "vmtest-pids").unwrap())
        .unwrap()
        .unwrap();
    let path = cg.path().to_path_buf();
    assert_eq!(
        fs::read_to_string(path.join("pids.max")).unwrap().trim(),
        "8"
    );

    let mut child = gated(
        "i=0; while [ $i -lt 30 ]; do sleep 30 </dev/null >/dev/null 2>&1 & echo started; i=$((i+1)); done; echo loop-done",
    );
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let (_, stdout, stderr) = finish(&mut child, LIMIT);

    // Whether the shell gives up or goes on after a failed fork differs between shells, so
    // the evidence is the kernel's: refused forks counted, and never more than 8 members.
    let members = fs::read_to_string(path.join("cgroup.procs")).unwrap();
    assert!(
        members.lines().count() <= 8,
        "more than pids.max members: {members}"
    );
    assert!(
        stderr.to_lowercase().contains("fork"),
        "the shell should report a failed fork:\n{stdout}\n{stderr}"
    );
    let events = fs::read_to_string(path.join("pids.events")).unwrap();
    assert!(field(&events, "max") >= 1, "pids.events: {events}");

    // remove() kills the sleepers left behind and deletes the cgroup and its parent.
    cg.remove().unwrap();
    assert_gone(&path, &host);
}

#[test]
#[ignore = "needs cgroup v2 memory/pids/cpu controllers: run by cargo xtask vm-test"]
fn memory_max_oom_kills_a_large_allocation() {
    let (_g, host) = setup();
    let limits = Limits {
        memory: Some(16 << 20),
        ..Limits::default()
    };
    let cg = Cgroup::create(&plan(&limits, "vmtest-mem").unwrap())
        .unwrap()
        .unwrap();
    let path = cg.path().to_path_buf();
    assert_eq!(
        fs::read_to_string(path.join("memory.max")).unwrap().trim(),
        (16u64 << 20).to_string()
    );
    // Without swap the overflow cannot be paged out, so the OOM killer must act.
    let swap = path.join("memory.swap.max");
    if swap.exists() {
        fs::write(&swap, "0").unwrap();
    }
    assert!(!cg.oom_killed());

    // dd fills a 64 MiB buffer in one read: four times the limit.
    let mut child = gated("exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let (status, _, stderr) = finish(&mut child, LIMIT);
    assert_eq!(
        status.signal(),
        Some(9),
        "expected an OOM kill, got {status:?}: {stderr}"
    );
    assert!(cg.oom_killed(), "memory.events should count the OOM kill");

    cg.remove().unwrap();
    assert_gone(&path, &host);
}

#[test]
#[ignore = "needs cgroup v2 memory/pids/cpu controllers: run by cargo xtask vm-test"]
fn cpu_max_throttles_a_busy_loop() {
    let (_g, host) = setup();
    let limits = Limits {
        cpus: Some(0.2),
        cpu_weight: Some(50),
        ..Limits::default()
    };
    let cg = Cgroup::create(&plan(&limits, "vmtest-cpu").unwrap())
        .unwrap()
        .unwrap();
    let path = cg.path().to_path_buf();
    assert_eq!(
        fs::read_to_string(path.join("cpu.max")).unwrap().trim(),
        "20000 100000"
    );
    assert_eq!(
        fs::read_to_string(path.join("cpu.weight")).unwrap().trim(),
        "50"
    );

    let mut child = gated("while :; do :; done");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    std::thread::sleep(Duration::from_millis(800));
    let stat = fs::read_to_string(path.join("cpu.stat")).unwrap();
    assert!(field(&stat, "nr_throttled") >= 1, "cpu.stat: {stat}");

    // The busy loop is still running: remove() must kill it (cgroup.kill) to succeed.
    cg.remove().unwrap();
    let status = wait_within(&mut child, LIMIT);
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_gone(&path, &host);
}

#[test]
#[ignore = "needs cgroup v2 memory/pids/cpu controllers: run by cargo xtask vm-test"]
fn containers_share_the_parent_until_the_last_one_goes() {
    let (_g, host) = setup();
    let limits = Limits {
        pids: Some(100),
        ..Limits::default()
    };
    let a = Cgroup::create(&plan(&limits, "vmtest-a").unwrap())
        .unwrap()
        .unwrap();
    let b = Cgroup::create(&plan(&limits, "vmtest-b").unwrap())
        .unwrap()
        .unwrap();
    let parent = a.path().parent().unwrap().to_path_buf();
    assert_eq!(b.path().parent().unwrap(), parent);
    assert!(a.path().ends_with("crabcan/crabcan-vmtest-a"));

    // The same name again while the first is in use is refused.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    a.add_process(sleeper.id() as i32).unwrap();
    let e = Cgroup::create(&plan(&limits, "vmtest-a").unwrap()).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");

    let a_path = a.path().to_path_buf();
    a.remove().unwrap();
    assert_eq!(wait_within(&mut sleeper, LIMIT).signal(), Some(9));
    assert!(!a_path.exists());
    assert!(parent.exists(), "b still uses the parent");

    let b_path = b.path().to_path_buf();
    drop(b);
    assert_gone(&b_path, &host);
}
