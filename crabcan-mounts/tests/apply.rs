//! Privileged tests of the explicit layout, by effect: each applies a plan in a forked child
//! with its own mount namespace (so nothing reaches the host's mounts), checks from inside
//! the new root, and reports through its exit code. Run as root; they fail otherwise.

use crabcan_mounts::{DeviceKind, DeviceNode, MountConfig, MountEntry, Propagation, Root, plan};
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A scratch directory for one test under the target dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("mounts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        Scratch(dir)
    }
    fn root(&self) -> PathBuf {
        self.0.join("rootfs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` in a forked child in its own mount namespace and returns its exit code. The
/// child never returns into the harness: it `_exit`s.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    // SAFETY: the child only runs `f` and exits with `_exit`; glibc keeps malloc usable
    // after fork.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
                    eprintln!("unshare: {e}");
                    return 90;
                }
                f()
            }))
            .unwrap_or(101);
            // SAFETY: ends the forked child without running the harness's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child ended with {other:?}"),
        },
    }
}

/// Applies `cfg`, printing the error; 80 when it fails.
fn apply(cfg: &MountConfig) -> std::result::Result<(), i32> {
    // Written to the descriptor itself: the harness's capture of `eprintln!` lives in the
    // forked child's memory and would be lost with it.
    let say = |line: String| {
        use std::io::Write;
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    };
    let p = match plan(cfg) {
        Ok(p) => p,
        Err(e) => {
            say(format!("plan: {e}"));
            return Err(81);
        }
    };
    crabcan_mounts::apply(&p).map_err(|e| {
        say(format!("apply: {e}"));
        80
    })
}

fn entry(dst: &str, fstype: &str, src: Option<&str>, opts: &[&str]) -> MountEntry {
    MountEntry::new(dst, fstype, src, opts).unwrap()
}

fn config(s: &Scratch, entries: Vec<MountEntry>) -> MountConfig {
    let mut cfg = MountConfig::new(Root::Dir(s.root()));
    cfg.masked.clear();
    cfg.readonly.clear();
    cfg.entries = Some(entries);
    cfg
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn read_only_bind_refuses_writes() {
    let s = Scratch::new("ro-bind");
    let data = s.0.join("data");
    fs::create_dir_all(&data).unwrap();
    let cfg = config(
        &s,
        vec![
            entry("/ro", "bind", data.to_str(), &["rbind", "ro"]),
            entry("/rw", "bind", data.to_str(), &["rbind"]),
        ],
    );
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        if errno_of(fs::write("/ro/f", "x")) != Some(libc::EROFS) {
            return 1;
        }
        if fs::write("/rw/f", "x").is_err() {
            return 2;
        }
        0
    });
    assert_eq!(code, 0);
    assert_eq!(fs::read_to_string(data.join("f")).unwrap(), "x");
}

