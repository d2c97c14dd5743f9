//! End to end through an engine, what a user feels: `podman --runtime X run --rm IMAGE
//! /bin/true` and `ctr run --rm --runc-binary X IMAGE ID /bin/true`, crabcan against runc,
//! interleaved. Each runtime is called through a timestamping wrapper ([`crate::wrap`]) so
//! the runtime's own share of each command is measured too.
//!
//! The engines run with private state under the bench directory, a short runroot under /run,
//! a cgroup parent (podman) or namespace (ctr) named after this run; everything is removed
//! at the end, whatever happened.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crabcan_engine_tests::podman::ULIMITS;
use crabcan_engine_tests::{containerd, podman, scope};
use serde::Serialize;
use xtask::util::Result;

use crate::report::Stats;
use crate::setup;
use crate::wrap;

const IMAGE: &str = "localhost/crabcan-bench:latest";
/// Files and directories the engines create outside their private directories whatever they
/// are told; those absent before are removed after (directories only when empty).
const ENGINE_HOST_PATHS: &[&str] = &[
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd",
];
/// The longest an engine command may take before the run counts as failed.
const LIMIT: Duration = Duration::from_secs(60);

/// One engine with one runtime.
#[derive(Serialize)]
pub struct EngineRow {
    pub engine: &'static str,
    pub runtime: &'static str,
    /// Why there are no figures, when there are none.
    pub note: Option<String>,
    /// The engine's whole command.
    pub total_ms: Stats,
    /// The runtime's own time within it (its calls, as the wrapper timed them).
    pub runtime_ms: Stats,
    /// Runtime calls per command (median).
    #[serde(serialize_with = "crate::report::num")]
    pub calls: f64,
    pub failures: usize,
    pub first_failure: Option<String>,
}

impl EngineRow {
    fn note(engine: &'static str, runtime: &'static str, why: String) -> EngineRow {
        EngineRow {
            engine,
            runtime,
            note: Some(why),
            total_ms: Stats::default(),
            runtime_ms: Stats::default(),
            calls: 0.0,
            failures: 0,
            first_failure: None,
        }
    }
}

/// A runtime to drive: its name in the table and the wrapper standing in for it.
pub struct Wrapped {
    pub name: &'static str,
    pub wrapper: PathBuf,
    pub log: PathBuf,
}

/// Everything made on the host, removed by [`Place::clean`].
struct Place {
    dir: PathBuf,
    run: PathBuf,
    tag: String,
    absent_before: Vec<PathBuf>,
    daemons: Vec<Child>,
}

impl Place {
    fn new() -> Result<Place> {
        let pid = std::process::id();
        let dir = setup::bench_dir().join("engines");
        let run = PathBuf::from(format!("/run/cbb-{pid}"));
        for d in [&dir, &run] {
            let _ = fs::remove_dir_all(d);
            xtask::util::mkdir_p(d)?;
        }
        Ok(Place {
            dir,
            run,
            tag: format!("crabcan-bench-{pid}"),
            absent_before: ENGINE_HOST_PATHS
                .iter()
                .map(PathBuf::from)
                .filter(|p| !p.exists())
                .collect(),
            daemons: Vec::new(),
        })
    }

    /// Stops the daemons, kills what still names this run's directories, detaches mounts
    /// under them, removes them, the cgroups named after the run and the engines' host paths
    /// that were absent before. Returns what could not be removed.
    fn clean(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        for d in &mut self.daemons {
            // SAFETY: kill with a pid of our own child, which we have not reaped yet.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            // An error means it was reaped already (the harness reaps orphans it adopts).
            let running = |d: &mut Child| matches!(d.try_wait(), Ok(None));
            while running(d) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if running(d) {
                left.push(format!("daemon {} did not stop on SIGTERM: killed", d.id()));
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        self.daemons.clear();
        let marks = [
            self.dir.to_string_lossy().into_owned(),
            format!("{}/", self.run.display()),
            self.tag.clone(),
        ];
        // Shims and conmons outlive their command a moment; give them that, then stop them.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let strays = processes_naming(&marks);
            if strays.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (pid, cmd) in strays {
                    left.push(format!("process {pid} still running ({cmd}): killed"));
                    // SAFETY: kill takes plain integers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in scope::detach_mounts_under(&[&marks[0], &marks[1]]) {
            left.push(format!("mount {p} left behind: detached"));
        }
        for d in [&self.dir, &self.run] {
            if let Err(e) = fs::remove_dir_all(d)
                && d.exists()
            {
                left.push(format!("cannot remove {}: {e}", d.display()));
            }
        }
        for d in scope::remove_cgroup_trees(&self.tag) {
            left.push(format!("cgroup {} cannot be removed", d.display()));
        }
        for p in &self.absent_before {
            if p.is_dir() {
                let _ = fs::remove_dir(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
        left
    }
}

/// Processes (not this one) whose command line contains one of `marks`.
fn processes_naming(marks: &[String]) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != me)
        .filter_map(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            marks
                .iter()
                .any(|m| cmd.contains(m.as_str()))
                .then(|| (p, cmd.trim().to_string()))
        })
        .collect()
}

/// Runs `cmd` with its output captured, killed after [`LIMIT`]; its stdout, or why it failed.
fn bounded(cmd: &mut Command) -> std::result::Result<String, String> {
    let name = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let deadline = Instant::now() + LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} did not finish within {LIMIT:?}: killed"));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{name}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{name} failed ({}): {}",
            out.status,
            xtask::util::last_line(&out.stderr)
        ))
    }
}

