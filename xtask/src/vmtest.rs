//! `cargo xtask vm-test [-- FILTER…]`: the test suite, as root, in a QEMU guest whose kernel and
//! cgroup v2 hierarchy belong to the tests alone.
//!
//! Everything the VM needs comes from Debian packages unpacked (never installed) under
//! `target/vm-cache/`; each run's files live in `target/vm-test/`. The guest kernel comes from
//! the host release's backports suite, through an apt configuration of our own in that cache,
//! since the tests need a kernel whose tmpfs takes idmapped mounts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::rootfs;
use crate::util::{self, Result};

/// The guest's `/init`.
const INIT: &str = include_str!("../guest/init.sh");

/// Where the guest finds what the host built (the init script knows these paths too).
const GUEST_OPT: &str = "opt/crabcan";

/// Long enough for a slow emulated run of the whole suite (about 20 minutes on one emulated
/// CPU, more while the host suite runs beside it in CI); a hung guest must still end.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// QEMU's exit statuses for the bytes the guest writes to the isa-debug-exit port.
const QEMU_PASS: i32 = (0x10 << 1) | 1;
const QEMU_FAIL: i32 = (0x11 << 1) | 1;

const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
];

/// Runs the suite in the guest; `Ok(true)` only if every test binary passed.
pub fn run(libtest_args: &[String]) -> Result<bool> {
    pack_guest(libtest_args)?.boot(true)
}

/// Everything built and packed for the guest, ready to boot.
pub struct PackedGuest {
    started: Instant,
    work: PathBuf,
    kernel: PathBuf,
    qemu: Qemu,
    initrd: PathBuf,
    /// The names the guest must report a result for, in order.
    expected: Vec<String>,
}

/// Builds the test binaries, crabcan and the guest's initramfs (the part that needs both of
/// the host's cores); [`PackedGuest::boot`] then runs them.
pub fn pack_guest(libtest_args: &[String]) -> Result<PackedGuest> {
    let started = Instant::now();
    let target = util::target_dir();
    let cache = target.join("vm-cache");
    let work = target.join("vm-test");
    util::mkdir_p(&work)?;

    let kernel = kernel(&cache)?;
    let qemu = Qemu::ensure(&cache)?;
    let script = match std::env::var_os("XTASK_VM_SCRIPT") {
        Some(p) => Some(fs::read_to_string(&p).map_err(|e| {
            format!(
                "cannot read XTASK_VM_SCRIPT={}: {e}",
                Path::new(&p).display()
            )
        })?),
        None => None,
    };
    let tests = build_tests()?;
    let crabcan = util::build_musl_bin("crabcan-cli", "crabcan", false)
        .map_err(|e| format!("cannot build crabcan for the guest: {e}"))?;
    let floor = util::build_musl_bin("crabcan-bench", "crabcan-floor", false)
        .map_err(|e| format!("cannot build crabcan-floor for the guest: {e}"))?;
    let guest_rootfs = work.join("rootfs");
    rootfs::ensure(&guest_rootfs)?;
    let initrd = initramfs(
        &work,
        &Payload {
            workspace: &util::workspace_root(),
            tests: &tests,
            crabcan: &crabcan,
            floor: &floor,
            rootfs: &guest_rootfs,
            libtest_args,
            script: script.as_deref(),
        },
    )?;
    let expected = script
        .as_ref()
        .map(|_| "script".to_string())
        .into_iter()
        .chain(tests.iter().map(|t| t.name.clone()))
        .collect();
    Ok(PackedGuest {
        started,
        work,
        kernel,
        qemu,
        initrd,
        expected,
    })
}

impl PackedGuest {
    /// Boots the guest and waits for its verdict; `echo` streams the guest's output as it
    /// comes, otherwise it is printed at the end (when the host suite runs meanwhile).
    pub fn boot(self, echo: bool) -> Result<bool> {
        let (started, work, kernel, qemu, initrd, expected) = (
            self.started,
            &self.work,
            &self.kernel,
            &self.qemu,
            &self.initrd,
            &self.expected,
        );
        let timeout = match std::env::var("XTASK_VM_TIMEOUT") {
            Ok(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| format!("XTASK_VM_TIMEOUT={s} is not a number of seconds"))?,
            ),
            Err(_) => DEFAULT_TIMEOUT,
        };
        let booted = Instant::now();
        let outcome = qemu.boot(kernel, initrd, work, timeout, echo);
        // Rebuilt on every run, and large: no reason to keep it.
        let _ = fs::remove_file(initrd);
        let outcome = outcome?;
        if !echo {
            print!("{}", outcome.results);
            if !outcome.results.is_empty() && !outcome.results.ends_with('\n') {
                println!();
            }
        }
        let vm_secs = booted.elapsed().as_secs_f64();
        let secs = started.elapsed().as_secs_f64();

