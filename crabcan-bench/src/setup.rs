//! Everything the measurements need before the first run: the release binary, the rootfs, the
//! OCI bundle, the bind-mount sources, and the peers (installed when missing).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Serialize, Serializer};
use serde_json::json;
use xtask::rootfs;
use xtask::util::{self, Result};

use crate::oci::{self, OciRow, OciRuntime};
use crate::sys;

/// Where every bench file lives.
pub fn bench_dir() -> PathBuf {
    util::target_dir().join("bench")
}

/// Builds `crabcan` in release as a static musl binary (no dynamic loader, no glibc start-up:
/// measured 15% faster to start and half the memory) and returns the binary.
pub fn build_crabcan() -> Result<PathBuf> {
    util::ensure_musl_target()?;
    build_static("crabcan-cli", "crabcan")
}

/// Builds the floor program (`crabcan-floor`, static musl like crabcan) and returns it.
pub fn build_floor() -> Result<PathBuf> {
    build_static("crabcan-bench", "crabcan-floor")
}

/// Builds binary `bin` of `package` in release for the musl target and returns it.
fn build_static(package: &str, bin: &str) -> Result<PathBuf> {
    util::cargo_artifacts(&[
        "build",
        "--release",
        "--target",
        util::MUSL,
        "-p",
        package,
        "--bin",
        bin,
    ])?
    .into_iter()
    .find(|a| a.name == bin && a.kind == "bin" && !a.test)
    .and_then(|a| a.executable)
    .ok_or_else(|| format!("cargo built no {bin} executable"))
}

/// Mount points of the growth runs live below this directory of the rootfs.
pub const BIND_DIR_IN_ROOT: &str = "mnt/bench";

/// Name of the `i`-th bind mount's source and mount point.
pub fn bind_name(i: usize) -> String {
    format!("b{i:04}")
}

/// The busybox rootfs, with `count` mount points pre-created so the growth runs measure only
/// mounting (crabcan would otherwise create and remove them on every run).
pub fn rootfs(count: usize) -> Result<PathBuf> {
    let dir = bench_dir().join("rootfs");
    rootfs::ensure(&dir)?;
    let mnt = dir.join(BIND_DIR_IN_ROOT);
    for i in 0..count {
        util::mkdir_p(&mnt.join(bind_name(i)))?;
    }
    Ok(dir)
}

/// `count` small host directories to bind, each holding one short file.
pub fn bind_sources(count: usize) -> Result<PathBuf> {
    let dir = bench_dir().join("binds");
    for i in 0..count {
        let sub = dir.join(bind_name(i));
        let file = sub.join("id");
        if !file.is_file() {
            util::mkdir_p(&sub)?;
            fs::write(&file, format!("{i}\n"))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        }
    }
    Ok(dir)
}

/// Writes a `runc spec`-style bundle over `rootfs`: `/bin/true`, no terminal, writable root, the
/// same namespaces crabcan creates (user with the identity map root gets, pid, network, ipc,
/// uts, mount, cgroup), the usual mounts, masked and read-only paths and default capabilities.
pub fn bundle(rootfs: &Path) -> Result<PathBuf> {
    bundle_running(rootfs, "bundle", &["/bin/true"])
}