#[test]
fn nosuid_noexec_nodev_have_effect() {
    let s = Scratch::new("flags");
    let data = s.0.join("data");
    fs::create_dir_all(&data).unwrap();
    // A script whose interpreter exists nowhere: without noexec exec fails with ENOENT
    // (no interpreter), with noexec the kernel refuses the file first (EACCES). Never a
    // program that could run: a successful exec would end the child with its status.
    fs::write(data.join("prog"), "#!/no/such/interpreter\n").unwrap();
    fs::set_permissions(data.join("prog"), fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(
        &s,
        vec![
            entry(
                "/locked",
                "bind",
                data.to_str(),
                &["bind", "noexec", "nosuid"],
            ),
            entry("/open", "bind", data.to_str(), &["bind"]),
            entry("/t", "tmpfs", None, &["nodev"]),
            entry("/u", "tmpfs", None, &[]),
        ],
    );
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let exec = |p: &str| {
            let prog = std::ffi::CString::new(p).unwrap();
            let argv = [prog.as_c_str()];
            nix::unistd::execv(&prog, &argv).err()
        };
        if exec("/locked/prog") != Some(nix::errno::Errno::EACCES) {
            return 1;
        }
        if exec("/open/prog") != Some(nix::errno::Errno::ENOENT) {
            return 2;
        }
        let flags = |p: &str| nix::sys::statvfs::statvfs(p).map(|v| v.flags());
        use nix::sys::statvfs::FsFlags;
        match flags("/locked") {
            Ok(f) if f.contains(FsFlags::ST_NOSUID) => {}
            _ => return 3,
        }
        // A device node on the nodev tmpfs does not open; on the other one it does.
        for (dir, want_ok) in [("/t", false), ("/u", true)] {
            let node = format!("{dir}/null");
            let made = nix::sys::stat::mknod(
                node.as_str(),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            );
            if made.is_err() {
                return 4;
            }
            if fs::File::open(&node).is_ok() != want_ok {
                return 5;
            }
        }
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn masked_and_read_only_paths() {
    let s = Scratch::new("mask");
    let root = s.root();
    fs::write(root.join("secret"), "host secret").unwrap();
    fs::create_dir_all(root.join("secrets")).unwrap();
    fs::write(root.join("secrets/key"), "k").unwrap();
    fs::create_dir_all(root.join("conf")).unwrap();
    let mut cfg = config(&s, vec![entry("/dev", "tmpfs", None, &["nosuid"])]);
    cfg.masked = vec!["/secret".into(), "/secrets".into(), "/absent".into()];
    cfg.readonly = vec!["/conf".into(), "/absent-too".into()];
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let mut got = String::new();
        match fs::File::open("/secret").and_then(|mut f| f.read_to_string(&mut got)) {
            Ok(_) if got.is_empty() => {}
            _ => return 1,
        }
        match fs::read_dir("/secrets").map(|d| d.count()) {
            Ok(0) => {}
            _ => return 2,
        }
        if errno_of(fs::write("/secrets/new", "x")) != Some(libc::EROFS) {
            return 3;
        }
        if errno_of(fs::write("/conf/new", "x")) != Some(libc::EROFS) {
            return 4;
        }
        if fs::metadata("/absent").is_ok() {
            return 5;
        }
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn device_nodes_with_mode_and_owner() {
    let s = Scratch::new("devices");
    let mut cfg = config(
        &s,
        vec![entry("/dev", "tmpfs", None, &["nosuid", "mode=755"])],
    );
    cfg.default_devices = true;
    cfg.devices = vec![DeviceNode {
        path: "/dev/mynull".into(),
        kind: DeviceKind::Char,
        major: 1,
        minor: 3,
        file_mode: 0o640,
        uid: 1234,
        gid: 5678,
    }];
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let Ok(m) = fs::metadata("/dev/mynull") else {
            return 1;
        };
        if m.mode() & 0o7777 != 0o640 || m.uid() != 1234 || m.gid() != 5678 {
            eprintln!("mode {:o} owner {}:{}", m.mode(), m.uid(), m.gid());
            return 2;
        }
        if m.rdev() != nix::sys::stat::makedev(1, 3) {
            return 3;
        }
        if fs::OpenOptions::new()
            .write(true)
            .open("/dev/mynull")
            .and_then(|mut f| f.write_all(b"gone"))
            .is_err()
        {
            return 4;
        }
        for d in ["null", "zero", "full", "random", "urandom", "tty"] {
            match fs::metadata(format!("/dev/{d}")) {
                Ok(m) if m.permissions().mode() & 0o777 == 0o666 => {}
                _ => return 5,
            }
        }
        match fs::read_link("/dev/fd") {
            Ok(t) if t == Path::new("/proc/self/fd") => {}
            _ => return 6,
        }
        0
    });
    assert_eq!(code, 0);
}

/// A root used before (no tmpfs on `/dev`: the nodes are made in the root's own `/dev`)
/// starts again: the very node asked for, found there, is taken as it is; one with another
/// mode, owner or device number is refused, and left as it was.
#[test]
fn a_device_node_left_by_an_earlier_start_is_taken_only_when_it_is_the_same() {
    let s = Scratch::new("devices-again");
    let node = |file_mode, minor| DeviceNode {
        path: "/dev/again".into(),
        kind: DeviceKind::Char,
        major: 1,
        minor,
        file_mode,
        uid: 1234,
        gid: 5678,
    };
    let with = |n: DeviceNode| {
        let mut cfg = config(&s, vec![]);
        cfg.devices = vec![n];
        cfg
    };
    let start = |cfg: &MountConfig| in_child(|| apply(cfg).err().unwrap_or(0));
    assert_eq!(start(&with(node(0o640, 3))), 0, "first start");
    assert_eq!(start(&with(node(0o640, 3))), 0, "the same node again");
    assert_eq!(start(&with(node(0o600, 3))), 80, "another mode");
    assert_eq!(start(&with(node(0o640, 5))), 80, "another device");
    let m = fs::symlink_metadata(s.root().join("dev/again")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn rslave_root_receives_host_mount_events() {
    for (prop, want) in [("rslave", true), ("rprivate", false)] {
        let s = Scratch::new(&format!("prop-{prop}"));
        let shared = s.0.clone();
        let root = s.root();
        fs::create_dir_all(root.join("mnt/ev")).unwrap();
        let mut cfg = config(&s, Vec::new());
        cfg.root_propagation = Propagation::parse(prop);
        let code = in_child(|| propagation_probe(&shared, &root, &cfg, false));
        assert_eq!(code, if want { 0 } else { 7 }, "{prop}");
    }
}

/// In its own namespace (the "host" here), makes `shared` a shared tmpfs holding `root`,
/// starts a container child on `root`, mounts at `root/mnt/ev` once the container is set
/// up, and returns 0 when the container saw that mount, 7 when it did not.
fn propagation_probe(shared: &Path, root: &Path, cfg: &MountConfig, want_shared: bool) -> i32 {
    use nix::mount::{MsFlags, mount};
    let none = None::<&str>;
    if mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).is_err()
        || mount(Some("tmpfs"), shared, Some("tmpfs"), MsFlags::empty(), none).is_err()
        || mount(none, shared, none, MsFlags::MS_SHARED, none).is_err()
        || fs::create_dir_all(root.join("mnt/ev")).is_err()
    {
        return 91;
    }
    let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
    let (done_r, done_w) = nix::unistd::pipe().unwrap();
    // SAFETY: as in `in_child`.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let code = (|| {
                if nix::sched::unshare(CloneFlags::CLONE_NEWNS).is_err() {
                    return 92;
                }
                if let Err(c) = apply(cfg) {
                    return c;
                }
                let _ = nix::unistd::write(&ready_w, b"r");
                let mut b = [0u8; 1];
                let _ = nix::unistd::read(&done_r, &mut b);
                let (Ok(a), Ok(b)) = (fs::metadata("/mnt"), fs::metadata("/mnt/ev")) else {
                    return 93;
                };
                if a.dev() == b.dev() {
                    return 7;
                }
                if want_shared {
                    // The root's line in mountinfo names its peer group.
                    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                    let root_line = info.lines().find(|l| l.split(' ').nth(4) == Some("/"));
                    if !root_line.is_some_and(|l| l.contains(" shared:")) {
                        eprintln!("root not shared: {root_line:?}");
                        return 8;
                    }
                }
                0
            })();
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            drop(done_r);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&ready_r, &mut b);
            let r = mount(
                Some("tmpfs"),
                &root.join("mnt/ev"),
                Some("tmpfs"),
                MsFlags::empty(),
                none,
            );
            let _ = nix::unistd::write(&done_w, b"d");
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) => c,
                _ => 94,
            };
            if r.is_err() { 95 } else { code }
        }
        Err(_) => 96,
    }
}

