//! Controller detection against the real files of whatever host runs the tests, as root: a
//! controller the host's cgroup v2 hierarchy offers must be applied (the value read back from
//! the cgroup's file), one it does not offer must be refused with the exact documented
//! message, naming where the controller is instead. What the host offers is read here from
//! /proc/self/mountinfo and cgroup.controllers by the test's own parsing, never by the code
//! under test. Without root the tests fail: they cannot prove anything.

use crabcan_cgroups::{Cgroup, Limits, UNLIMITED, plan};
use std::fs;
use std::path::PathBuf;

/// Fails unless root; returns a guard that runs these tests one at a time: they create and
/// remove cgroups under one shared parent, and a default-only cgroup that loses a race
/// with another test's removal of that parent is skipped (as a run's would be), which the
/// default-cap test would take for a failure.
fn require_root() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates cgroups: run it as root (CI does)"
    );
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mount point (field 5) and super options of each mountinfo line of filesystem type `fstype`,
/// with the root (field 4) of the mount.
fn mounts_of(fstype: &str) -> Vec<(String, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let r: Vec<&str> = right.split_whitespace().collect();
            if r.first() != Some(&fstype) {
                return None;
            }
            let f: Vec<&str> = left.split_whitespace().collect();
            Some((
                f.get(3)?.to_string(),
                f.get(4)?.to_string(),
                r.get(2).unwrap_or(&"").to_string(),
            ))
        })
        .collect()
}

/// The mount point of the whole cgroup2 hierarchy, if one is mounted.
fn cgroup2_mount() -> Option<PathBuf> {
    mounts_of("cgroup2")
        .into_iter()
        .find(|(root, _, _)| root == "/")
        .map(|(_, mp, _)| PathBuf::from(mp))
}

/// Whether the cgroup2 hierarchy's root lists `controller` in cgroup.controllers.
fn offered(controller: &str) -> bool {
    cgroup2_mount().is_some_and(|m| {
        fs::read_to_string(m.join("cgroup.controllers"))
            .expect("read cgroup.controllers")
            .split_whitespace()
            .any(|c| c == controller)
    })
}

/// The documented refusal of `flag` when the host lacks the v2 `controller`, built from the
/// host's layout: bound to a v1 hierarchy, no cgroup2 at all, or simply not listed.
fn expected_refusal(flag: &str, controller: &str) -> String {
    let head = format!(
        "cannot apply {flag}: the cgroup v2 {controller} controller is not available on this host"
    );
    let v1 = mounts_of("cgroup")
        .into_iter()
        .find(|(_, _, opts)| opts.split(',').any(|o| o == controller));
    match (cgroup2_mount(), v1) {
        (None, _) => format!(
            "{head} (no cgroup2 hierarchy is mounted) (hint: mount one with 'mount -t cgroup2 \
             none /sys/fs/cgroup', or drop {flag})"
        ),
        (Some(_), Some((_, mp, _))) => format!(
            "{head} (cgroup v1/v2 hybrid: {controller} is bound to the v1 hierarchy at {mp}) \
             (hint: boot with systemd.unified_cgroup_hierarchy=1 for a pure cgroup v2 host, or \
             drop {flag})"
        ),
        (Some(m), None) => format!(
            "{head} (not listed in {}/cgroup.controllers) (hint: the kernel lacks it or the \
             enclosing cgroup does not delegate it; or drop {flag})",
            m.display()
        ),
    }
}

/// Directories under the cgroup2 mount (three levels) named after `leaf`.
fn dirs_named(leaf: &str) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, leaf: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == leaf {
                    out.push(e.path());
                }
                if depth > 1 {
                    walk(&e.path(), depth - 1, leaf, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(m) = cgroup2_mount() {
        walk(&m, 3, leaf, &mut out);
    }
    out
}

/// Creates the cgroup for one explicit limit and checks it by effect or by its refusal.
fn explicit_limit(flag: &str, controller: &str, limits: Limits, file: &str, value: &str) {
    let _serial = require_root();
    let name = format!("hosttest-{controller}-{}", std::process::id());
    let p = plan(&limits, &name).unwrap();
    let result = Cgroup::create(&p);
    if offered(controller) {
        let cg = result
            .unwrap_or_else(|e| panic!("{controller} is offered and we are root, yet: {e}"))
            .unwrap_or_else(|| panic!("an explicit {flag} was neither applied nor refused"));
        let path = cg.path().to_path_buf();
        assert!(
            path.ends_with(format!("crabcan/crabcan-{name}")),
            "{path:?}"
        );
        assert_eq!(
            fs::read_to_string(path.join(file)).unwrap().trim(),
            value,
            "{}",
            path.join(file).display()
        );
        cg.remove().unwrap();
        assert!(!path.exists(), "{} left behind", path.display());
    } else {
        let e = result.expect_err("an explicit limit without its controller must be refused");
        assert_eq!(e.to_string(), expected_refusal(flag, controller));
        assert_eq!(e.exit_code(), 125);
        assert_eq!(
            dirs_named(&format!("crabcan-{name}")),
            Vec::<PathBuf>::new(),
            "nothing may be created on refusal"
        );
    }
}

#[test]
fn explicit_memory_is_applied_or_refused_exactly() {
    explicit_limit(
        "--memory",
        "memory",
        Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        },
        "memory.max",
        "67108864",
    );
}

#[test]
fn explicit_pids_is_applied_or_refused_exactly() {
    explicit_limit(
        "--pids",
        "pids",
        Limits {
            pids: Some(123),
            ..Limits::default()
        },
        "pids.max",
        "123",
    );
}

#[test]
fn explicit_cpus_is_applied_or_refused_exactly() {
    explicit_limit(
        "--cpus",
        "cpu",
        Limits {
            cpus: Some(0.5),
            ..Limits::default()
        },
        "cpu.max",
        "50000 100000",
    );
}

#[test]
fn the_default_pids_cap_never_fails_a_run() {
    let _serial = require_root();
    let name = format!("hosttest-default-{}", std::process::id());
    let p = plan(&Limits::default(), &name).unwrap();
    let cg = Cgroup::create(&p).expect("the default cap must never fail a run");
    if offered("pids") {
        let cg = cg.expect("pids is offered and we are root: the default cap must be applied");
        let path = cg.path().to_path_buf();
        assert_eq!(
            fs::read_to_string(path.join("pids.max")).unwrap().trim(),
            "4096"
        );
        drop(cg);
        assert!(!path.exists(), "drop removes the cgroup");
    } else {
        assert!(cg.is_none(), "no pids controller, yet a cgroup: {cg:?}");
        assert_eq!(
            dirs_named(&format!("crabcan-{name}")),
            Vec::<PathBuf>::new()
        );
    }
}

#[test]
fn no_limits_at_all_create_nothing() {
    let _serial = require_root();
    let name = format!("hosttest-none-{}", std::process::id());
    let p = plan(
        &Limits {
            pids: Some(UNLIMITED),
            ..Limits::default()
        },
        &name,
    )
    .unwrap();
    assert!(Cgroup::create(&p).unwrap().is_none());
    assert_eq!(
        dirs_named(&format!("crabcan-{name}")),
        Vec::<PathBuf>::new()
    );
}