/// The same bundle as [`bundle`] in `bench_dir()/name`, running `args`.
pub fn bundle_running(rootfs: &Path, name: &str, args: &[&str]) -> Result<PathBuf> {
    let dir = bench_dir().join(name);
    util::mkdir_p(&dir)?;
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let config = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs.to_string_lossy(), "readonly": false },
        "hostname": "bench",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "uidMappings": [{ "containerID": 0, "hostID": 0, "size": 65536 }],
            "gidMappings": [{ "containerID": 0, "hostID": 0, "size": 65536 }],
            "namespaces": [
                { "type": "user" }, { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::write(&path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(dir)
}

/// What starts the container in a measured run: a runtime, or a floor program that does only
/// the least a start needs (the report's "runtime" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starter {
    Crabcan,
    Bwrap,
    Crun,
    Runc,
    Floor,
    /// `crabcan-floor`: the minimum of crabcan's default run (see its source).
    MinFloor,
    /// `crabcan-floor --cgroups`: the same plus crabcan's cgroup work.
    MinFloorCgroups,
    /// `crabcan-floor --full`: the same plus the rest of the kernel work of crabcan's
    /// default run (mounts, masks, hostname, loopback, capabilities, seccomp).
    MinFloorAll,
}

impl Starter {
    /// Every runtime, crabcan first.
    pub const ALL: [Starter; 8] = [
        Starter::Crabcan,
        Starter::Bwrap,
        Starter::Crun,
        Starter::Runc,
        Starter::Floor,
        Starter::MinFloor,
        Starter::MinFloorCgroups,
        Starter::MinFloorAll,
    ];

    /// Short name used in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Starter::Crabcan => "crabcan",
            Starter::Bwrap => "bwrap",
            Starter::Crun => "crun",
            Starter::Runc => "runc",
            Starter::Floor => "unshare-floor",
            Starter::MinFloor => "floor",
            Starter::MinFloorCgroups => "floor+cgroups",
            Starter::MinFloorAll => "floor+all",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Starter::Crabcan => "crabcan",
            Starter::Bwrap => "bwrap",
            Starter::Crun => "crun",
            Starter::Runc => "runc",
            Starter::Floor => "unshare",
            Starter::MinFloor | Starter::MinFloorCgroups | Starter::MinFloorAll => "crabcan-floor",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Starter::Crabcan => "crabcan",
            Starter::Bwrap => "bubblewrap",
            Starter::Crun => "crun",
            Starter::Runc => "runc",
            Starter::Floor => "util-linux",
            Starter::MinFloor | Starter::MinFloorCgroups | Starter::MinFloorAll => "crabcan-floor",
        }
    }

    /// A floor program of ours rather than a runtime found on the host.
    fn is_ours(self) -> bool {
        matches!(
            self,
            Starter::MinFloor | Starter::MinFloorCgroups | Starter::MinFloorAll
        )
    }
}

impl Serialize for Starter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A runtime ready to be run: its binary and how to build each run's command line.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub starter: Starter,
    pub program: PathBuf,
    pub rootfs: PathBuf,
    bundle: PathBuf,
    state: PathBuf,
    /// The mount namespace crun runs in on a hybrid cgroup host (made once, entered by each run).
    pub crun_ns: Option<std::sync::Arc<sys::HeldNamespace>>,
}