/// podman with a private store under `dir` and runroot `run`.
struct Podman {
    dir: PathBuf,
    tag: String,
}

impl Podman {
    fn new(place: &Place) -> Result<Podman> {
        let dir = place.dir.join("podman");
        podman::write_store(&dir, &place.run.join("podman"))?;
        Ok(Podman {
            dir,
            tag: place.tag.clone(),
        })
    }

    fn cmd(&self) -> Command {
        podman::command(&self.dir)
    }

    fn run(&self, runtime: &Path) -> Command {
        let mut c = self.cmd();
        c.arg("--runtime")
            .arg(runtime)
            .args(["run", "--rm", "--cgroup-parent"])
            .arg(format!("/{}", self.tag))
            .args(["--network", "none"])
            .args(ULIMITS)
            .args([IMAGE, "/bin/true"]);
        c
    }
}

/// A private containerd serving on a socket under the bench directory.
struct Containerd {
    address: PathBuf,
    ns: String,
    runc_root: PathBuf,
    fifo: PathBuf,
}

impl Containerd {
    fn start(place: &mut Place) -> Result<Containerd> {
        let dir = place.dir.join("containerd");
        xtask::util::mkdir_p(&dir)?;
        let address = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, containerd::config_toml(&dir, &address))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log = fs::File::create(dir.join("containerd.log"))
            .map_err(|e| format!("cannot create containerd's log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot share containerd's log: {e}"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start containerd: {e}"))?;
        place.daemons.push(child);
        let c = Containerd {
            address,
            ns: place.tag.clone(),
            runc_root: dir.join("runc-root"),
            fifo: dir.join("fifo"),
        };
        let deadline = Instant::now() + LIMIT;
        while bounded(&mut c.ctr(&["version"])).is_err() {
            if Instant::now() >= deadline {
                return Err(format!("containerd did not serve within {LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    fn ctr(&self, args: &[&str]) -> Command {
        containerd::ctr_command(&self.address, &self.ns, args)
    }

    fn run(&self, runtime: &Path, id: &str) -> Command {
        let mut c = self.ctr(&["run", "--rm", "--runc-binary"]);
        c.arg(runtime)
            .arg("--runc-root")
            .arg(&self.runc_root)
            .arg("--fifo-dir")
            .arg(&self.fifo)
            .args([IMAGE, id, "/bin/true"]);
        c
    }
}

/// One timed engine command: total ms, and the runtime's ms and calls within it.
fn timed(cmd: &mut Command, rt: &Wrapped) -> std::result::Result<(f64, f64, usize), String> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let from = wrap::now_ns();
    let out = bounded(cmd);
    let to = wrap::now_ns();
    out?;
    let (ms, calls) = wrap::share(&rt.log, from, to);
    Ok(((to - from) as f64 / 1e6, ms, calls))
}

#[derive(Default)]
struct Series {
    total: Vec<f64>,
    runtime: Vec<f64>,
    calls: Vec<f64>,
    failures: usize,
    first_failure: Option<String>,
}

fn rows(engine: &'static str, rts: &[Wrapped], s: Vec<Series>) -> Vec<EngineRow> {
    rts.iter()
        .zip(s)
        .map(|(rt, s)| EngineRow {
            engine,
            runtime: rt.name,
            note: None,
            total_ms: Stats::of(&s.total),
            runtime_ms: Stats::of(&s.runtime),
            calls: Stats::of(&s.calls).median,
            failures: s.failures,
            first_failure: s.first_failure,
        })
        .collect()
}

fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["podman", "conmon", "containerd", "ctr", "tar"]
        .into_iter()
        .filter(|t| setup::which(t).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("not run: {} not installed", missing.join(", ")))
}

/// Measures both engines with every runtime in `rts` (interleaved, `rounds` after `warmup`),
/// over an image made from `rootfs`. Returns the rows and what the cleanup found left behind.
pub fn measure(
    rts: &[Wrapped],
    pending: &[&'static str],
    rootfs: &Path,
    rounds: usize,
    warmup: usize,
) -> Result<(Vec<EngineRow>, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(why) = missing_tools() {
        for e in ["podman", "ctr"] {
            for rt in rts {
                out.push(EngineRow::note(e, rt.name, why.clone()));
            }
        }
        return Ok((out, Vec::new()));
    }
    let mut place = Place::new()?;
    let result = measure_in(&mut place, rts, rootfs, rounds, warmup);
    let left = place.clean();
    out.extend(result?);
    for name in pending {
        for e in ["podman", "ctr"] {
            out.push(EngineRow::note(
                e,
                name,
                "not built yet (pending the OCI commands)".into(),
            ));
        }
    }
    Ok((out, left))
}

fn measure_in(
    place: &mut Place,
    rts: &[Wrapped],
    rootfs: &Path,
    rounds: usize,
    warmup: usize,
) -> Result<Vec<EngineRow>> {
    println!("engines: importing the bench rootfs as {IMAGE} (podman, containerd)");
    let tar = place.dir.join("rootfs.tar");
    let archive = place.dir.join("docker-archive.tar");
    bounded(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("--exclude=./mnt/bench")
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    let podman = Podman::new(place)?;
    bounded(podman.cmd().args(["import", "-q"]).arg(&tar).arg(IMAGE))?;
    bounded(
        podman
            .cmd()
            .args(["save", "-q", "--format", "docker-archive", "-o"])
            .arg(&archive)
            .arg(IMAGE),
    )?;

    println!("engines: podman run --rm, {rounds} rounds, interleaved");
    let mut series: Vec<Series> = rts.iter().map(|_| Series::default()).collect();
    for round in 0..warmup + rounds {
        for (rt, s) in rts.iter().zip(series.iter_mut()) {
            match timed(&mut podman.run(&rt.wrapper), rt) {
                Ok((t, r, n)) if round >= warmup => {
                    s.total.push(t);
                    s.runtime.push(r);
                    s.calls.push(n as f64);
                }
                Ok(_) => {}
                Err(e) => {
                    s.failures += 1;
                    s.first_failure.get_or_insert(e);
                }
            }
            // conmon and podman's cleanup were adopted by the harness: reap them.
            crate::sys::reap_exited();
        }
    }
    let _ = bounded(podman.cmd().args(["rm", "--all", "--force", "--time", "0"]));
    let mut out = rows("podman", rts, series);

    let containerd = Containerd::start(place)?;
    bounded(containerd.ctr(&["image", "import"]).arg(&archive))?;
    println!("engines: ctr run --rm, {rounds} rounds, interleaved");
    let mut series: Vec<Series> = rts.iter().map(|_| Series::default()).collect();
    let mut n = 0;
    for round in 0..warmup + rounds {
        for (rt, s) in rts.iter().zip(series.iter_mut()) {
            n += 1;
            let id = format!("{}-{n}", place.tag);
            match timed(&mut containerd.run(&rt.wrapper, &id), rt) {
                Ok((t, r, c)) if round >= warmup => {
                    s.total.push(t);
                    s.runtime.push(r);
                    s.calls.push(c as f64);
                }
                Ok(_) => {}
                Err(e) => {
                    s.failures += 1;
                    s.first_failure.get_or_insert(e);
                    let _ = bounded(&mut containerd.ctr(&["task", "rm", "--force", &id]));
                    let _ = bounded(&mut containerd.ctr(&["container", "rm", &id]));
                }
            }
            // The shims were adopted by the harness: reap those that ended.
            crate::sys::reap_exited();
        }
    }
    out.extend(rows("ctr", rts, series));
    Ok(out)
}
