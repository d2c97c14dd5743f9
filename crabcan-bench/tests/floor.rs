//! The floor program does the work it stands for: new namespaces with PID 1 an init and the
//! command its child, the 65536-id map, an idmapped root, `/proc`, a `/dev` with the standard
//! nodes, and the command's exit status; with `--cgroups` the cgroups, and with `--full` the
//! rest of crabcan's default setup, each seen from inside. Root only (like every privileged
//! test: it fails, not skips, elsewhere).

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

/// The pids hierarchy's directory of a cgroup `name` the floor makes below the caller's
/// own (the test's, which the floor inherits): v1's, or the unified one's on pure v2.
fn pids_dir(name: &str) -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    if let Some(p) = own
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p))
    {
        return PathBuf::from("/sys/fs/cgroup/pids")
            .join(p.trim_start_matches('/'))
            .join(name);
    }
    let p = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("no pids hierarchy and no cgroup v2");
    PathBuf::from("/sys/fs/cgroup")
        .join(p.trim_start_matches('/'))
        .join(name)
}

/// The mount options of the mount at `point` in a mountinfo text (the last one there).
fn mount_at<'a>(mountinfo: &'a str, point: &str) -> Option<(&'a str, &'a str)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut f = pre.split(' ');
            let at = f.nth(4)?;
            let opts = f.next()?;
            (at == point).then(|| (opts, post.split(' ').next().unwrap_or("")))
        })
        .next_back()
}

#[test]
fn the_full_floor_does_the_rest_of_crabcans_default_setup() {
    // Masked files that this kernel has: each must read empty inside (the host's do not).
    let masked_files: Vec<&str> = crabcan_mounts::MASKED_PATHS
        .iter()
        .copied()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    let script = format!(
        "grep -E '^(CapBnd|Seccomp):' /proc/self/status; \
         echo hostname=$(cat /proc/sys/kernel/hostname); \
         echo lo=$(cat /sys/class/net/lo/flags); \
         echo ptmx=$(readlink /dev/ptmx); \
         for f in {}; do echo \"size $f $(cat $f | wc -c)\"; done; \
         (echo 4096 > /proc/sys/kernel/msgmax) 2>/dev/null && echo sysctl=written \
           || echo sysctl=refused; \
         sed 's/^/mountinfo /' /proc/self/mountinfo; echo ready; read x; exit 0",
        masked_files.join(" ")
    );
    let mut floor = floor()
        .arg("--full")
        .arg(rootfs())
        .args(["/bin/sh", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run crabcan-floor");
    let pids = pids_dir(&format!("crabcan-floor-{}", floor.id()));
    let stdout = floor.stdout.take().expect("stdout");
    let mut text = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("read the floor's output");
        if line == "ready" {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    // While the command runs, it is in the floor's own cgroup.
    let procs = std::fs::read_to_string(pids.join("cgroup.procs")).unwrap_or_default();
    drop(floor.stdin.take());
    let status = floor.wait().expect("wait for crabcan-floor");
    assert!(status.success(), "{status}\n{text}");
    assert!(
        !procs.trim().is_empty(),
        "no process in {}: {text}",
        pids.display()
    );
    assert!(!pids.exists(), "{} was not removed", pids.display());

    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} in: {text}"))
    };
    assert_eq!(value("Seccomp:"), "2", "no seccomp filter: {text}");
    let keep = crabcan_security::DEFAULT_CAPS
        .iter()
        .fold(0u64, |m, c| m | 1 << c.number());
    let bounding = u64::from_str_radix(value("CapBnd:"), 16).expect("CapBnd in hex");
    assert_eq!(
        bounding, keep,
        "bounding set {bounding:#x}, crabcan's {keep:#x}"
    );
    assert_eq!(value("hostname="), "crabcan-floor");
    let lo = u32::from_str_radix(value("lo=").trim_start_matches("0x"), 16).expect("lo flags");
    assert_eq!(lo & 1, 1, "lo is not up: flags {lo:#x}");
    assert_eq!(value("ptmx="), "pts/ptmx");
    // Root owns its IPC namespace's sysctls: only the read-only mount refuses this write.
    assert_eq!(value("sysctl="), "refused", "/proc/sys is writable");
    for f in &masked_files {
        assert_eq!(
            value(&format!("size {f} ")),
            "0",
            "{f} is not masked: {text}"
        );
    }

    let mountinfo: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("mountinfo "))
        .map(|l| format!("{l}\n"))
        .collect();
    let read_only = |point: &str| {
        let (opts, _) = mount_at(&mountinfo, point)
            .unwrap_or_else(|| panic!("nothing mounted at {point}:\n{mountinfo}"));
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "{point} is not read-only ({opts})"
        );
    };
    // Every masked path this kernel has is covered, and read-only.
    for p in crabcan_mounts::MASKED_PATHS {
        if std::path::Path::new(p).exists() {
            read_only(p);
        }
    }
    for p in ["/sys", "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
        if std::path::Path::new(p).exists() {
            read_only(p);
        }
    }
    for (point, fstype) in [
        ("/sys", "sysfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
    ] {
        assert_eq!(
            mount_at(&mountinfo, point).map(|m| m.1),
            Some(fstype),
            "{point}:\n{mountinfo}"
        );
    }
    for node in ["/dev/null", "/dev/tty"] {
        read_only(node);
    }
}