impl Runtime {
    /// The command line, with `id` as the container id of runc and crun.
    fn argv(&self, id: &str) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        match self.starter {
            Starter::Crabcan => {
                v.extend(["run".into(), "--mount".into(), self.rootfs.clone().into()]);
                v.extend(["--".into(), "/bin/true".into()]);
            }
            Starter::Bwrap => {
                v.extend(["--unshare-all".into(), "--bind".into()]);
                v.extend([self.rootfs.clone().into(), "/".into()]);
                v.extend(["--proc", "/proc", "--dev", "/dev", "/bin/true"].map(OsString::from));
            }
            Starter::Crun | Starter::Runc => {
                v.extend(["--root".into(), self.state.clone().into(), "run".into()]);
                v.extend(["--bundle".into(), self.bundle.clone().into(), id.into()]);
            }
            Starter::Floor => {
                v.extend(
                    [
                        "--user",
                        "--map-root-user",
                        "--mount",
                        "--uts",
                        "--ipc",
                        "--net",
                        "--pid",
                        "--cgroup",
                        "--fork",
                    ]
                    .map(OsString::from),
                );
                v.extend([
                    "--root".into(),
                    self.rootfs.clone().into(),
                    "/bin/true".into(),
                ]);
            }
            Starter::MinFloor => {
                v.extend([self.rootfs.clone().into(), "/bin/true".into()]);
            }
            Starter::MinFloorCgroups => {
                v.push("--cgroups".into());
                v.extend([self.rootfs.clone().into(), "/bin/true".into()]);
            }
            Starter::MinFloorAll => {
                v.push("--full".into());
                v.extend([self.rootfs.clone().into(), "/bin/true".into()]);
            }
        }
        v
    }

    /// The command for run `seq`, with extra arguments inserted before crabcan's `--`.
    pub fn command(&self, seq: u64, extra: &[OsString]) -> Command {
        // runc and crun need a fresh container id on every run.
        let mut argv = self.argv(&format!("crabcan-bench-{}-{seq}", std::process::id()));
        if let Some(pos) = argv.iter().position(|a| a == "--") {
            argv.splice(pos..pos, extra.iter().cloned());
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(ns) = &self.crun_ns {
            ns.enter(&mut cmd);
        } else {
            sys::use_fork(&mut cmd);
        }
        cmd
    }

    /// A human-readable form of the command line, for the report.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.crun_ns.is_some() {
            s.push_str("[one private mount ns, /sys/fs/cgroup/unified unmounted] ");
        }
        s.push_str(self.starter.program());
        for a in self.argv("ID") {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s.replace(&*util::target_dir().to_string_lossy(), "target")
    }

    /// Runs it once with stderr captured; the last line of stderr when it fails.
    pub fn probe(&self, seq: u64) -> std::result::Result<(), String> {
        let mut cmd = self.command(seq, &[]);
        cmd.stderr(Stdio::piped());
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{} ({})", util::last_line(&out.stderr), out.status))
        }
    }
}

/// A runtime that could not be measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    #[serde(rename = "runtime")]
    pub starter: Starter,
    pub why: String,
}

/// Looks for an executable `name` on PATH (plus the sbin directories root's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        util::output(&mut cmd).map(|_| ())
    };
    if install().is_ok() {
        return Ok(());
    }
    // The usual cause is stale or missing package lists; refreshing them installs nothing.
    util::output(Command::new("apt-get").args(["update", "-q"]))?;
    install()
}

/// Whether the host mounts cgroup v2 beside v1 at `/sys/fs/cgroup/unified` (crun refuses that).
fn hybrid_cgroups() -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/unified"))
    })
}

/// Finds (installing when allowed) and probes every runtime. crabcan itself must work; a peer
/// that is missing or fails is reported with the reason instead.
pub fn runtimes(
    crabcan: &Path,
    floor: &Path,
    rootfs: &Path,
    bundle: &Path,
    install: bool,
) -> Result<(Vec<Runtime>, Vec<Skipped>)> {
    let state = bench_dir().join("state");
    let missing: Vec<Starter> = Starter::ALL[1..]
        .iter()
        .copied()
        .filter(|k| !k.is_ours() && which(k.program()).is_none())
        .collect();
    let mut install_error = None;
    if install && !missing.is_empty() {
        let packages: Vec<&str> = missing.iter().map(|k| k.package()).collect();
        println!("installing {} from Debian …", packages.join(" "));
        if let Err(e) = apt_install(&packages) {
            install_error = Some(e);
        }
    }
    let mut ready = Vec::new();
    let mut skipped = Vec::new();
    let crun_ns = if hybrid_cgroups() {
        let ns = sys::HeldNamespace::without_unified_cgroup()
            .map_err(|e| format!("cannot make crun's mount namespace: {e}"))?;
        Some(std::sync::Arc::new(ns))
    } else {
        None
    };
    for starter in Starter::ALL {
        let program = match starter {
            Starter::Crabcan => Some(crabcan.to_path_buf()),
            _ if starter.is_ours() => Some(floor.to_path_buf()),
            _ => which(starter.program()),
        };
        let Some(program) = program else {
            let why = match (&install_error, install) {
                (_, false) => format!("{} is not installed (--no-install)", starter.program()),
                (Some(e), true) => format!("cannot install {}: {e}", starter.package()),
                (None, true) => format!("{} not found after installing", starter.program()),
            };
            skipped.push(Skipped { starter, why });
            continue;
        };
        let rt = Runtime {
            starter,
            program,
            rootfs: rootfs.to_path_buf(),
            bundle: bundle.to_path_buf(),
            state: state.join(starter.program()),
            crun_ns: if starter == Starter::Crun {
                crun_ns.clone()
            } else {
                None
            },
        };
        match rt.probe(0) {
            Ok(()) => ready.push(rt),
            Err(why) if starter == Starter::Crabcan => {
                return Err(format!("crabcan cannot run /bin/true: {why}"));
            }
            Err(why) => skipped.push(Skipped {
                starter,
                why: format!("fails: {why}"),
            }),
        }
    }
    Ok((ready, skipped))
}

