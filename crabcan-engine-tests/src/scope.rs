//! One test's private corner of the host, and the check that the test left nothing behind.
//!
//! Every engine a test starts keeps its state under the scope's directory (under `target/`),
//! puts its containers under a cgroup parent named after the scope, and runs the runtime under
//! test. When the test ends, [`Scope::conclude`] looks for what the containers could have left:
//! mounts, processes, cgroups named after their ids, shim sockets and runtime state. Then it
//! removes the scope's own directory and cgroup parents.

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Engine tests share host places that no private directory covers (`/run/containerd/s`,
/// `/etc/docker`, the runtime's default root): one test at a time in a process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the engines' own processes may take to go after their last command returned.
const SETTLE: Duration = Duration::from_secs(15);

/// Files and directories the engines create outside their private directories whatever they are
/// told. Those absent when a scope starts are removed when it ends (directories only if
/// empty, so another user's entries survive).
const ENGINE_HOST_PATHS: &[&str] = &[
    // podman's image copies (containers/image's blob info cache, fixed for root).
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    // dockerd 20.10's trust key and plugin socket directory.
    "/etc/docker/key.json",
    "/run/docker/plugins",
    "/run/docker",
    // containerd shims' sockets (always under /run/containerd/s in 1.6) and ctr's default fifos.
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd",
];

/// The workspace's `target/` directory (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    p.canonicalize().unwrap_or(p)
}

/// The runtime binary the engines drive: `CRABCAN_ENGINE_RUNTIME`, or the workspace's
/// `target/debug/crabcan` (built by `cargo build -p crabcan-cli`; these tests build nothing).
pub fn runtime() -> PathBuf {
    let (path, whence) = match std::env::var_os("CRABCAN_ENGINE_RUNTIME") {
        Some(p) => (PathBuf::from(p), "CRABCAN_ENGINE_RUNTIME"),
        None => (target_dir().join("debug/crabcan"), "the default"),
    };
    let path = absolute(path);
    assert!(
        path.is_file(),
        "runtime {} ({whence}) does not exist: run `cargo build -p crabcan-cli` first, or set \
         CRABCAN_ENGINE_RUNTIME (cargo xtask engines does both)",
        path.display()
    );
    path
}

/// Where the runtime keeps container state when an engine gives it no `--root` (podman):
/// `CRABCAN_ENGINE_RUNTIME_ROOT`, else runc's and crun's defaults by name, else crabcan's.
pub fn runtime_default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("CRABCAN_ENGINE_RUNTIME_ROOT") {
        return PathBuf::from(r);
    }
    let rt = runtime();
    match rt.file_name().and_then(|n| n.to_str()) {
        Some("runc") => PathBuf::from("/run/runc"),
        Some("crun") => PathBuf::from("/run/crun"),
        _ => PathBuf::from("/run/crabcan"),
    }
}

/// The busybox root the images are made from: `CRABCAN_TEST_ROOTFS` or `target/test-rootfs`
/// (`cargo xtask rootfs target/test-rootfs` builds it; `cargo xtask engines` does it first).
pub fn rootfs() -> PathBuf {
    let dir = match std::env::var_os("CRABCAN_TEST_ROOTFS") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("test-rootfs"),
    };
    assert!(
        dir.join("bin/busybox").is_file(),
        "{} has no bin/busybox: run `cargo xtask rootfs target/test-rootfs` first",
        dir.display()
    );
    absolute(dir)
}

/// The mount points of every cgroup hierarchy (v1 controllers and the v2 mount).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            if fstype == "cgroup" || fstype == "cgroup2" {
                pre.split(' ').nth(4).map(PathBuf::from)
            } else {
                None
            }
        })
        .collect()
}

/// Every directory of the cgroup `name` (a path relative to a hierarchy's root) and below it
/// in every hierarchy, hierarchy by hierarchy, each deepest first: the order in which they
/// can be removed.
pub fn cgroup_trees(name: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for m in cgroup_mounts() {
        let mut dirs = Vec::new();
        walk_dirs(&m.join(name), &mut |p| dirs.push(p.to_path_buf()));
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        all.extend(dirs);
    }
    all
}

