//! The floor program does the work it stands for: new namespaces with PID 1 an init and the
//! command its child, the 65536-id map, an idmapped root, `/proc`, a `/dev` with the standard
//! nodes, and the command's exit status. Root only (like every privileged test: it fails,
//! not skips, elsewhere).

use std::path::PathBuf;
use std::process::Command;

/// The floor program under test: `CRABCAN_FLOOR_BIN` (set in the VM) or the one cargo built.
fn floor() -> Command {
    match std::env::var_os("CRABCAN_FLOOR_BIN") {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_crabcan-floor")),
    }
}

fn rootfs() -> PathBuf {
    if let Some(p) = std::env::var_os("CRABCAN_TEST_ROOTFS") {
        return PathBuf::from(p);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-rootfs");
    xtask::rootfs::ensure(&dir).expect("cannot build the test rootfs");
    dir
}

#[test]
fn the_floor_sets_up_what_it_stands_for() {
    let script = "echo pid=$$; cat /proc/self/uid_map; \
                  grep -c ' / .*idmapped' /proc/self/mountinfo; \
                  echo owner=$(stat -c %u /bin/busybox); ls /dev | tr '\\n' ' '; echo; \
                  echo x > /dev/null && echo null-ok; exit 3";
    let out = floor()
        .arg(rootfs())
        .args(["/bin/sh", "-c", script])
        .output()
        .expect("cannot run crabcan-floor");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit status; stderr: {err}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // The init is PID 1, so the command is PID 2.
    assert_eq!(lines.first(), Some(&"pid=2"), "{text}{err}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "3221159936", "65536"], "{text}");
    assert_eq!(lines[2], "1", "the root is not an idmapped mount: {text}");
    // Host root's files are root's inside only through the idmapped root.
    assert_eq!(lines[3], "owner=0", "{text}");
    let dev: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        dev,
        ["full", "null", "random", "tty", "urandom", "zero"],
        "{text}"
    );
    assert_eq!(lines[5], "null-ok", "{text}");
}

#[test]
fn the_floor_with_cgroups_places_the_container_and_removes_them() {
    let mut floor = floor()
        .arg("--cgroups")
        .arg(rootfs())
        .args(["/bin/sleep", "1"])
        .spawn()
        .expect("cannot run crabcan-floor");
    let name = format!("crabcan-floor-{}", floor.id());
    let children = format!("/proc/{}/task/{}/children", floor.id(), floor.id());
    let mut init = None;
    for _ in 0..200 {
        init = std::fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_string));
        if init.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let init = init.expect("the floor cloned no process");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
    // The pids controller's directory: its v1 hierarchy's, or the unified one's on v2.
    let pids_dir = cgroups
        .lines()
        .find_map(|l| {
            l.split_once(":pids:")
                .map(|(_, p)| PathBuf::from("/sys/fs/cgroup/pids").join(p.trim_start_matches('/')))
        })
        .or_else(|| {
            cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .filter(|_| std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists())
                .map(|p| PathBuf::from("/sys/fs/cgroup").join(p.trim_start_matches('/')))
        });
    let status = floor.wait().expect("wait for crabcan-floor");
    assert!(status.success(), "{status}");
    // Seen from the host (the test is outside the cgroup namespace), the container's
    // process sits in the floor's own cgroup of every hierarchy.
    assert!(
        cgroups
            .lines()
            .filter(|l| !l.contains("name="))
            .all(|l| l.ends_with(&name)),
        "{cgroups}"
    );
    let pids_dir = pids_dir.expect("no pids hierarchy");
    assert!(!pids_dir.exists(), "{} was not removed", pids_dir.display());
}