/// The runtimes with runc's command line: runc and crun as found, and crabcan when its binary
/// has the OCI commands (otherwise a row that says so).
pub fn oci_runtimes(runtimes: &[Runtime]) -> (Vec<OciRuntime>, Vec<OciRow>) {
    let state = bench_dir().join("state");
    let mut ready = Vec::new();
    let mut missing = Vec::new();
    for rt in runtimes {
        let name = match rt.starter {
            Starter::Crabcan => "crabcan",
            Starter::Runc => "runc",
            Starter::Crun => "crun",
            _ => continue,
        };
        let has_exec = if rt.starter == Starter::Crabcan {
            match oci::crabcan_support(&rt.program) {
                (false, _) => {
                    missing.push(oci::not_built(
                        name,
                        "not built yet: this crabcan has no create/start/delete \
                         (pending the OCI commands)",
                    ));
                    continue;
                }
                (true, exec) => exec,
            }
        } else {
            true
        };
        ready.push(OciRuntime {
            name,
            program: rt.program.clone(),
            state: state.join(format!("oci-{name}")),
            ns: rt.crun_ns.clone(),
            has_exec,
        });
    }
    (ready, missing)
}

/// Deletes any container a runtime still lists in the bench state, then the state itself.
pub fn cleanup_state(oci: &[OciRuntime]) -> Vec<String> {
    let mut problems = Vec::new();
    let state = bench_dir().join("state");
    for rt in oci {
        if !rt.state.is_dir() {
            continue;
        }
        let ids = match util::output(
            rt.cmd(&["list", "-q"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        ) {
            Ok(out) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => {
                problems.push(format!("cannot list {} containers: {e}", rt.name));
                continue;
            }
        };
        for id in ids.split_whitespace() {
            problems.push(format!(
                "{} left container {id} behind; deleting it",
                rt.name
            ));
            if let Err(e) = util::output(rt.cmd(&["delete", "--force", id]).stderr(Stdio::piped()))
            {
                problems.push(format!("cannot delete {} container {id}: {e}", rt.name));
            }
        }
    }
    for starter in [Starter::Runc, Starter::Crun] {
        let root = state.join(starter.program());
        let Some(program) = which(starter.program()) else {
            continue;
        };
        if !root.is_dir() {
            continue;
        }
        let mut list = Command::new(&program);
        list.arg("--root").arg(&root).args(["list", "-q"]);
        if starter == Starter::Crun && hybrid_cgroups() {
            sys::without_unified_cgroup(&mut list);
        }
        let ids = match util::output(&mut list) {
            Ok(out) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => {
                problems.push(format!("cannot list {} containers: {e}", starter.program()));
                continue;
            }
        };
        for id in ids.split_whitespace() {
            problems.push(format!(
                "{} left container {id} behind; deleting it",
                starter.program()
            ));
            let mut del = Command::new(&program);
            del.arg("--root").arg(&root).args(["delete", "--force", id]);
            if starter == Starter::Crun && hybrid_cgroups() {
                sys::without_unified_cgroup(&mut del);
            }
            if let Err(e) = util::output(&mut del) {
                problems.push(format!(
                    "cannot delete {} container {id}: {e}",
                    starter.program()
                ));
            }
        }
    }
    if let Err(e) = util::remove_all(&state) {
        problems.push(e);
    }
    problems
}