/// Removes the [`cgroup_trees`] of `name`; returns the directories that could not be removed.
pub fn remove_cgroup_trees(name: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for d in cgroup_trees(name) {
        // A cgroup emptied a moment ago may still be busy while its last task is reaped:
        // retry briefly.
        let mut gone = false;
        for _ in 0..50 {
            if fs::remove_dir(&d).is_ok() || !d.exists() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !gone {
            left.push(d);
        }
    }
    left
}

/// Detaches every mount whose mount point starts with one of `prefixes`, deepest first, so
/// that removing the directories above them never reaches into a container's root; returns
/// the mount points.
pub fn detach_mounts_under(prefixes: &[&str]) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| prefixes.iter().any(|pre| p.starts_with(pre)))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    points
}

/// The cgroup of `pid` in the hierarchy that has `controller` (v1), or its v2 cgroup when no v1
/// hierarchy has it, as a directory under /sys/fs/cgroup.
pub fn cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            let mount = cgroup_mounts().into_iter().find(|m| {
                m.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split(',').any(|c| c == controller))
            })?;
            return Some(mount.join(path.trim_start_matches('/')));
        }
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let v2 = v2?;
    let mount = cgroup_mounts().into_iter().find(|m| {
        fs::read_to_string(m.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
    })?;
    Some(mount.join(v2.trim_start_matches('/')))
}

/// Whether the freezer holds `pid`'s cgroup frozen (v1 `freezer.state`, v2 `cgroup.freeze`).
pub fn frozen(pid: u32) -> Option<bool> {
    if let Some(dir) = cgroup_dir(pid, "freezer") {
        let state = fs::read_to_string(dir.join("freezer.state")).ok()?;
        return Some(state.trim() == "FROZEN");
    }
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = cgroup_mounts()
        .into_iter()
        .find(|m| m.join("cgroup.controllers").exists())?;
    let f = fs::read_to_string(
        mount
            .join(path.trim_start_matches('/'))
            .join("cgroup.freeze"),
    )
    .ok()?;
    Some(f.trim() == "1")
}