        let results = parse_results(&outcome.results);
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, rc)| rc != "0")
            .map(|(n, rc)| format!("{n} (exit {rc})"))
            .collect();
        let count = expected.iter().filter(|n| *n != "script").count();
        let timing = format!("in {secs:.1} s (VM {vm_secs:.1} s)");
        let problem = match outcome.end {
            End::Status(QEMU_PASS) if failed.is_empty() && results.len() == expected.len() => {
                println!("vm-test: {count} test binaries, all passed {timing}");
                return Ok(true);
            }
            End::Status(QEMU_PASS) | End::Status(QEMU_FAIL) if !failed.is_empty() => {
                format!(
                    "{} of {count} test binaries failed: {}",
                    failed.len(),
                    failed.join(", ")
                )
            }
            End::Status(QEMU_PASS) | End::Status(QEMU_FAIL) => {
                let missing: Vec<&str> = expected
                    .iter()
                    .filter(|n| !results.iter().any(|(r, _)| r == *n))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    "the guest reported a failure outside the tests (see the output above)"
                        .to_string()
                } else {
                    format!("the guest reported no result for {}", missing.join(", "))
                }
            }
            End::TimedOut => format!(
                "killed QEMU after the {} s timeout{}",
                timeout.as_secs(),
                running_at_end(&outcome.results)
                    .map(|n| format!(" while {n} was running"))
                    .unwrap_or_default()
            ),
            End::Status(0) => match panic_line(&work.join("console.log")) {
                Some(line) => format!("the guest kernel panicked: {line}"),
                None => "the guest stopped without a verdict".to_string(),
            },
            End::Status(code) => format!(
                "QEMU exited with status {code}: {}",
                util::last_line(&fs::read(work.join("qemu.stderr")).unwrap_or_default())
            ),
            End::Signal(status) => format!("QEMU died: {status}"),
        };
        println!("vm-test: FAILED {timing}: {problem}");
        println!(
            "vm-test: guest console log: {}",
            work.join("console.log").display()
        );
        Ok(false)
    }
}

/// The pairs (binary, exit status) the guest reported.
fn parse_results(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim_end().strip_prefix("vm-test: result "))
        .filter_map(|rest| {
            let (name, rc) = rest.rsplit_once(' ')?;
            Some((name.to_string(), rc.to_string()))
        })
        .collect()
}

/// The binary that started last and never reported a result.
fn running_at_end(text: &str) -> Option<String> {
    let last = text
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("vm-test: running "))
        .next_back()?;
    let finished = parse_results(text).iter().any(|(n, _)| n == last);
    (!finished).then(|| last.to_string())
}

fn panic_line(console: &Path) -> Option<String> {
    let text = fs::read(console).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| l.contains("Kernel panic"))
        .map(|l| l.trim().to_string())
}

/// One test harness to run in the guest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct TestBin {
    /// Its file name in the guest, unique and shell-safe.
    name: String,
    exe: PathBuf,
    /// The directory `cargo test` would run it in (its package's).
    dir: PathBuf,
}

/// Builds every test harness of the workspace as a static binary.
fn build_tests() -> Result<Vec<TestBin>> {
    util::ensure_musl_target()?;
    let artifacts =
        // Line tables keep backtraces readable at a fraction of full debug info's size: the
        // binaries are packed into the initramfs, and its size is paid at every boot.
        util::cargo_artifacts(&[
            "test",
            "--workspace",
            "--no-run",
            "--target",
            util::MUSL,
            "--config",
            "profile.dev.debug=\"line-tables-only\"",
        ])
            .map_err(|e| format!("cannot build the tests: {e}"))?;
    let mut tests: Vec<TestBin> = Vec::new();
    for a in artifacts {
        let Some(exe) = a.executable.filter(|_| a.test) else {
            continue;
        };
        // Library tests keep the crate's name; others say what they are (`test-run`, `bin-crabcan`).
        let base = if a.kind == "lib" {
            a.name.clone()
        } else {
            format!("{}-{}", a.kind, a.name)
        };
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while tests.iter().any(|t| t.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let dir = a.package_dir.unwrap_or_else(util::workspace_root);
        tests.push(TestBin { name, exe, dir });
    }
    if tests.is_empty() {
        return Err("cargo built no test executables".to_string());
    }
    tests.sort();
    Ok(tests)
}

/// What goes into the guest besides busybox and the init script.
struct Payload<'a> {
    workspace: &'a Path,
    tests: &'a [TestBin],
    crabcan: &'a Path,
    /// The floor program the benchmark compares crabcan with (its tests run in the guest).
    floor: &'a Path,
    rootfs: &'a Path,
    libtest_args: &'a [String],
    script: Option<&'a str>,
}

