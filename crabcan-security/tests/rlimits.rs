//! apply_rlimits changes the calling process, so each test re-runs this test binary as a
//! child (selected with `--exact` and a marker variable), applies the limits there and checks
//! them by effect; the harness process itself is never changed.

use crabcan_security::{RlimitSpec, apply_rlimits, parse_rlimit};
use nix::errno::Errno;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHILD_MARKER: &str = "CRABCAN_SECURITY_RLIMIT_CHILD";

/// How long a child run may take before its test fails.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` to its end, or kills and reaps it and fails the test after [`LIMIT`]. Its
/// output (one test's report) fits in the pipes, so it is read once the child has exited.
fn output_within_limit(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child run");
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("wait for the child run").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child run did not finish within {LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
        .wait_with_output()
        .expect("read the child run's output")
}

/// Runs `body` in a fresh copy of this test binary that runs only the test `name`.
/// Returns true in the original (parent) run, false in the child.
fn in_child(name: &str, body: impl FnOnce()) -> bool {
    if std::env::var(CHILD_MARKER).as_deref() == Ok(name) {
        body();
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = output_within_limit(
        Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, name),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child run of {name} failed:\n{stdout}\n{stderr}"
    );
    // A typo in the name would run zero tests and still succeed.
    assert!(
        stdout.contains("1 passed"),
        "child run of {name} did not run it:\n{stdout}"
    );
    true
}

fn specs(list: &[&str]) -> Vec<RlimitSpec> {
    list.iter().map(|s| parse_rlimit(s).unwrap()).collect()
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

#[test]
fn lowering_nofile_to_64_makes_open_fail_with_emfile() {
    let before = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let parent = in_child("lowering_nofile_to_64_makes_open_fail_with_emfile", || {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        apply_rlimits(&specs(&["nofile=64"])).unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (64, hard));
        let mut files = Vec::new();
        let mut failure = None;
        for _ in 0..70 {
            match File::open("/dev/null") {
                Ok(f) => files.push(f),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let e = failure.expect("70 opens succeeded under nofile=64");
        assert_eq!(e.raw_os_error(), Some(Errno::EMFILE as i32));
        assert!(files.len() < 64);
    });
    if parent {
        // The harness itself kept its limit: the change happened in the child only.
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), before);
    }
}

#[test]
fn soft_only_keeps_the_hard_limit_and_raising_it_needs_cap_sys_resource() {
    let _ = in_child(
        "soft_only_keeps_the_hard_limit_and_raising_it_needs_cap_sys_resource",
        || {
            apply_rlimits(&specs(&["nofile=64:128"])).unwrap();
            assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (64, 128));
            apply_rlimits(&specs(&["nofile=32"])).unwrap();
            assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (32, 128));
            let raised = apply_rlimits(&specs(&["nofile=256"]));
            if has_cap_sys_resource() {
                raised.unwrap();
                assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (256, 256));
            } else {
                let e = raised.unwrap_err();
                let msg = e.to_string();
                assert_eq!(e.errno(), Some(Errno::EPERM));
                assert!(
                    msg.contains("rlimit nofile=256")
                        && !msg.contains("--")
                        && msg.contains("CAP_SYS_RESOURCE")
                        && msg.contains("128"),
                    "{msg}"
                );
                assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (32, 128));
            }
        },
    );
}

#[test]
fn several_limits_apply_in_order() {
    let _ = in_child("several_limits_apply_in_order", || {
        apply_rlimits(&specs(&[
            "core=0:0",
            "fsize=1m",
            "cpu=100:200",
            "nproc=400",
            "nproc=500",
        ]))
        .unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), (0, 0));
        assert_eq!(getrlimit(Resource::RLIMIT_FSIZE).unwrap().0, 1 << 20);
        assert_eq!(getrlimit(Resource::RLIMIT_CPU).unwrap(), (100, 200));
        // The later nproc wins.
        let (soft, hard) = getrlimit(Resource::RLIMIT_NPROC).unwrap();
        assert_eq!(soft, 500);
        assert!(hard >= 500 || hard == RLIM_INFINITY);
    });
}