/// The pids limit of `pid`'s cgroup, as the file says it (`max` or a number).
pub fn pids_max(pid: u32) -> Option<String> {
    let dir = cgroup_dir(pid, "pids")?;
    fs::read_to_string(dir.join("pids.max"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The containerd shim socket for container `id` in namespace `ns` of the containerd at
/// `address`: containerd 1.6 names it by the SHA-256 of `address/ns/id`.
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    let key = format!("{}/{ns}/{id}", address.display());
    // sha256sum reads the key from a pipe fed by a shell builtin, so no temporary file.
    let out = crate::bounded::output(
        Command::new("sh")
            .arg("-c")
            .arg("printf %s \"$1\" | sha256sum")
            .arg("sh")
            .arg(&key),
    );
    let hex = out.ok().split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(hex.len(), 64, "sha256sum printed {:?}", out.stdout);
    PathBuf::from("/run/containerd/s").join(hex)
}

/// One test's private directory, cgroup parent name and record of what it created.
pub struct Scope {
    /// The test's name, for messages.
    pub name: String,
    /// Private state of every engine of the test: `target/engine-tests/<name>-<pid>`.
    pub dir: PathBuf,
    /// A short directory for state whose paths must stay short (podman's runroot: its exit
    /// command refuses one longer than 50 characters): `/run/cet-<pid>`.
    pub run: PathBuf,
    /// A name unique to this test: the cgroup parent of its containers and its ctr namespace.
    pub tag: String,
    ids: RefCell<Vec<String>>,
    sockets: RefCell<Vec<PathBuf>>,
    state_roots: RefCell<Vec<PathBuf>>,
    pids: RefCell<Vec<u32>>,
    absent_before: Vec<PathBuf>,
    concluded: RefCell<bool>,
    _one: MutexGuard<'static, ()>,
}

impl Scope {
    /// Takes the host for the test `name`: makes its private directory and notes which of
    /// the engines' host paths already exist.
    pub fn new(name: &str) -> Scope {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        if !nix::unistd::Uid::effective().is_root() {
            panic!("engine tests need root: they start podman, containerd and dockerd");
        }
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let pid = std::process::id();
        let dir = target_dir()
            .join("engine-tests")
            .join(format!("{short}-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let dir = absolute(dir);
        let run = PathBuf::from(format!("/run/cet-{pid}"));
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap_or_else(|e| panic!("cannot create {}: {e}", run.display()));
        Scope {
            run,
            name: name.to_string(),
            tag: format!("crabcan-et-{short}-{pid}"),
            dir,
            ids: RefCell::new(Vec::new()),
            sockets: RefCell::new(Vec::new()),
            state_roots: RefCell::new(vec![runtime_default_root()]),
            pids: RefCell::new(Vec::new()),
            // The runtime makes its default root when an engine gives it none (podman).
            absent_before: ENGINE_HOST_PATHS
                .iter()
                .map(PathBuf::from)
                .chain([runtime_default_root()])
                .filter(|p| !p.exists())
                .collect(),
            concluded: RefCell::new(false),
            _one: one,
        }
    }

    /// A path under the private directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Records a container id the test created: nothing named after it may remain.
    pub fn track_id(&self, id: &str) {
        let id = id.trim().to_string();
        assert!(
            !id.is_empty(),
            "{}: an engine reported an empty container id",
            self.name
        );
        let mut ids = self.ids.borrow_mut();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// The container ids recorded so far.
    pub fn ids(&self) -> Vec<String> {
        self.ids.borrow().clone()
    }

    /// Records a shim socket that must be gone at the end.
    pub fn track_socket(&self, path: PathBuf) {
        self.sockets.borrow_mut().push(path);
    }

    /// Records a directory where the runtime keeps one entry per container id.
    pub fn track_state_root(&self, path: PathBuf) {
        self.state_roots.borrow_mut().push(path);
    }

    /// Records a daemon's pid: it is killed if the test dies before stopping it.
    pub fn track_pid(&self, pid: u32) {
        self.pids.borrow_mut().push(pid);
    }

    /// Everything the test's containers left on the host, one line each.
    pub fn leftovers(&self) -> Vec<String> {
        let ids = self.ids();
        let dir = self.dir.to_string_lossy().into_owned();
        let run = format!("{}/", self.run.display());
        let mut found = Vec::new();
        // Mounts: anything under the private directories or named after a container.
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in info.lines() {
            let point = l.split(' ').nth(4).unwrap_or("");
            if point.starts_with(&dir)
                || point.starts_with(&run)
                || ids.iter().any(|id| point.contains(id.as_str()))
            {
                found.push(format!("mount {point}"));
            }
        }
        // Processes: any that names the private directory or a container, or sits in the
        // scope's cgroups.
        let me = std::process::id();
        for pid in all_pids().into_iter().filter(|p| *p != me) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let in_scope = cg.lines().any(|l| {
                l.split(':')
                    .nth(2)
                    .is_some_and(|p| p.split('/').any(|c| c == self.tag))
            });
            if cmd.contains(&dir)
                || cmd.contains(&run)
                || ids.iter().any(|id| cmd.contains(id.as_str()))
                || in_scope
            {
                found.push(format!("process {pid}: {}", cmd.trim()));
            }
        }
        // Cgroups named after a container, in any hierarchy.
        for m in cgroup_mounts() {
            walk_dirs(&m.join(&self.tag), &mut |p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if ids.iter().any(|id| name.contains(id.as_str())) {
                    found.push(format!("cgroup {}", p.display()));
                }
            });
        }
        for s in self.sockets.borrow().iter() {
            if fs::symlink_metadata(s).is_ok() {
                found.push(format!("shim socket {}", s.display()));
            }
        }
        for root in self.state_roots.borrow().iter() {
            for id in &ids {
                let p = root.join(id);
                if fs::symlink_metadata(&p).is_ok() {
                    found.push(format!("runtime state {}", p.display()));
                }
            }
        }
        // Any path in the engines' private state still named after a container (bundles,
        // storage, exec roots): the engines remove theirs once the runtime's delete succeeded.
        for top in [&self.dir, &self.run] {
            walk_all(top, &mut |p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if ids.iter().any(|id| name == id.as_str()) {
                    found.push(format!("state {}", p.display()));
                }
            });
        }
        found
    }

    /// Ends the test: collects the leftovers, then cleans up (the private directory, the
    /// cgroup parents the engines made for the scope, the engines' host paths that were absent
    /// before) and fails the test naming what was left, if anything was.
    #[track_caller]
    pub fn conclude(&self) {
        *self.concluded.borrow_mut() = true;
        // Engines finish some work after their command returned (conmon and podman's cleanup
        // exit after `podman rm`, a shim after its delete): give them a bounded moment.
        let deadline = std::time::Instant::now() + SETTLE;
        let mut left = self.leftovers();
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers();
        }
        left.extend(self.clean());
        assert!(
            left.is_empty(),
            "{}: left behind on the host:\n  {}",
            self.name,
            left.join("\n  ")
        );
    }

    /// Removes everything of the scope's, including what a faulty runtime left (its processes
    /// are killed, its sockets and state removed); returns what could not be removed.
    fn clean(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for _ in 0..5 {
            let strays: Vec<u32> = self
                .leftovers()
                .iter()
                .filter_map(|l| l.strip_prefix("process "))
                .filter_map(|l| l.split(':').next()?.parse().ok())
                .collect();
            if strays.is_empty() {
                break;
            }
            for pid in strays {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for s in self.sockets.borrow().iter() {
            if fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = fs::remove_file(s);
            }
        }
        for root in self.state_roots.borrow().iter() {
            for id in self.ids() {
                let _ = fs::remove_dir_all(root.join(id));
            }
        }
        // The private directory may hold sockets and fifos only; a mount under it (a crash
        // mid-test) is detached first so removal never reaches into a container's root.
        let dir = self.dir.to_string_lossy().into_owned();
        let run = format!("{}/", self.run.display());
        detach_mounts_under(&[&dir, &run]);
        for d in [&self.dir, &self.run] {
            if let Err(e) = fs::remove_dir_all(d)
                && d.exists()
            {
                failed.push(format!("cannot remove {}: {e}", d.display()));
            }
        }
        for d in remove_cgroup_trees(&self.tag) {
            failed.push(format!("cgroup {} cannot be removed (busy)", d.display()));
        }
        for path in &self.absent_before {
            match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(path);
                }
                Ok(_) => {
                    let _ = fs::remove_file(path);
                }
                Err(_) => {}
            }
        }
        failed
    }
}