/// Copies a tree, keeping modes and symlinks; top-level entries named in `skip` stay behind.
fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) -> Result<()> {
    let meta =
        fs::symlink_metadata(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let to = fs::read_link(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        symlink(&to, dst).map_err(|e| format!("cannot link {}: {e}", dst.display()))
    } else if ft.is_dir() {
        util::mkdir_p(dst)?;
        let entries =
            fs::read_dir(src).map_err(|e| format!("cannot list {}: {e}", src.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", src.display()))?;
            if skip.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            copy_tree(&entry.path(), &dst.join(entry.file_name()), &[])?;
        }
        util::chmod(dst, meta.mode() & 0o7777)
    } else if ft.is_file() {
        fs::copy(src, dst)
            .map(|_| ())
            .map_err(|e| format!("cannot copy {}: {e}", src.display()))
    } else {
        // Sockets and fifos in a source tree are leftovers of some tool, not test inputs.
        Ok(())
    }
}

/// Lists a tree's paths relative to `root`, each directory before its contents.
fn list_tree(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        out.push(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            list_tree(root, &path, out)?;
        }
    }
    Ok(())
}

/// Stages the guest's root and packs it with busybox cpio (the host need not have cpio).
fn initramfs(work: &Path, payload: &Payload) -> Result<PathBuf> {
    let busybox = rootfs::busybox()?;
    let stage = work.join("initramfs");
    util::remove_all(&stage)?;
    // The guest's own root doubles as a host with a user 65534, like the test rootfs.
    rootfs::populate(&stage, &busybox, rootfs::Layout::MergedUsr)?;
    let write = |path: &Path, text: &str, mode: u32| -> Result<()> {
        fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        util::chmod(path, mode)
    };
    write(&stage.join("init"), INIT, 0o755)?;
    write(
        &stage.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        0o644,
    )?;
    let opt = stage.join(GUEST_OPT);
    for sub in ["bin", "tests"] {
        util::mkdir_p(&opt.join(sub))?;
    }
    util::chmod(&stage.join("opt"), 0o755)?;
    util::chmod(&opt, 0o755)?;
    util::install_file(payload.crabcan, &opt.join("bin/crabcan"), 0o755)?;
    util::install_file(payload.floor, &opt.join("bin/crabcan-floor"), 0o755)?;
    let mut list = String::new();
    for t in payload.tests {
        util::install_file(&t.exe, &opt.join("tests").join(&t.name), 0o755)?;
        let dir = t.dir.to_string_lossy();
        if dir.contains('\n') {
            return Err(format!("the test directory {dir:?} contains a newline"));
        }
        list.push_str(&format!("{} {dir}\n", t.name));
    }
    write(&opt.join("tests.txt"), &list, 0o644)?;
    copy_tree(payload.rootfs, &opt.join("rootfs"), &[])?;
    // Tests find their inputs through CARGO_MANIFEST_DIR and run in their package directory,
    // as under cargo, so the sources sit at the same path in the guest (writable: a tmpfs).
    let relative = payload
        .workspace
        .strip_prefix("/")
        .map_err(|_| format!("{} is not absolute", payload.workspace.display()))?;
    let mirror = stage.join(relative);
    copy_tree(payload.workspace, &mirror, &["target", ".git"])?;
    util::mkdir_p(&mirror.join("target"))?;
    let mut up = Some(mirror.as_path());
    while let Some(d) = up.filter(|d| *d != stage) {
        util::chmod(d, 0o755)?;
        up = d.parent();
    }
    let mut args = String::new();
    for a in payload.libtest_args {
        if a.contains('\n') {
            return Err(format!("test argument {a:?} contains a newline"));
        }
        args.push_str(a);
        args.push('\n');
    }
    write(&opt.join("args"), &args, 0o644)?;
    if let Some(script) = payload.script {
        write(&opt.join("script.sh"), script, 0o755)?;
    }

    let mut names = Vec::new();
    list_tree(&stage, Path::new(""), &mut names)?;
    let list = work.join("initramfs.list");
    let mut text = Vec::new();
    for n in &names {
        text.extend_from_slice(n.as_os_str().as_encoded_bytes());
        text.push(b'\n');
    }
    fs::write(&list, text).map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    let cpio = work.join("initramfs.cpio");
    let out = File::create(&cpio).map_err(|e| format!("cannot create {}: {e}", cpio.display()))?;
    let input = File::open(&list).map_err(|e| format!("cannot read {}: {e}", list.display()))?;
    let status = Command::new(&busybox)
        .args(["cpio", "-o", "-H", "newc", "-R", "0:0"])
        .current_dir(&stage)
        .stdin(input)
        .stdout(out)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run busybox cpio: {e}"));
    // The archive is all QEMU needs; the staged copy would only double the disk use.
    let _ = util::remove_all(&stage);
    let _ = fs::remove_file(&list);
    let status = status?;
    if !status.status.success() {
        return Err(format!(
            "cannot build the initramfs: busybox cpio failed: {}",
            util::last_line(&status.stderr)
        ));
    }
    Ok(cpio)
}

/// The oldest guest kernel the suite accepts: the test roots live on the guest's tmpfs, and
/// tmpfs supports idmapped mounts (`mount_setattr(MOUNT_ATTR_IDMAP)`) from Linux 6.3 on.
const MIN_KERNEL: (u32, u32) = (6, 3);

/// The guest's kernel command line. Debian builds x32 in but disables it unless asked; the
/// guest turns it on so that tests can check the seccomp filter's x32 rules by effect.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 rdinit=/init quiet syscall.x32=y";

/// The uncompressed kernel (a fast PVH boot), extracted once from the backports kernel package
/// of the host's Debian release (the release's own kernel is older than [`MIN_KERNEL`]).
fn kernel(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("kernel");
    let vmlinux = dir.join("vmlinux");
    if vmlinux.is_file() {
        return Ok(vmlinux);
    }
    // Where earlier versions of vm-test kept the release's own kernel, now too old.
    let _ = fs::remove_file(cache.join("vmlinux"));
    util::mkdir_p(&dir)?;
    let apt = PrivateApt::setup(&cache.join("apt"))?;

    let tmp = util::temp_sibling(&dir.join("download"), "tmp");
    util::remove_all(&tmp)?;
    util::mkdir_p(&tmp)?;
    // The package is big and the kernel is all we need from it: it goes with the folder.
    let result = apt
        .fetch_kernel(&tmp)
        .and_then(|deb| extract_vmlinux(&deb, &tmp.join("unpack"), &vmlinux));
    let _ = util::remove_all(&tmp);
    let release = result?;
    eprintln!("vm-test: guest kernel {release}");
    Ok(vmlinux)
}

/// An apt configuration of our own under `target/`: the host's Debian mirror, but the
/// release's backports suite, with its own package lists and cache. The system's sources,
/// lists, cache and installed packages are never touched.
struct PrivateApt {
    root: PathBuf,
    conf: PathBuf,
}

impl PrivateApt {
    fn setup(root: &Path) -> Result<PrivateApt> {
        let (source, codename) = host_release_source()?;
        let backports = AptSource {
            suites: vec![format!("{codename}-backports")],
            components: vec!["main".to_string()],
            ..source
        };
        let dirs = [
            "sources.list.d",
            "preferences.d",
            "lists/partial",
            "cache/archives/partial",
            "state",
        ];
        for d in dirs {
            util::mkdir_p(&root.join(d))?;
        }
        let r = root.display().to_string();
        if r.contains(['"', '\n']) {
            return Err(format!("apt's configuration cannot name the path {r}"));
        }
        let conf = root.join("apt.conf");
        // Read after the system's apt.conf.d, so it keeps proxies and the like but drops the
        // hooks that would act on the system's own caches after an update.
        let settings = format!(
            "#clear APT::Update::Pre-Invoke;\n\
             #clear APT::Update::Post-Invoke;\n\
             #clear APT::Update::Post-Invoke-Success;\n\
             #clear DPkg::Pre-Invoke;\n\
             #clear DPkg::Post-Invoke;\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Dir::Etc::SourceList \"{r}/sources.list\";\n\
             Dir::Etc::SourceParts \"{r}/sources.list.d\";\n\
             Dir::Etc::Preferences \"{r}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{r}/preferences.d\";\n\
             Dir::State \"{r}/state\";\n\
             Dir::State::Lists \"{r}/lists\";\n\
             Dir::State::status \"{r}/status\";\n\
             Dir::Cache \"{r}/cache\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n"
        );
        write_if_changed(&conf, &settings)?;
        write_if_changed(&root.join("sources.list"), "")?;
        write_if_changed(&root.join("status"), "")?;
        let sources = root.join("sources.list.d/backports.sources");
        if write_if_changed(&sources, &backports.to_deb822())? {
            // Lists fetched for another source would only mislead the next look-up.
            util::remove_all(&root.join("lists"))?;
            util::mkdir_p(&root.join("lists/partial"))?;
        }
        Ok(PrivateApt {
            root: root.to_path_buf(),
            conf,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(&self.conf);
        if util::is_root() {
            // apt drops to the `_apt` user for downloads, which cannot write into target/.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.root.join("lists")).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn update(&self) -> Result<()> {
        eprintln!("vm-test: fetching the backports package lists");
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        util::output(&mut cmd)
            .map(|_| ())
            .map_err(|e| format!("cannot fetch the backports package lists: {e}"))
    }

    /// The versioned kernel package `linux-image-amd64` points at in backports.
    fn kernel_package(&self) -> Result<String> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["depends", "linux-image-amd64"]);
        let deps = util::output(&mut cmd)?;
        String::from_utf8_lossy(&deps)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-"))
            .map(str::to_string)
            .ok_or_else(|| "linux-image-amd64 names no kernel package".to_string())
    }

    fn download(&self, package: &str, dir: &Path) -> Result<PathBuf> {
        eprintln!("vm-test: fetching {package} from backports");
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "download", package]).current_dir(dir);
        util::output(&mut cmd)?;
        util::cached_deb(dir, package)
            .ok_or_else(|| format!("apt-get download {package} left no {package}_*.deb"))
    }

    /// Downloads the kernel package into `dir`; stale or missing lists are fetched again once.
    fn fetch_kernel(&self, dir: &Path) -> Result<PathBuf> {
        let mut refreshed = false;
        if !self.has_lists() {
            self.update()?;
            refreshed = true;
        }
        loop {
            match self.kernel_package().and_then(|p| self.download(&p, dir)) {
                Ok(deb) => return Ok(deb),
                Err(_) if !refreshed => {
                    self.update()?;
                    refreshed = true;
                }
                Err(e) => return Err(format!("cannot download the guest kernel: {e}")),
            }
        }
    }
}