#[test]
fn hostile_symlink_destinations_stay_inside() {
    let s = Scratch::new("hostile");
    let root = s.root();
    let outside = s.0.join("outside");
    fs::create_dir_all(&outside).unwrap();
    // An absolute symlink naming a host directory (the image has a directory of that
    // name), and a relative one climbing out to a name the image lacks (created inside).
    fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../outside", root.join("rel")).unwrap();
    let cfg = config(
        &s,
        vec![
            entry("/abs/sub", "tmpfs", None, &[]),
            entry("/rel/sub", "tmpfs", None, &[]),
        ],
    );
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        // Both led inside the new root, where the mounts are.
        let inside = outside.strip_prefix("/").unwrap();
        for p in [
            Path::new("/").join(inside).join("sub"),
            "/outside/sub".into(),
        ] {
            match (fs::metadata(&p), fs::metadata(p.parent().unwrap())) {
                (Ok(a), Ok(b)) if a.dev() != b.dev() => {}
                _ => return 1,
            }
        }
        0
    });
    assert_eq!(code, 0);
    assert!(
        !outside.join("sub").exists(),
        "a mount point was made outside the root"
    );

    // A destination that resolves to the root itself is refused.
    std::os::unix::fs::symlink("/", root.join("loop")).unwrap();
    let cfg = config(&s, vec![entry("/loop", "tmpfs", None, &[])]);
    let code = in_child(|| match apply(&cfg) {
        Err(80) => 0,
        Err(c) => c,
        Ok(()) => 1,
    });
    assert_eq!(code, 0, "a mount over the root must be refused");
}