impl Drop for Scope {
    /// A test that failed midway still leaves nothing: its daemons and every process of its
    /// scope are killed, then everything is removed. Nothing here may panic.
    fn drop(&mut self) {
        if *self.concluded.borrow() {
            return;
        }
        for pid in self.pids.borrow().iter() {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let left = self.clean();
        if !left.is_empty() {
            eprintln!(
                "{}: after a failure, still left: {}",
                self.name,
                left.join("; ")
            );
        }
    }
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Calls `f` on `top` and every directory below it (not following symlinks).
fn walk_dirs(top: &Path, f: &mut dyn FnMut(&Path)) {
    if !fs::symlink_metadata(top).is_ok_and(|m| m.is_dir()) {
        return;
    }
    f(top);
    if let Ok(d) = fs::read_dir(top) {
        for e in d.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_dirs(&e.path(), f);
            }
        }
    }
}

/// Calls `f` on every entry below `top` (not following symlinks, not crossing into a
/// container's root filesystem: `rootfs` and image layer directories are not entered).
fn walk_all(top: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(d) = fs::read_dir(top) else {
        return;
    };
    for e in d.flatten() {
        let p = e.path();
        f(&p);
        let name = e.file_name();
        let skip = matches!(name.to_str(), Some("rootfs" | "diff" | "merged" | "layers"));
        if !skip && e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_all(&p, f);
        }
    }
}