/// Writes `text` to `path` unless it already holds it; says whether it wrote.
fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    let tmp = util::temp_sibling(path, "new");
    fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })?;
    Ok(true)
}

/// One `deb` entry of an apt sources file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AptSource {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
    /// As written: a keyring path, or an inline key block (continuation lines included).
    signed_by: Option<String>,
}

impl AptSource {
    fn to_deb822(&self) -> String {
        let mut s = format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: {}\n",
            self.uri,
            self.suites.join(" "),
            self.components.join(" ")
        );
        if let Some(key) = &self.signed_by {
            s.push_str(&format!("Signed-By: {key}\n"));
        }
        s
    }

    /// The release codename this entry serves (`bookworm`, not `bookworm-updates`), if it
    /// carries the release's main component.
    fn release(&self) -> Option<&str> {
        if !self.components.iter().any(|c| c == "main") {
            return None;
        }
        self.suites
            .iter()
            .map(String::as_str)
            .find(|s| !s.is_empty() && !s.contains(['-', '/']))
    }
}

/// The `deb` entries of a deb822 `.sources` file.
fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled && words("Types").iter().any(|t| t == "deb") {
            for uri in words("URIs") {
                out.push(AptSource {
                    uri,
                    suites: words("Suites"),
                    components: words("Components"),
                    signed_by: get("Signed-By").filter(|v| !v.trim().is_empty()),
                });
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// The `deb` lines of a one-line-style `.list` file.
fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        let mut signed_by = None;
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            for opt in rest.drain(..=end) {
                let opt = opt.trim_start_matches('[').trim_end_matches(']');
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
        }
        if let [uri, suite, components @ ..] = rest.as_slice() {
            out.push(AptSource {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
                components: components.iter().map(|c| c.to_string()).collect(),
                signed_by,
            });
        }
    }
    out
}