#[test]
fn no_pivot_and_read_only_root() {
    let s = Scratch::new("nopivot");
    fs::write(s.root().join("marker"), "in root").unwrap();
    let mut cfg = config(&s, vec![entry("/tmp", "tmpfs", None, &[])]);
    cfg.no_pivot = true;
    cfg.readonly_root = true;
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        if fs::read_to_string("/marker").ok().as_deref() != Some("in root") {
            return 1;
        }
        if errno_of(fs::write("/new", "x")) != Some(libc::EROFS) {
            return 2;
        }
        if fs::write("/tmp/new", "x").is_err() {
            return 3;
        }
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn cgroup_type_follows_the_host_layout_read_only() {
    let s = Scratch::new("cgroup");
    let layout =
        crabcan_mounts::cgroup::layout(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    let cfg = config(
        &s,
        vec![
            entry("/proc", "proc", None, &[]),
            entry(
                "/sys/fs/cgroup",
                "cgroup",
                Some("cgroup"),
                &["ro", "nosuid"],
            ),
        ],
    );
    let code = in_child(|| {
        // The container's own cgroup namespace: its cgroup is the root it sees.
        if nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).is_err() {
            return 92;
        }
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return 93;
        };
        let fstype_at = |p: &str| {
            info.lines().find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (left.split(' ').nth(4)? == p)
                    .then(|| right.split(' ').next().unwrap_or("").to_string())
            })
        };
        let probes: Vec<String> = match &layout {
            crabcan_mounts::CgroupLayout::Unified => {
                if fstype_at("/sys/fs/cgroup").as_deref() != Some("cgroup2") {
                    return 1;
                }
                vec!["/sys/fs/cgroup".into()]
            }
            crabcan_mounts::CgroupLayout::V1 {
                hierarchies,
                unified,
            } => {
                if hierarchies.is_empty() || fstype_at("/sys/fs/cgroup").as_deref() != Some("tmpfs")
                {
                    return 2;
                }
                let mut probes = Vec::new();
                for h in hierarchies {
                    let p = format!("/sys/fs/cgroup/{}", h.name);
                    if fstype_at(&p).as_deref() != Some("cgroup") {
                        eprintln!("{p} is not a cgroup mount");
                        return 3;
                    }
                    for c in &h.controllers {
                        if fs::metadata(format!("/sys/fs/cgroup/{c}/cgroup.procs")).is_err() {
                            eprintln!("no /sys/fs/cgroup/{c}");
                            return 4;
                        }
                    }
                    probes.push(p);
                }
                if *unified && fstype_at("/sys/fs/cgroup/unified").as_deref() != Some("cgroup2") {
                    return 5;
                }
                probes.push("/sys/fs/cgroup".into());
                probes
            }
        };
        for p in probes {
            // Were it writable, this would make a real cgroup: removed again at once.
            let probe = format!("{p}/crabcan-mounts-test-{}", std::process::id());
            let made = fs::create_dir(&probe);
            if made.is_ok() {
                let _ = fs::remove_dir(&probe);
            }
            if errno_of(made) != Some(libc::EROFS) {
                eprintln!("{p} is writable");
                return 6;
            }
        }
        // In its own cgroup namespace the process sits at the root of what it sees.
        match fs::read_to_string("/proc/self/cgroup") {
            Ok(c) if c.lines().all(|l| l.ends_with(":/")) => 0,
            other => {
                eprintln!("/proc/self/cgroup: {other:?}");
                7
            }
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn rshared_root_receives_host_events_and_is_shared() {
    let s = Scratch::new("rshared");
    let shared = s.0.clone();
    let root = s.root();
    let mut cfg = config(&s, vec![entry("/proc", "proc", None, &[])]);
    cfg.root_propagation = Propagation::parse("rshared");
    let code = in_child(|| propagation_probe(&shared, &root, &cfg, true));
    assert_eq!(code, 0);
}

#[test]
fn devices_in_a_user_namespace_are_binds_of_the_host_nodes() {
    let s = Scratch::new("userns-dev");
    // A host node of our own (never the host's /dev/null: a test without the protection
    // must not change a shared node), bound at the same path inside the container.
    let node = s.0.join("hostnull");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(&node, fs::Permissions::from_mode(0o666)).unwrap();
    let mut cfg = config(&s, Vec::new());
    cfg.in_userns = true;
    cfg.devices = vec![DeviceNode {
        path: node.clone(),
        kind: DeviceKind::Char,
        major: 1,
        minor: 3,
        file_mode: 0o600,
        uid: 0,
        gid: 0,
    }];
    let code = in_child(|| {
        // A user namespace mapping root to root: mknod is refused there, as in a
        // container with an id map.
        if nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_err() {
            return 92;
        }
        if fs::write("/proc/self/uid_map", "0 0 1").is_err()
            || fs::write("/proc/self/setgroups", "deny").is_err()
            || fs::write("/proc/self/gid_map", "0 0 1").is_err()
        {
            return 93;
        }
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let Ok(m) = fs::metadata(&node) else {
            return 1;
        };
        // The host's node: its mode (666), not the asked 600, which chmod cannot change.
        if m.rdev() != nix::sys::stat::makedev(1, 3) || m.mode() & 0o777 != 0o666 {
            return 2;
        }
        if fs::OpenOptions::new().write(true).open(&node).is_err() {
            return 3;
        }
        if fs::set_permissions(&node, fs::Permissions::from_mode(0o600)).is_ok() {
            return 4;
        }
        0
    });
    assert_eq!(code, 0);
    let host = fs::metadata(&node).unwrap();
    assert_eq!(
        host.mode() & 0o777,
        0o666,
        "the host's node must keep its mode"
    );
}

#[test]
fn entry_propagation_words_are_applied_after_the_mount() {
    let s = Scratch::new("entry-prop");
    let data = s.0.join("data");
    fs::create_dir_all(&data).unwrap();
    let cfg = config(
        &s,
        vec![
            entry("/proc", "proc", None, &[]),
            entry("/a", "tmpfs", None, &["rshared", "mode=700"]),
            entry("/b", "bind", data.to_str(), &["rbind", "unbindable"]),
            entry("/c", "tmpfs", None, &["rro"]),
        ],
    );
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let line = |p: &str| {
            info.lines()
                .find(|l| l.split(' ').nth(4) == Some(p))
                .unwrap_or("")
                .to_string()
        };
        if !line("/a").contains(" shared:") {
            eprintln!("/a: {}", line("/a"));
            return 1;
        }
        if !line("/b").contains(" unbindable") {
            eprintln!("/b: {}", line("/b"));
            return 2;
        }
        match fs::metadata("/a") {
            Ok(m) if m.permissions().mode() & 0o777 == 0o700 => {}
            _ => return 3,
        }
        if errno_of(fs::write("/c/x", "x")) != Some(libc::EROFS) {
            return 4;
        }
        0
    });
    assert_eq!(code, 0);
}