/// The host's source for its Debian release's main archive, and the release's codename.
fn host_release_source() -> Result<(AptSource, String)> {
    let etc = Path::new("/etc/apt");
    let mut files = vec![etc.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc.join("sources.list.d")) {
        let mut parts: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        parts.sort();
        files.extend(parts);
    }
    let mut sources = Vec::new();
    for f in &files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            Some("list") => sources.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    sources
        .into_iter()
        .find_map(|s| {
            let codename = s.release()?.to_string();
            Some((s, codename))
        })
        .ok_or_else(|| {
            "cannot find the host's Debian mirror: no apt source under /etc/apt serves a \
             release's main component"
                .to_string()
        })
}

/// Extracts the kernel image from a kernel package and decompresses it to `vmlinux`; returns
/// the kernel's release, which must be at least [`MIN_KERNEL`].
fn extract_vmlinux(deb: &Path, unpack: &Path, vmlinux: &Path) -> Result<String> {
    util::mkdir_p(unpack)?;
    // Only the kernel image: unpacking the whole package (modules included) takes much longer.
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let tar_in = dpkg
        .stdout
        .take()
        .ok_or_else(|| "cannot read dpkg-deb's output".to_string())?;
    let tar = Command::new("tar")
        .args(["-x", "--wildcards", "./boot/vmlinuz-*"])
        .current_dir(unpack)
        .stdin(tar_in)
        .output();
    let dpkg_status = dpkg.wait();
    let tar = tar.map_err(|e| format!("cannot run tar: {e}"))?;
    if !tar.status.success() || !dpkg_status.is_ok_and(|s| s.success()) {
        return Err(format!(
            "cannot unpack the kernel from {}: {}",
            deb.display(),
            util::last_line(&tar.stderr)
        ));
    }
    let vmlinuz = fs::read_dir(unpack.join("boot"))
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).next())
        .ok_or_else(|| format!("{} holds no boot/vmlinuz-*", deb.display()))?;
    let image =
        fs::read(&vmlinuz).map_err(|e| format!("cannot read {}: {e}", vmlinuz.display()))?;
    let payload = bzimage_payload(&image).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    let tmp = util::temp_sibling(vmlinux, "new");
    let result = decompress_payload(payload, &tmp).and_then(|()| {
        let elf = fs::read(&tmp).map_err(|e| format!("cannot read {}: {e}", tmp.display()))?;
        let release = kernel_release(&elf)
            .ok_or("the decompressed kernel names no release (no \"Linux version\" banner)")?;
        if !release_at_least(&release, MIN_KERNEL) {
            return Err(format!(
                "the kernel is {release}, older than the {}.{} the tests need (idmapped \
                 mounts on tmpfs)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ));
        }
        Ok(release)
    });
    let release = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(format!(
                "cannot use the kernel in {}: {e}",
                vmlinuz.display()
            ));
        }
    };
    fs::rename(&tmp, vmlinux).map_err(|e| format!("cannot place {}: {e}", vmlinux.display()))?;
    Ok(release)
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The compressed ELF kernel inside a bzImage, located by its boot header (protocol 2.08+:
/// `payload_offset` and `payload_length`, counted from the end of the real-mode setup).
fn bzimage_payload(image: &[u8]) -> Result<&[u8]> {
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS boot header)".to_string());
    }
    let protocol = u16::from_le_bytes([image[0x206], image[0x207]]);
    if protocol < 0x208 {
        return Err(format!(
            "boot protocol {}.{:02} names no payload (2.08 and later do)",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = le_u32(image, 0x248).ok_or("truncated boot header")? as usize;
    let length = le_u32(image, 0x24c).ok_or("truncated boot header")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    image
        .get(start..start + length)
        .ok_or_else(|| "the payload lies past the end of the image".to_string())
}

/// Decompresses a bzImage payload into `out`, which must then be an ELF image whose size the
/// payload's last four bytes name (the kernel's build appends it; gzip's trailer holds it).
fn decompress_payload(payload: &[u8], out: &Path) -> Result<()> {
    // (magic, program and arguments, whether the appended size follows the compressed stream)
    const FORMATS: &[(&[u8], &[&str], bool)] = &[
        (&[0x28, 0xb5, 0x2f, 0xfd], &["zstd", "-dcq"], true),
        (
            &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
            &["xz", "-dc", "--single-stream"],
            true,
        ),
        (&[0x1f, 0x8b], &["gzip", "-dc"], false),
    ];
    let Some((_, argv, appended)) = FORMATS.iter().find(|(m, _, _)| payload.starts_with(m)) else {
        return Err(format!(
            "the kernel is compressed in a format this task does not decompress (magic {:02x?})",
            &payload[..payload.len().min(6)]
        ));
    };
    let size = payload
        .len()
        .checked_sub(4)
        .and_then(|n| le_u32(payload, n))
        .ok_or("the payload is too short")?;
    let stream = if *appended {
        &payload[..payload.len() - 4]
    } else {
        payload
    };
    let file = File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    // A decompressor may stop reading at the end of its stream: a broken pipe is no error.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(stream);
    }
    let done = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !done.status.success() {
        return Err(format!(
            "{} failed: {}",
            argv[0],
            util::last_line(&done.stderr)
        ));
    }
    let mut head = [0u8; 4];
    let len = File::open(out)
        .and_then(|mut f| {
            f.read_exact(&mut head)?;
            f.metadata()
        })
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e}", out.display()))?;
    if head != *b"\x7fELF" {
        return Err("the decompressed kernel is not an ELF image".to_string());
    }
    if len as u32 != size {
        return Err(format!(
            "the decompressed kernel has {len} bytes, the image says {size}"
        ));
    }
    Ok(())
}

/// The release in the kernel's `Linux version 6.12.0-… (…)` banner.
fn kernel_release(elf: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let mut rest = elf;
    while let Some(at) = rest.windows(BANNER.len()).position(|w| w == BANNER) {
        rest = &rest[at + BANNER.len()..];
        if rest.first().is_some_and(u8::is_ascii_digit) {
            let end = rest
                .iter()
                .position(|b| !b.is_ascii_graphic())
                .unwrap_or(rest.len());
            return Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
    }
    None
}

/// Whether a release such as `6.12.95+deb12-amd64` is at least `min` (major, minor).
fn release_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// QEMU unpacked from Debian packages with the shared libraries the host lacks.
struct Qemu {
    root: PathBuf,
}

impl Qemu {
    fn binary(&self) -> PathBuf {
        self.root.join("usr/bin/qemu-system-x86_64")
    }

    fn library_path(&self) -> String {
        ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| self.root.join(d).display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn ensure(cache: &Path) -> Result<Qemu> {
        let root = cache.join("qemu");
        if root.join(".complete").is_file() {
            return Ok(Qemu { root });
        }
        eprintln!("vm-test: fetching QEMU into {}", root.display());
        let tmp = util::temp_sibling(&root, "unpack");
        util::remove_all(&tmp)?;
        let result = Self::unpack(cache, &tmp);
        if let Err(e) = result {
            let _ = util::remove_all(&tmp);
            return Err(format!("cannot set up QEMU: {e}"));
        }
        // A stale or concurrent tree is replaced only by a complete one.
        let old = util::temp_sibling(&root, "old");
        if root.exists() {
            let _ = fs::rename(&root, &old);
        }
        let placed = fs::rename(&tmp, &root);
        let _ = util::remove_all(&old);
        if let Err(e) = placed {
            let _ = util::remove_all(&tmp);
            if !root.join(".complete").is_file() {
                return Err(format!("cannot place {}: {e}", root.display()));
            }
        }
        Ok(Qemu { root })
    }

    fn unpack(cache: &Path, tmp: &Path) -> Result<()> {
        let debs_dir = cache.join("debs");
        for deb in util::apt_download(&debs_dir, QEMU_PACKAGES)? {
            util::deb_extract(&deb, tmp)?;
        }
        let q = Qemu {
            root: tmp.to_path_buf(),
        };
        // Follow the library dependencies the host lacks, starting from the emulator's package,
        // until the dynamic loader finds everything.
        let mut fetched: Vec<String> = Vec::new();
        let mut frontier = vec!["qemu-system-x86".to_string()];
        loop {
            let missing = q.missing_libraries()?;
            if missing.is_empty() {
                break;
            }
            let wanted = uninstalled_library_deps(&frontier)?
                .into_iter()
                .filter(|p| !fetched.contains(p))
                .collect::<Vec<_>>();
            if wanted.is_empty() {
                return Err(format!(
                    "no package found for the missing libraries {}",
                    missing.join(", ")
                ));
            }
            eprintln!("vm-test: fetching {}", wanted.join(" "));
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            for deb in util::apt_download(&debs_dir, &names)? {
                util::deb_extract(&deb, tmp)?;
            }
            fetched.extend(wanted.iter().cloned());
            frontier = wanted;
        }
        let version = util::output(
            Command::new(q.binary())
                .arg("--version")
                .env("LD_LIBRARY_PATH", q.library_path()),
        )?;
        eprintln!(
            "vm-test: {}",
            String::from_utf8_lossy(&version)
                .lines()
                .next()
                .unwrap_or("QEMU ready")
        );
        File::create(tmp.join(".complete"))
            .map(|_| ())
            .map_err(|e| format!("cannot mark {} complete: {e}", tmp.display()))
    }

    /// The sonames `ldd` cannot resolve for the emulator.
    fn missing_libraries(&self) -> Result<Vec<String>> {
        let out = Command::new("ldd")
            .arg(self.binary())
            .env("LD_LIBRARY_PATH", self.library_path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ldd: {e}"))?;
        let mut missing: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("not found"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        missing.sort();
        missing.dedup();
        if !out.status.success() && missing.is_empty() {
            return Err(format!("ldd failed: {}", util::last_line(&out.stderr)));
        }
        Ok(missing)
    }

    /// Boots the guest, collects its results (streamed to stdout with `echo`), and reports
    /// how QEMU ended.
    fn boot(
        &self,
        kernel: &Path,
        initrd: &Path,
        work: &Path,
        timeout: Duration,
        echo: bool,
    ) -> Result<Outcome> {
        let console = work.join("console.log");
        let results = work.join("results.txt");
        let stderr_path = work.join("qemu.stderr");
        for f in [&console, &results] {
            util::remove_all(f)?;
        }
        let stderr = File::create(&stderr_path)
            .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let kvm = kvm_usable();
        let mut cmd = Command::new(self.binary());
        cmd.env("LD_LIBRARY_PATH", self.library_path())
            // The TCG accelerator is a loadable module; without this QEMU looks in /usr/lib.
            .env(
                "QEMU_MODULE_DIR",
                self.root.join("usr/lib/x86_64-linux-gnu/qemu"),
            )
            .arg("-L")
            .arg(self.root.join("usr/share/seabios"))
            .arg("-L")
            .arg(self.root.join("usr/share/qemu"))
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-machine", "q35", "-m", "2048"]);
        if kvm {
            cmd.args(["-accel", "kvm", "-cpu", "host", "-smp", "2"]);
        } else {
            // One vCPU under emulation. With two, multi-threaded TCG lets one vCPU run a stale
            // translation of kernel text the other has just live-patched (a static key: every
            // cpuset cgroup the tests create or remove flips one), and the guest dies of
            // "Oops: int3". Single-threaded TCG avoids that too, but makes each patch wait for
            // a time slice and the suite several times slower.
            cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "1"]);
        }
        cmd.arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", KERNEL_CMDLINE, "-no-reboot"])
            .arg("-serial")
            .arg(chardev_file(&console)?)
            .arg("-serial")
            .arg(chardev_file(&results)?)
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        eprintln!(
            "vm-test: booting the guest ({}; kernel log in {})",
            if kvm { "KVM" } else { "TCG emulation" },
            console.display()
        );
        let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
        let streamed = stream(&mut child, &results, timeout, echo);
        if streamed.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        streamed
    }
}

/// QEMU's `-serial file:PATH`; a comma would end the path, so refuse it.
fn chardev_file(path: &Path) -> Result<String> {
    let p = path.display().to_string();
    if p.contains(',') {
        return Err(format!(
            "the path {p} contains a comma, which QEMU cannot take"
        ));
    }
    Ok(format!("file:{p}"))
}

/// How QEMU ended.
enum End {
    Status(i32),
    Signal(ExitStatus),
    TimedOut,
}

struct Outcome {
    end: End,
    /// Everything the guest wrote to its results port.
    results: String,
}

/// Collects the output of the results file (copied to stdout as it comes with `echo`) until
/// QEMU exits or the time is up.
fn stream(child: &mut Child, results: &Path, timeout: Duration, echo: bool) -> Result<Outcome> {
    let start = Instant::now();
    let mut file: Option<File> = None;
    let mut seen = Vec::new();
    let mut stdout = std::io::stdout();
    let mut pump = |file: &mut Option<File>, seen: &mut Vec<u8>| {
        if file.is_none() {
            *file = File::open(results).ok();
        }
        if let Some(f) = file {
            let mut chunk = Vec::new();
            if f.read_to_end(&mut chunk).is_ok() && !chunk.is_empty() {
                chunk.retain(|&b| b != b'\r');
                if echo {
                    let _ = stdout.write_all(&chunk);
                    let _ = stdout.flush();
                }
                seen.extend_from_slice(&chunk);
            }
        }
    };
    let end = loop {
        pump(&mut file, &mut seen);
        match child.try_wait() {
            Ok(Some(status)) => {
                break match status.code() {
                    Some(code) => End::Status(code),
                    None => End::Signal(status),
                };
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for QEMU: {e}")),
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break End::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    pump(&mut file, &mut seen);
    if echo && !seen.is_empty() && !seen.ends_with(b"\n") {
        println!();
    }
    Ok(Outcome {
        end,
        results: String::from_utf8_lossy(&seen).into_owned(),
    })
}

/// KVM only where it really works: a paravirtual KVM (kvm_pvm) hangs a stock kernel at boot.
fn kvm_usable() -> bool {
    let writable = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let hw = fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    });
    writable && hw && !Path::new("/sys/module/kvm_pvm").exists()
}

unsafe extern "C" {
    // From the C library std already links; std has no wrapper for it.
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
}

/// Makes the kernel kill QEMU if this process dies, so no guest outlives a killed run.
fn die_with_parent(cmd: &mut Command) {
    const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
    const SIGKILL: std::ffi::c_ulong = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Library packages that `packages` depend on and the host does not have installed.
fn uninstalled_library_deps(packages: &[String]) -> Result<Vec<String>> {
    let out = util::output(Command::new("apt-cache").arg("depends").args(packages))
        .map_err(|e| format!("cannot list dependencies: {e}"))?;
    let mut deps: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|');
            l.strip_prefix("Depends:")
                .or_else(|| l.strip_prefix("PreDepends:"))
        })
        .map(|p| p.trim().split(':').next().unwrap_or_default().to_string())
        .filter(|p| p.starts_with("lib") && !p.starts_with('<'))
        .collect();
    deps.sort();
    deps.dedup();
    if deps.is_empty() {
        return Ok(deps);
    }
    // dpkg-query fails for unknown packages, but still prints the known ones, which is all we need.
    let query = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(&deps)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    let installed: Vec<String> = String::from_utf8_lossy(&query.stdout)
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status.starts_with("ii").then(|| name.to_string())
        })
        .collect();
    Ok(deps
        .into_iter()
        .filter(|d| !installed.contains(d))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_and_the_binary_left_running() {
        let text = "vm-test: running a\nok\nvm-test: result a 0\nvm-test: running b c\n";
        assert_eq!(
            parse_results(text),
            vec![("a".to_string(), "0".to_string())]
        );
        assert_eq!(running_at_end(text), Some("b c".to_string()));
        assert_eq!(
            running_at_end("vm-test: running a\nvm-test: result a 1\n"),
            None
        );
    }

    #[test]
    fn qemu_exit_codes_match_the_guest_bytes() {
        assert_eq!(QEMU_PASS, 33);
        assert_eq!(QEMU_FAIL, 35);
    }

    #[test]
    fn finds_the_release_source_in_deb822_files() {
        let text = "Types: deb\n\
                    # a comment\n\
                    URIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
                    \n\
                    Types: deb\n\
                    URIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\n\
                    Components: main\n\
                    \n\
                    Enabled: no\n\
                    Types: deb\n\
                    URIs: http://other.example/debian\n\
                    Suites: trixie\n\
                    Components: main\n";
        let sources = parse_deb822(text);
        assert_eq!(sources.len(), 2);
        let first = &sources[0];
        assert_eq!(first.uri, "http://mirror.example/debian");
        assert_eq!(first.release(), Some("bookworm"));
        assert_eq!(
            first.signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert_eq!(sources[1].release(), None);
        let backports = AptSource {
            suites: vec!["bookworm-backports".to_string()],
            ..first.clone()
        };
        assert_eq!(
            backports.to_deb822(),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        // An inline key keeps its continuation lines.
        let inline = parse_deb822(
            "Types: deb\nURIs: http://m.example/d\nSuites: x\nComponents: main\n\
             Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
        );
        assert_eq!(
            inline[0].signed_by.as_deref(),
            Some("\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc")
        );
    }

    #[test]
    fn finds_the_release_source_in_one_line_lists() {
        let text = "# comment\n\
                    deb-src http://m.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm-updates main\n\
                    deb [ signed-by=/k.gpg ] http://m.example/debian bookworm main contrib # x\n";
        let sources = parse_one_line(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].release(), None);
        assert_eq!(sources[1].release(), Some("bookworm"));
        assert_eq!(sources[1].uri, "http://m.example/debian");
        assert_eq!(sources[1].components, ["main", "contrib"]);
        assert_eq!(sources[1].signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn reads_the_payload_of_a_bzimage() {
        let mut image = vec![0u8; 8 * 512];
        image[0x1f1] = 3;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&5u32.to_le_bytes());
        image[4 * 512 + 16..4 * 512 + 21].copy_from_slice(b"hello");
        assert_eq!(bzimage_payload(&image), Ok(&b"hello"[..]));
        image[0x24c..0x250].copy_from_slice(&5000u32.to_le_bytes());
        assert!(bzimage_payload(&image).is_err());
        image[0x206..0x208].copy_from_slice(&0x207u16.to_le_bytes());
        assert!(bzimage_payload(&image).is_err());
        assert!(bzimage_payload(b"not a kernel").is_err());
    }

    #[test]
    fn reads_and_compares_kernel_releases() {
        let elf = b"\x7fELF...Linux version %s\0Linux version 6.12.95+deb12-amd64 (builder) #1\0";
        assert_eq!(kernel_release(elf).as_deref(), Some("6.12.95+deb12-amd64"));
        assert_eq!(kernel_release(b"no banner"), None);
        assert!(release_at_least("6.12.95+deb12-amd64", MIN_KERNEL));
        assert!(release_at_least("6.3.0", MIN_KERNEL));
        assert!(release_at_least("7.0", MIN_KERNEL));
        assert!(!release_at_least("6.1.0-37-amd64", MIN_KERNEL));
        assert!(!release_at_least("5.19.1", MIN_KERNEL));
        assert!(!release_at_least("garbage", MIN_KERNEL));
        assert!(KERNEL_CMDLINE.split(' ').any(|a| a == "syscall.x32=y"));
    }
}