/// A tmpfs the container mounts inside a volume (a recursive bind) is the container's own,
/// not the host's: what a later entry needs in it (a missing directory, a file's mount
/// point) is made there, and nothing reaches the host's directory.
#[test]
fn mount_points_are_made_in_a_tmpfs_inside_a_volume() {
    let s = Scratch::new("tmpfs-in-volume");
    let vol = s.0.join("vol");
    fs::create_dir_all(vol.join("cache")).unwrap();
    let file = s.0.join("file");
    fs::write(&file, "bound\n").unwrap();
    let cfg = config(
        &s,
        vec![
            entry("/vol", "bind", vol.to_str(), &["rbind"]),
            entry("/vol/cache", "tmpfs", None, &[]),
            entry("/vol/cache/sub", "tmpfs", None, &[]),
            entry("/vol/cache/f", "bind", file.to_str(), &["bind"]),
        ],
    );
    let code = in_child(|| {
        if let Err(c) = apply(&cfg) {
            return c;
        }
        match fs::read_to_string("/vol/cache/f") {
            Ok(t) if t == "bound\n" => 0,
            _ => 1,
        }
    });
    assert_eq!(code, 0);
    let left: Vec<_> = fs::read_dir(vol.join("cache")).unwrap().collect();
    assert!(left.is_empty(), "made in the host's directory: {left:?}");
}
