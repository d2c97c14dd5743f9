//! `cargo xtask bench [--no-install] [--runs N] [--quick] [--crabcan PATH]`: crabcan's start
//! latency (also under podman's seccomp profile against its own default), memory, bind-mount
//! growth and throughput, measured side by side with bubblewrap, crun, runc, the bare cost of
//! the namespaces (`unshare`) and the floor program (`crabcan-floor`: alone, with crabcan's
//! cgroup work, and with all the kernel work of crabcan's default run, which splits the gap
//! between the kernel's share and crabcan's own); the OCI commands (`run --bundle`, `create`, `start`, `delete`,
//! `exec`, memory, residency) of runc, crun and crabcan once it has them; and podman and ctr
//! end to end with runc and crabcan. Reports PASS/MISS against the targets; it fails only when
//! the harness breaks or a crabcan container fails. `cargo xtask bench ARGS` runs it as
//! `cargo run --release -p crabcan-bench -- ARGS`.

mod engine;
mod oci;
mod order;
mod report;
mod setup;
mod sys;
mod wrap;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use report::{FloorSplit, GrowthPoint, Stats, Throughput};
use serde::Serialize;
use setup::{Runtime, Skipped, Starter};

use xtask::util::{self, Result};

const USAGE: &str = "usage: cargo xtask bench [--no-install] [--runs N] [--quick] [--crabcan PATH]
  --no-install   do not apt-get install missing peers (bubblewrap, crun, runc); skip them
  --crabcan PATH measure this crabcan binary instead of building the release one
  --runs N       measured runs per runtime for the start latency (default 200)
  --quick        a short run: 20 runs each, fewer growth and throughput runs";

/// Bind-mount counts of the growth curve.
const MOUNT_COUNTS: [usize; 4] = [0, 10, 100, 1000];
/// Parallelism levels of the throughput runs.
const PARALLEL: [usize; 2] = [1, 2];

/// The settings of a run; `results.json` records those that shape the numbers.
#[derive(Debug, Clone, Serialize)]
struct Opts {
    #[serde(skip)]
    install: bool,
    runs: usize,
    warmup: usize,
    growth_runs: usize,
    /// Commands per runtime and engine in the end-to-end rows.
    engine_runs: usize,
    containers: usize,
    #[serde(skip)]
    rss_samples: usize,
    /// A crabcan binary to measure instead of the release build.
    #[serde(skip)]
    crabcan: Option<PathBuf>,
}

fn parse(args: &[String]) -> std::result::Result<Option<Opts>, String> {
    let mut install = true;
    let mut quick = false;
    let mut runs = None;
    let mut crabcan = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-install" => install = false,
            "--quick" => quick = true,
            "--runs" => {
                let v = it.next().ok_or("--runs needs a number")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--runs takes a positive number, not '{v}'"))?;
                if n == 0 {
                    return Err("--runs must be at least 1".into());
                }
                runs = Some(n);
            }
            "--crabcan" => {
                let v = it.next().ok_or("--crabcan needs a path")?;
                crabcan = Some(PathBuf::from(v));
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown bench option '{other}'")),
        }
    }
    let runs = runs.unwrap_or(if quick { 20 } else { 200 });
    Ok(Some(Opts {
        install,
        runs,
        warmup: if quick { 3 } else { 10 },
        growth_runs: if quick { 5 } else { (runs / 4).clamp(10, 60) },
        engine_runs: if quick { 5 } else { (runs / 8).clamp(5, 30) },
        containers: if quick { 40 } else { 200 },
        rss_samples: if quick { 3 } else { 10 },
        crabcan,
    }))
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    if let Some((real, log)) = wrap::config(&argv0) {
        // Started by an engine in place of a runtime: be the timestamping wrapper.
        let args: Vec<OsString> = argv.collect();
        std::process::exit(wrap::run(&real, &log, &args));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole benchmark: `Ok(false)` when a crabcan container failed.
fn run(args: &[String]) -> Result<bool> {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(true);
        }
        Err(e) => return Err(format!("{e}\n{USAGE}")),
    };
    let out_dir = setup::bench_dir();
    util::mkdir_p(&out_dir)?;
    let mut machine = Machine::read();
    let before = HostState::snapshot();
    // Whatever a runtime or engine leaves running is reparented to the harness, where the
    // check at the end finds it (and a runtime's create can be checked for what it left).
    sys::set_subreaper(true).map_err(|e| format!("cannot become a subreaper: {e}"))?;

    println!("building crabcan (release, static musl) and the bench rootfs …");
    let crabcan = match &opts.crabcan {
        Some(p) => fs::canonicalize(p).map_err(|e| format!("--crabcan {}: {e}", p.display()))?,
        None => setup::build_crabcan()?,
    };
    let floor = setup::build_floor()?;
    let max_mounts = MOUNT_COUNTS.iter().copied().max().unwrap_or(0);
    let rootfs = setup::rootfs(max_mounts)?;
    let binds = setup::bind_sources(max_mounts)?;
    let bundle = setup::bundle(&rootfs)?;
    let sleep_bundle = setup::bundle_running(&rootfs, "bundle-sleep", &["/bin/sleep", "3600"])?;
    let (runtimes, skipped) = setup::runtimes(&crabcan, &floor, &rootfs, &bundle, opts.install)?;
    for s in &skipped {
        println!("not measured: {}: {}", s.starter.name(), s.why);
    }
    let (oci_rts, oci_missing) = setup::oci_runtimes(&runtimes);
    for m in &oci_missing {
        println!("oci: {}: {}", m.runtime, m.note.as_deref().unwrap_or(""));
    }
    let bundles = Bundles {
        true_bundle: bundle.clone(),
        sleep_bundle,
        oci: oci_rts.clone(),
        oci_missing,
    };

    let mut bench = Bench {
        seq: 1,
        crabcan_failures: 0,
    };
    let result = bench.measure(&opts, &runtimes, &rootfs, &binds, bundles);
    // Whatever happened, leave no container state behind.
    let mut leftovers = setup::cleanup_state(&oci_rts);
    let mut m = result?;
    leftovers.append(&mut m.engine_leftovers);
    let after = HostState::snapshot();
    leftovers.extend(before.leftovers(&after));
    leftovers.extend(stray_processes());

    machine.load_after = Machine::loadavg();
    let results = Results::new(machine, opts, skipped, m, leftovers);
    print!("{}", render_table(&results));

    let json_path = out_dir.join("results.json");
    fs::write(&json_path, render_json(&results)?)
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    let svg_path = out_dir.join("growth.svg");
    let subtitle = format!(
        "{} · {} CPUs · Linux {} · {} runs per point",
        results.machine.cpu,
        results.machine.nproc,
        results.machine.kernel,
        results.settings.growth_runs
    );
    fs::write(
        &svg_path,
        report::growth_svg(&results.growth, &results.throughput, &subtitle),
    )
    .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
    let oci_svg = out_dir.join("oci.svg");
    fs::write(&oci_svg, oci_chart(&results))
        .map_err(|e| format!("cannot write {}: {e}", oci_svg.display()))?;
    println!(
        "\nwrote {}, {} and {}",
        rel(&json_path),
        rel(&svg_path),
        rel(&oci_svg)
    );
    if bench.crabcan_failures > 0 {
        println!("{} crabcan container(s) failed", bench.crabcan_failures);
        return Ok(false);
    }
    Ok(true)
}

fn rel(p: &Path) -> String {
    p.strip_prefix(util::workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// What the host looks like: printed with every result, since the numbers depend on it.
#[derive(Serialize)]
struct Machine {
    cpu: String,
    nproc: usize,
    kernel: String,
    #[serde(rename = "loadavg_before")]
    load_before: String,
    /// Read when the measurements are over.
    #[serde(rename = "loadavg_after")]
    load_after: String,
}

impl Machine {
    fn read() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cpu,
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            load_before: Machine::loadavg(),
            load_after: String::new(),
        }
    }

    /// The 1, 5 and 15 minute load averages (other builds on a shared machine show up here).
    fn loadavg() -> String {
        fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

/// What a run could leave behind on the host.
struct HostState {
    tmp: BTreeSet<String>,
    /// Id range leases in /run (crabcan run as root holds one while its container runs).
    leases: BTreeSet<String>,
    mounts: BTreeSet<String>,
}

impl HostState {
    fn snapshot() -> HostState {
        // Only names this run's containers carry (the host's /tmp is shared with other work).
        let pid = std::process::id().to_string();
        let tmp = fs::read_dir("/tmp")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&pid) || n.contains("crabcan-bench"))
                    .collect()
            })
            .unwrap_or_default();
        // Only where this run's containers and engines mount: others share the host.
        let ours = [
            setup::bench_dir().to_string_lossy().into_owned(),
            "/run/crabcan".to_string(),
            format!("/run/cbb-{}", std::process::id()),
        ];
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines()
                    .filter(|l| {
                        l.split(' ')
                            .nth(4)
                            .is_some_and(|p| ours.iter().any(|o| p.starts_with(o.as_str())))
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let leases = fs::read_dir("/run")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("crabcan-ids-"))
                    .collect()
            })
            .unwrap_or_default();
        HostState {
            tmp,
            leases,
            mounts,
        }
    }

    /// Differences that a container run could have caused.
    fn leftovers(&self, after: &HostState) -> Vec<String> {
        let mut out = Vec::new();
        for name in after.tmp.difference(&self.tmp) {
            out.push(format!("new entry in /tmp: {name}"));
        }
        for name in after.leases.difference(&self.leases) {
            out.push(format!("id range lease left in /run: {name}"));
        }
        for line in after.mounts.symmetric_difference(&self.mounts) {
            let what = if after.mounts.contains(line) {
                "new"
            } else {
                "gone"
            };
            let point = line.split(' ').nth(4).unwrap_or(line);
            out.push(format!("{what} host mount: {point}"));
        }
        out
    }
}

/// Processes still running that the harness adopted (as a subreaper, it gets every orphan
/// of the runtimes and engines it ran): each is named, then killed and reaped.
fn stray_processes() -> Vec<String> {
    sys::reap_exited();
    let mut out = Vec::new();
    for pid in sys::own_children() {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let cmd = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(format!(
            "process {pid} still running: {} ({}): killed",
            exe.display(),
            cmd.trim()
        ));
        // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = sys::wait(pid);
    }
    out
}

/// One runtime's start-latency series.
#[derive(Serialize)]
struct Latency {
    #[serde(rename = "runtime")]
    starter: Starter,
    /// The command line, as the report shows it.
    command: String,
    ms: Stats,
    #[serde(serialize_with = "report::opt_num")]
    median_ratio_to_crabcan: Option<f64>,
    #[serde(rename = "tree_maxrss_kib")]
    rss_kib: Stats,
    failures: usize,
}

/// Peak memory of the crabcan process itself, apart from its container.
#[derive(Serialize)]
struct OwnRss {
    #[serde(rename = "parent_vmhwm_kib")]
    parent_kib: u64,
    /// Of the parent's resident set while it waits: private anonymous memory…
    #[serde(rename = "parent_rss_anon_kib")]
    anon_kib: u64,
    /// … and pages of mapped files (the binary and shared libraries, shared with others).
    #[serde(rename = "parent_rss_file_kib")]
    file_kib: u64,
    #[serde(rename = "container_init_vmhwm_kib")]
    init_kib: u64,
    samples: usize,
}

/// The floor that spawning itself adds: a static busybox `true`, spawned the same way.
#[derive(Serialize)]
struct SpawnFloor {
    ms: Stats,
    #[serde(rename = "maxrss_kib")]
    rss_kib: Stats,
}

/// What the OCI rows run: the bundles and the runtimes with runc's command line.
struct Bundles {
    true_bundle: PathBuf,
    sleep_bundle: PathBuf,
    oci: Vec<oci::OciRuntime>,
    /// Rows without figures (crabcan before the OCI commands).
    oci_missing: Vec<oci::OciRow>,
}

struct Measured {
    latency: Vec<Latency>,
    oci: Vec<oci::OciRow>,
    engines: Vec<engine::EngineRow>,
    /// What the engines' cleanup found left behind.
    engine_leftovers: Vec<String>,
    /// crabcan's start under podman's seccomp profile and under its own default:
    /// (podman's median, default's median) in ms, interleaved runs.
    seccomp: Option<(f64, f64)>,
    spawn_floor: SpawnFloor,
    own_rss: Option<OwnRss>,
    growth: Vec<GrowthPoint>,
    throughput: Vec<Throughput>,
}

/// crabcan's median start under two seccomp profiles, from interleaved runs.
#[derive(Serialize, Clone, Copy)]
struct SeccompCost {
    podman_profile: f64,
    crabcan_default: f64,
}

/// Everything a run found and the conditions it ran in: what the table shows and, field by
/// field, `results.json`.
#[derive(Serialize)]
struct Results {
    machine: Machine,
    settings: Opts,
    latency: Vec<Latency>,
    /// runc's command line: run --bundle, the separate steps, exec, memory, residency.
    oci: Vec<oci::OciRow>,
    /// podman and ctr with runc and crabcan: the whole command and the runtime's share.
    engines: Vec<engine::EngineRow>,
    not_run: Vec<Skipped>,
    spawn_floor: SpawnFloor,
    crabcan_own_rss: Option<OwnRss>,
    /// Median start in ms under podman's seccomp profile and under crabcan's default.
    seccomp_start_ms: Option<SeccompCost>,
    growth: Vec<GrowthPoint>,
    throughput: Vec<Throughput>,
    left_behind: Vec<String>,
    targets: Vec<Target>,
    /// Figures without a limit that explain the targets.
    diagnostics: Vec<Diagnostic>,
    /// The gap from `floor+cgroups` to crabcan, split at `floor+all`.
    floor_split_ms: Option<FloorSplit>,
}

impl Results {
    fn new(
        machine: Machine,
        settings: Opts,
        not_run: Vec<Skipped>,
        m: Measured,
        left_behind: Vec<String>,
    ) -> Results {
        let mut r = Results {
            machine,
            settings,
            latency: m.latency,
            oci: m.oci,
            engines: m.engines,
            not_run,
            spawn_floor: m.spawn_floor,
            crabcan_own_rss: m.own_rss,
            seccomp_start_ms: m.seccomp.map(|(p, d)| SeccompCost {
                podman_profile: p,
                crabcan_default: d,
            }),
            growth: m.growth,
            throughput: m.throughput,
            left_behind,
            targets: Vec::new(),
            diagnostics: Vec::new(),
            floor_split_ms: None,
        };
        let crab = r.median(Starter::Crabcan);
        for l in &mut r.latency {
            l.median_ratio_to_crabcan = crab.map(|c| l.ms.median / c);
        }
        r.targets = targets(&r);
        let floor_all = r.median(Starter::MinFloorAll);
        r.diagnostics = [Starter::MinFloor, Starter::MinFloorCgroups]
            .into_iter()
            .map(|k| Diagnostic {
                what: format!("crabcan median / {} median", k.name()),
                value: crab.zip(r.median(k)).map(|(c, f)| c / f),
            })
            .collect();
        r.floor_split_ms = match (r.median(Starter::MinFloorCgroups), floor_all, crab) {
            (Some(g), Some(a), Some(c)) => Some(FloorSplit::of(g, a, c)),
            _ => None,
        };
        r
    }

    fn median(&self, starter: Starter) -> Option<f64> {
        self.latency
            .iter()
            .find(|l| l.starter == starter && l.ms.n > 0)
            .map(|l| l.ms.median)
    }
}

struct Bench {
    seq: u64,
    crabcan_failures: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Bench {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// One timed run; `None` (and a counted failure) when the container failed.
    fn timed(&mut self, rt: &Runtime, extra: &[OsString]) -> Result<Option<sys::Timed>> {
        let seq = self.next_seq();
        let t = sys::run_timed(&mut rt.command(seq, extra))
            .map_err(|e| format!("cannot run {}: {e}", rt.program.display()))?;
        if t.reaped.code == 0 {
            return Ok(Some(t));
        }
        if rt.starter == Starter::Crabcan {
            self.crabcan_failures += 1;
            // Say why once per failure: run it again with stderr visible.
            let why = rt.probe(self.next_seq()).err().unwrap_or_default();
            eprintln!(
                "crabcan failed (exit {}){}{why}",
                t.reaped.code,
                if why.is_empty() {
                    ""
                } else {
                    "; a rerun says: "
                }
            );
        }
        Ok(None)
    }

    /// Starts under podman's seccomp profile (as its config.json carries it) against starts
    /// under crabcan's default, interleaved; `None` when either failed every run.
    fn seccomp_cost(&mut self, crab: &Runtime, opts: &Opts) -> Result<Option<(f64, f64)>> {
        let profile = util::workspace_root()
            .join("crabcan-security/tests/fixtures/podman-config-seccomp.json");
        println!(
            "seccomp: {} runs each under podman's profile and crabcan's default",
            opts.runs
        );
        let podman: Vec<OsString> = vec!["--seccomp".into(), profile.into_os_string()];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..opts.warmup {
            self.timed(crab, &podman)?;
        }
        for _ in 0..opts.runs {
            if let Some(t) = self.timed(crab, &podman)? {
                a.push(ms(t.elapsed));
            }
            if let Some(t) = self.timed(crab, &[])? {
                b.push(ms(t.elapsed));
            }
        }
        let (a, b) = (Stats::of(&a), Stats::of(&b));
        Ok((a.n > 0 && b.n > 0).then_some((a.median, b.median)))
    }

    fn measure(
        &mut self,
        opts: &Opts,
        runtimes: &[Runtime],
        rootfs: &Path,
        binds: &Path,
        bundles: Bundles,
    ) -> Result<Measured> {
        let names: Vec<&str> = runtimes.iter().map(|r| r.starter.name()).collect();
        println!(
            "start latency: {} warm-up + {} measured runs each, interleaved in a fresh order each round: {}",
            opts.warmup,
            opts.runs,
            names.join(" ")
        );
        let mut order = order::RoundOrder::new(runtimes.len());
        for _ in 0..opts.warmup {
            for &i in order.next_round() {
                self.timed(&runtimes[i], &[])?;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); runtimes.len()];
        let mut rss: Vec<Vec<f64>> = vec![Vec::new(); runtimes.len()];
        let mut failures = vec![0; runtimes.len()];
        for _ in 0..opts.runs {
            for &i in order.next_round() {
                let rt = &runtimes[i];
                match self.timed(rt, &[])? {
                    Some(t) => {
                        times[i].push(ms(t.elapsed));
                        rss[i].push(t.reaped.maxrss_kib as f64);
                    }
                    None => failures[i] += 1,
                }
            }
        }
        let latency = runtimes
            .iter()
            .enumerate()
            .map(|(i, rt)| Latency {
                starter: rt.starter,
                command: rt.describe(),
                ms: Stats::of(&times[i]),
                median_ratio_to_crabcan: None,
                rss_kib: Stats::of(&rss[i]),
                failures: failures[i],
            })
            .collect();

        let oci = oci::measure(
            &bundles.oci,
            bundles.oci_missing,
            &bundles.true_bundle,
            &bundles.sleep_bundle,
            opts.runs,
            opts.warmup,
        )?;
        for row in &oci {
            if row.failures > 0 {
                eprintln!(
                    "oci: {} failed {} time(s); first: {}",
                    row.runtime,
                    row.failures,
                    row.first_failure.as_deref().unwrap_or("?")
                );
                if row.runtime == "crabcan" {
                    self.crabcan_failures += row.failures;
                }
            }
        }

        let (engines, engine_leftovers) = self.engines(&bundles.oci, rootfs, opts)?;

        let spawn_floor = spawn_floor(rootfs, opts.runs.min(50))?;
        let crab = runtimes
            .iter()
            .find(|r| r.starter == Starter::Crabcan)
            .ok_or("crabcan is not among the runtimes")?;
        let seccomp = self.seccomp_cost(crab, opts)?;
        println!("crabcan's own peak RSS: {} samples", opts.rss_samples);
        let own_rss = own_rss(crab, opts.rss_samples)?;

        println!(
            "growth: {} runs each with {:?} --add bind mounts",
            opts.growth_runs, MOUNT_COUNTS
        );
        let growth = self.growth(crab, binds, opts)?;

        let mut throughput = Vec::new();
        for p in PARALLEL {
            println!("throughput: {} containers, {p} at a time", opts.containers);
            throughput.push(self.throughput(crab, p, opts.containers)?);
        }
        Ok(Measured {
            latency,
            oci,
            engines,
            engine_leftovers,
            seccomp,
            spawn_floor,
            own_rss,
            growth,
            throughput,
        })
    }

    /// The engine rows: runc always, crabcan once it has the OCI commands.
    fn engines(
        &mut self,
        oci: &[oci::OciRuntime],
        rootfs: &Path,
        opts: &Opts,
    ) -> Result<(Vec<engine::EngineRow>, Vec<String>)> {
        let wrap_dir = setup::bench_dir().join("wrap");
        let mut wrapped = Vec::new();
        let mut pending = Vec::new();
        for name in ["runc", "crabcan"] {
            match oci.iter().find(|o| o.name == name) {
                Some(o) => {
                    let log = wrap_dir.join(format!("{name}.log"));
                    let wrapper = wrap::install(&wrap_dir.join(name), &o.program, &log)?;
                    wrapped.push(engine::Wrapped {
                        name: o.name,
                        wrapper,
                        log,
                    });
                }
                None => pending.push(name),
            }
        }
        let result = engine::measure(&wrapped, &pending, rootfs, opts.engine_runs, 2);
        let _ = util::remove_all(&wrap_dir);
        let (rows, left) = result?;
        for r in &rows {
            if r.failures > 0 {
                eprintln!(
                    "engines: {} with {} failed {} time(s); first: {}",
                    r.engine,
                    r.runtime,
                    r.failures,
                    r.first_failure.as_deref().unwrap_or("?")
                );
                if r.runtime == "crabcan" {
                    self.crabcan_failures += r.failures;
                }
            }
        }
        Ok((rows, left))
    }

    fn growth(&mut self, crab: &Runtime, binds: &Path, opts: &Opts) -> Result<Vec<GrowthPoint>> {
        let extras: Vec<Vec<OsString>> = MOUNT_COUNTS
            .iter()
            .map(|&n| {
                (0..n)
                    .flat_map(|i| {
                        let name = setup::bind_name(i);
                        let spec = format!(
                            "{}:/{}/{name}",
                            binds.join(&name).display(),
                            setup::BIND_DIR_IN_ROOT
                        );
                        [OsString::from("--add"), OsString::from(spec)]
                    })
                    .collect()
            })
            .collect();
        for extra in &extras {
            for _ in 0..2 {
                self.timed(crab, extra)?;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); extras.len()];
        for _ in 0..opts.growth_runs {
            for (i, extra) in extras.iter().enumerate() {
                if let Some(t) = self.timed(crab, extra)? {
                    times[i].push(ms(t.elapsed));
                }
            }
        }
        Ok(MOUNT_COUNTS
            .iter()
            .zip(&times)
            .map(|(&mounts, t)| GrowthPoint {
                mounts,
                ms: Stats::of(t),
            })
            .collect())
    }

    /// Runs `total` containers keeping `parallel` of them running at any time.
    fn throughput(&mut self, crab: &Runtime, parallel: usize, total: usize) -> Result<Throughput> {
        let mut running = 0;
        let mut launched = 0;
        let mut done = 0;
        let mut failures = 0;
        let mut ours = BTreeSet::new();
        let start = Instant::now();
        while done < total {
            while running < parallel && launched < total {
                let seq = self.next_seq();
                let child = crab
                    .command(seq, &[])
                    .spawn()
                    .map_err(|e| format!("cannot run {}: {e}", crab.program.display()))?;
                ours.insert(child.id() as i32);
                running += 1;
                launched += 1;
            }
            let r = sys::wait(-1).map_err(|e| format!("wait for a container: {e}"))?;
            if !ours.remove(&r.pid) {
                // An orphan the harness adopted, not one of these runs.
                continue;
            }
            running -= 1;
            done += 1;
            if r.code != 0 {
                failures += 1;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        if failures > 0 {
            eprintln!("{failures} of {total} crabcan containers failed ({parallel} at a time)");
            self.crabcan_failures += failures;
        }
        Ok(Throughput {
            parallel,
            containers: total,
            failures,
            seconds,
            per_sec: total as f64 / seconds,
        })
    }
}

/// Times fork + exec + wait of the static busybox `true` with no isolation at all: what every
/// runtime's latency and RSS include before it does any work.
fn spawn_floor(rootfs: &Path, runs: usize) -> Result<SpawnFloor> {
    let busybox = rootfs.join("bin/busybox");
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs + 3 {
        let mut cmd = Command::new(&busybox);
        cmd.arg("true");
        sys::use_fork(&mut cmd);
        let t = sys::run_timed(&mut cmd)
            .map_err(|e| format!("cannot run {}: {e}", busybox.display()))?;
        times.push(ms(t.elapsed));
        rss.push(t.reaped.maxrss_kib as f64);
    }
    // The first runs warm the page cache.
    Ok(SpawnFloor {
        ms: Stats::of(&times[3..]),
        rss_kib: Stats::of(&rss[3..]),
    })
}

/// crabcan's own peak RSS. `wait4` cannot separate it: a process's `ru_maxrss` already covers
/// its reaped children and the image it had before `execve`. So the container runs a short
/// `sleep` instead of `true`, and `VmHWM` of the crabcan process (its own image since exec;
/// setup is over by then, it is waiting) and of the container's init are read meanwhile.
fn own_rss(crab: &Runtime, samples: usize) -> Result<Option<OwnRss>> {
    let mut parent = 0;
    let mut anon = 0;
    let mut file = 0;
    let mut init = 0;
    let mut got = 0;
    for _ in 0..samples {
        let mut cmd = Command::new(&crab.program);
        cmd.arg("run")
            .arg("--mount")
            .arg(&crab.rootfs)
            .args(["--", "/bin/sleep", "0.3"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        sys::use_fork(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", crab.program.display()))?;
        let pid = sys::child_pid(&child).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(150));
        let p = oci::status_kib(pid, "VmHWM");
        let a = oci::status_kib(pid, "RssAnon").unwrap_or(0);
        let f = oci::status_kib(pid, "RssFile").unwrap_or(0);
        let i = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|s| s.parse().ok()))
            .and_then(|c: i32| oci::status_kib(c, "VmHWM"));
        let r = sys::wait(pid).map_err(|e| format!("wait for crabcan: {e}"))?;
        if let (Some(p), Some(i), 0) = (p, i, r.code) {
            if p > parent {
                (parent, anon, file) = (p, a, f);
            }
            init = init.max(i);
            got += 1;
        }
    }
    Ok((got > 0).then_some(OwnRss {
        parent_kib: parent,
        anon_kib: anon,
        file_kib: file,
        init_kib: init,
        samples: got,
    }))
}

/// A figure that explains the targets, with no limit and no verdict of its own.
#[derive(Serialize)]
struct Diagnostic {
    what: String,
    #[serde(serialize_with = "report::opt_num")]
    value: Option<f64>,
}

/// One target: what it says, the measured ratio or value, the limit, and the verdict.
#[derive(Serialize)]
struct Target {
    what: String,
    #[serde(serialize_with = "report::opt_num")]
    value: Option<f64>,
    #[serde(serialize_with = "report::num")]
    limit: f64,
    /// `PASS`, `MISS` or `SKIP` (no value to judge).
    result: &'static str,
    pass: Option<bool>,
    #[serde(skip)]
    note: String,
}

fn targets(r: &Results) -> Vec<Target> {
    let crab = r.median(Starter::Crabcan);
    let ran = |k: Starter| r.latency.iter().any(|l| l.starter == k);
    let mut out = Vec::new();
    let mut ratio =
        |what: &str, a: Option<f64>, b: Option<f64>, limit: f64, at_most: bool, note: &str| {
            let value = match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let pass = value.map(|v| if at_most { v <= limit } else { v >= limit });
            out.push(Target {
                what: what.to_string(),
                value,
                limit,
                result: verdict(pass),
                pass,
                note: note.to_string(),
            });
        };
    // The floor that does the same kernel work as the default run (`floor+all`) is the one
    // the run is held to: like with like. The bare floor and the floor with cgroups are
    // diagnostics, below.
    for (k, limit) in [
        (Starter::Bwrap, 0.5),
        (Starter::Crun, 0.5),
        (Starter::Floor, 1.5),
        (Starter::MinFloorAll, 1.15),
    ] {
        let note = match k {
            _ if !ran(k) => "peer not run",
            Starter::MinFloorAll => {
                "the floor with the default run's kernel work: cgroups, mounts, masks, \
                 hostname, loopback, capabilities, seccomp"
            }
            _ => "",
        };
        ratio(
            &format!("crabcan median / {} median", k.name()),
            crab,
            r.median(k),
            limit,
            true,
            note,
        );
    }
    let oci = |name: &str| r.oci.iter().find(|o| o.runtime == name && o.note.is_none());
    let oci_median = |name: &str, f: fn(&oci::OciRow) -> &Stats| {
        oci(name).map(f).filter(|s| s.n > 0).map(|s| s.median)
    };
    let pending = if oci("crabcan").is_none() {
        "crabcan: not built yet (pending the OCI commands)"
    } else {
        ""
    };
    for (peer, limit) in [("runc", 0.25), ("crun", 0.7)] {
        ratio(
            &format!("crabcan run --bundle / {peer} run --bundle"),
            oci_median("crabcan", |o| &o.run_ms),
            oci_median(peer, |o| &o.run_ms),
            limit,
            true,
            pending,
        );
    }
    ratio(
        "crabcan exec / runc exec",
        oci_median("crabcan", |o| &o.exec_ms),
        oci_median("runc", |o| &o.exec_ms),
        0.3,
        true,
        match oci("crabcan") {
            Some(o) if !o.has_exec => "crabcan exec: not built yet (pending the OCI commands)",
            _ => pending,
        },
    );
    ratio(
        "crabcan processes left beside the container after create",
        oci("crabcan")
            .filter(|o| o.resident_checks > 0)
            .map(|o| o.resident.len() as f64),
        Some(1.0),
        0.0,
        true,
        pending,
    );
    for e in ["podman", "ctr"] {
        let row = |rt: &str| {
            r.engines
                .iter()
                .find(|x| x.engine == e && x.runtime == rt && x.note.is_none() && x.total_ms.n > 0)
        };
        // The best crabcan could do is a runtime that takes no time at all: (T − runc's
        // share) / T. Half of that possible gain is the target.
        let ceiling = row("runc").map(|x| engine_ceiling(x.total_ms.median, x.runtime_ms.median));
        let note = match ceiling {
            Some(c) => format!(
                "ceiling (T − runc's share) / T = {c:.3}; half the possible gain: ≤ {:.3}{}",
                (1.0 + c) / 2.0,
                if row("crabcan").is_none() {
                    "; crabcan: not built yet (pending the OCI commands)"
                } else {
                    ""
                }
            ),
            None => "runc's run failed or was not measured".into(),
        };
        ratio(
            &format!("{e} run with crabcan / with runc"),
            row("crabcan").map(|x| x.total_ms.median),
            row("runc").map(|x| x.total_ms.median),
            ceiling.map_or(1.0, |c| (1.0 + c) / 2.0),
            true,
            &note,
        );
    }
    ratio(
        "crabcan own peak RSS (MiB)",
        r.crabcan_own_rss.as_ref().map(|o| o.parent_kib as f64),
        Some(1024.0),
        2.0,
        true,
        "",
    );
    ratio(
        "crabcan median, podman's seccomp / crabcan's",
        r.seccomp_start_ms.map(|s| s.podman_profile),
        r.seccomp_start_ms.map(|s| s.crabcan_default),
        1.05,
        true,
        "",
    );
    let g = |n: usize| r.growth.iter().find(|g| g.mounts == n).map(|g| g.ms.median);
    // The cost of the mounts themselves: latency above the no-mount start.
    let cost = |n: usize| g(n).zip(g(0)).map(|(a, b)| a - b);
    ratio(
        "cost of 1000 mounts / cost of 100 (above 0 mounts)",
        cost(1000),
        cost(100),
        12.0,
        true,
        "",
    );
    let tp = |p: usize| {
        r.throughput
            .iter()
            .find(|t| t.parallel == p)
            .map(|t| t.per_sec)
    };
    ratio(
        "throughput 2 at a time / 1 at a time",
        tp(2),
        tp(1),
        1.7,
        false,
        "",
    );
    out
}

/// The ratio an engine's command would reach with a runtime that takes no time.
fn engine_ceiling(total: f64, runtime_share: f64) -> f64 {
    (total - runtime_share) / total
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "SKIP",
    }
}

fn f2(x: f64) -> String {
    format!("{x:.2}")
}

fn render_table(r: &Results) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "\n== machine: {} · {} CPUs · Linux {} · load {} before, {} after\n",
        r.machine.cpu,
        r.machine.nproc,
        r.machine.kernel,
        r.machine.load_before,
        r.machine.load_after
    ));
    s.push_str(&format!(
        "\n== start latency of /bin/true ({} runs each, interleaved in a fresh order each round, after {} warm-up rounds)\n",
        r.settings.runs, r.settings.warmup
    ));
    let rows: Vec<Vec<String>> = r
        .latency
        .iter()
        .map(|l| {
            vec![
                l.starter.name().to_string(),
                f2(l.ms.min),
                f2(l.ms.median),
                f2(l.ms.p90),
                f2(l.ms.max),
                l.median_ratio_to_crabcan
                    .map_or("-".into(), |x| format!("{x:.2}×")),
                format!("{:.0}", l.rss_kib.median),
                format!("{:.0}", l.rss_kib.max),
                l.failures.to_string(),
            ]
        })
        .collect();
    s.push_str(&report::table(
        &[
            "runtime",
            "min ms",
            "median ms",
            "p90 ms",
            "max ms",
            "median/crabcan",
            "tree RSS KiB (median)",
            "(max)",
            "failed",
        ],
        &rows,
    ));
    for l in &r.latency {
        s.push_str(&format!("  {:<14} {}\n", l.starter.name(), l.command));
    }
    for sk in &r.not_run {
        s.push_str(&format!(
            "  {:<14} NOT RUN: {}\n",
            sk.starter.name(),
            sk.why
        ));
    }
    s.push_str(&format!(
        "  spawn floor: fork+exec+wait of static busybox true, no isolation: median {} ms, \
         maxrss {:.0} KiB (every tree RSS above includes this copy of the harness)\n",
        f2(r.spawn_floor.ms.median),
        r.spawn_floor.rss_kib.median
    ));
    match &r.crabcan_own_rss {
        Some(o) => s.push_str(&format!(
            "  crabcan's own peak RSS (VmHWM of the crabcan process, max of {} samples): {} KiB \
             = {:.2} MiB (while waiting: {} KiB anonymous, {} KiB file pages of the binary and \
             libraries); container init (busybox sleep): {} KiB\n",
            o.samples,
            o.parent_kib,
            o.parent_kib as f64 / 1024.0,
            o.anon_kib,
            o.file_kib,
            o.init_kib
        )),
        None => s.push_str("  crabcan's own peak RSS: could not be sampled\n"),
    }

    s.push_str(&render_oci(r));
    s.push_str(&render_engines(r));

    s.push_str(&format!(
        "\n== growth: crabcan start latency with N --add bind mounts ({} runs each, interleaved)\n",
        r.settings.growth_runs
    ));
    let base = r.growth.first().map(|g| g.ms.median);
    let rows: Vec<Vec<String>> = r
        .growth
        .iter()
        .map(|g| {
            let per = match (base, g.mounts) {
                (Some(b), n) if n > 0 => format!("{:.1}", (g.ms.median - b) * 1e3 / n as f64),
                _ => "-".into(),
            };
            vec![
                g.mounts.to_string(),
                f2(g.ms.min),
                f2(g.ms.median),
                f2(g.ms.p90),
                f2(g.ms.max),
                per,
            ]
        })
        .collect();
    s.push_str(&report::table(
        &[
            "mounts",
            "min ms",
            "median ms",
            "p90 ms",
            "max ms",
            "µs per mount",
        ],
        &rows,
    ));

    s.push_str("\n== throughput: crabcan /bin/true containers\n");
    let rows: Vec<Vec<String>> = r
        .throughput
        .iter()
        .map(|t| {
            vec![
                t.parallel.to_string(),
                t.containers.to_string(),
                format!("{:.2}", t.seconds),
                format!("{:.1}", t.per_sec),
                t.failures.to_string(),
            ]
        })
        .collect();
    s.push_str(&report::table(
        &["at a time", "containers", "seconds", "per second", "failed"],
        &rows,
    ));
    if r.left_behind.is_empty() {
        s.push_str(
            "  left behind: nothing (no new /tmp entries named after this run, no id range lease in \
             /run, no new mounts under the bench directory or /run/crabcan, no orphan still running, every runtime's list empty, \
             the engines' state and cgroups removed)\n",
        );
    } else {
        for l in &r.left_behind {
            s.push_str(&format!("  left behind?: {l}\n"));
        }
    }

    s.push_str("\n== targets\n");
    for t in &r.targets {
        s.push_str(&format!(
            "  {}  {:<58} {} (limit {} {})\n",
            t.result,
            t.what,
            t.value.map_or("n/a".into(), f2),
            if t.what.starts_with("throughput") {
                "≥"
            } else {
                "≤"
            },
            format!("{:.3}", t.limit)
                .trim_end_matches('0')
                .trim_end_matches('.'),
        ));
        if !t.note.is_empty() {
            s.push_str(&format!("        {}\n", t.note));
        }
    }
    s.push_str(&render_diagnostics(r));
    s
}

/// The diagnostics: no limits, they tell the kernel's share of the gap from crabcan's.
fn render_diagnostics(r: &Results) -> String {
    let mut s = String::from("\n== diagnostics (no limit: where the gap to the floor goes)\n");
    for d in &r.diagnostics {
        s.push_str(&format!(
            "  DIAG  {:<58} {}\n",
            d.what,
            d.value.map_or("n/a".into(), f2)
        ));
    }
    match &r.floor_split_ms {
        Some(f) => {
            s.push_str(&format!(
                "        floor+cgroups {} ms -> floor+all {} ms: {:+.2} ms, the kernel work \
                 crabcan's default run adds (mounts, masks, hostname, loopback, capabilities, \
                 seccomp)\n",
                f2(f.floor_cgroups),
                f2(f.floor_all),
                f.kernel_added
            ));
            s.push_str(&format!(
                "        floor+all {} ms -> crabcan {} ms: {:+.2} ms, crabcan's own overhead \
                 (its processes, id-range lease, state, planning)\n",
                f2(f.floor_all),
                f2(f.crabcan),
                f.crabcan_own
            ));
        }
        None => s.push_str("        no split: floor+cgroups, floor+all or crabcan has no median\n"),
    }
    s
}

/// The OCI rows: medians of each step, memory, and what `create` left running.
fn render_oci(r: &Results) -> String {
    let mut s = format!(
        "\n== OCI commands, runc's command line ({} rounds, interleaved in a fresh order each round after {} warm-up rounds; \
         ms are medians)\n",
        r.settings.runs, r.settings.warmup
    );
    let runc_run = r
        .oci
        .iter()
        .find(|o| o.runtime == "runc" && o.run_ms.n > 0)
        .map(|o| o.run_ms.median);
    let cell = |st: &Stats| {
        if st.n == 0 {
            "-".to_string()
        } else {
            f2(st.median)
        }
    };
    let kib = |st: &Stats| {
        if st.n == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", st.max)
        }
    };
    let rows: Vec<Vec<String>> = r
        .oci
        .iter()
        .map(|o| {
            if let Some(note) = &o.note {
                let mut v = vec![o.runtime.to_string(), note.clone()];
                v.extend(std::iter::repeat_n(String::new(), 9));
                return v;
            }
            vec![
                o.runtime.to_string(),
                cell(&o.run_ms),
                match runc_run {
                    Some(b) if o.run_ms.n > 0 => format!("{:.2}×", o.run_ms.median / b),
                    _ => "-".into(),
                },
                cell(&o.create_ms),
                cell(&o.start_ms),
                cell(&o.delete_ms),
                if o.has_exec {
                    cell(&o.exec_ms)
                } else {
                    "not built yet".into()
                },
                kib(&o.create_maxrss_kib),
                kib(&o.created_process_vmhwm_kib),
                kib(&o.exec_maxrss_kib),
                if o.resident_checks == 0 {
                    "-".into()
                } else if o.resident.is_empty() {
                    "nothing".into()
                } else {
                    o.resident.join(", ")
                },
            ]
        })
        .collect();
    // A note spans the row: print it after the name instead of in the columns.
    let (noted, rows): (Vec<_>, Vec<_>) = rows.into_iter().partition(|v| v[2].is_empty());
    s.push_str(&report::table(
        &[
            "runtime",
            "run --bundle",
            "/runc",
            "create",
            "start",
            "delete",
            "exec",
            "create KiB",
            "created proc KiB",
            "exec KiB",
            "resident after create",
        ],
        &rows,
    ));
    for v in noted {
        s.push_str(&format!("  {:<14} {}\n", v[0], v[1]));
    }
    s.push_str(
        "  KiB: peak RSS (max over the runs): create = ru_maxrss of `create` and what it \
         reaped; created proc = VmHWM of the container's process waiting for start (still \
         runtime code); exec = ru_maxrss of `exec` (the exec'd busybox true included)\n",
    );
    for o in &r.oci {
        if o.failures > 0 {
            s.push_str(&format!(
                "  {} failed {} time(s); first: {}\n",
                o.runtime,
                o.failures,
                o.first_failure.as_deref().unwrap_or("?")
            ));
        }
    }
    s
}

/// One column of the OCI rows: its name and where its figures are.
type OciStep = (&'static str, fn(&oci::OciRow) -> &Stats);

/// The OCI steps' medians per runtime, as grouped bars.
fn oci_chart(r: &Results) -> String {
    let steps: [OciStep; 5] = [
        ("run --bundle", |o| &o.run_ms),
        ("create", |o| &o.create_ms),
        ("start", |o| &o.start_ms),
        ("delete", |o| &o.delete_ms),
        ("exec", |o| &o.exec_ms),
    ];
    let groups: Vec<&str> = steps.iter().map(|(n, _)| *n).collect();
    let series: Vec<(&str, Vec<Option<f64>>)> = r
        .oci
        .iter()
        .map(|o| {
            let values = steps
                .iter()
                .map(|(_, f)| Some(f(o)).filter(|st| st.n > 0).map(|st| st.median))
                .collect();
            (o.runtime, values)
        })
        .collect();
    let subtitle = format!(
        "{} · {} CPUs · Linux {} · median of {} interleaved rounds",
        r.machine.cpu, r.machine.nproc, r.machine.kernel, r.settings.runs
    );
    report::bars_svg(
        "OCI commands with runc's command line: /bin/true",
        &subtitle,
        "ms (median)",
        &groups,
        &series,
    )
}

/// The end-to-end rows: each engine's command with each runtime, and the runtime's share.
fn render_engines(r: &Results) -> String {
    let mut s = format!(
        "\n== end to end through an engine: /bin/true ({} runs each, interleaved; medians; \
         the runtime called through a timestamping wrapper)\n",
        r.settings.engine_runs
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for e in &r.engines {
        if let Some(n) = &e.note {
            notes.push(format!("  {} with {}: {n}\n", e.engine, e.runtime));
            continue;
        }
        let share = if e.total_ms.median > 0.0 {
            format!("{:.0}%", 100.0 * e.runtime_ms.median / e.total_ms.median)
        } else {
            "-".into()
        };
        rows.push(vec![
            e.engine.to_string(),
            e.runtime.to_string(),
            f2(e.total_ms.median),
            f2(e.total_ms.p90),
            f2(e.runtime_ms.median),
            share,
            format!("{:.0}", e.calls),
            e.failures.to_string(),
        ]);
    }
    s.push_str(&report::table(
        &[
            "engine",
            "runtime",
            "total ms",
            "p90 ms",
            "runtime's ms",
            "share",
            "calls",
            "failed",
        ],
        &rows,
    ));
    for n in notes {
        s.push_str(&n);
    }
    s.push_str(
        "  podman: podman --runtime X run --rm --network none IMAGE /bin/true (private store, \
         cgroupfs); ctr: ctr run --rm --runc-binary X IMAGE ID /bin/true (private containerd)\n",
    );
    s
}

/// `results.json`: the results as they are, two-space indented.
fn render_json(r: &Results) -> Result<String> {
    serde_json::to_string_pretty(r)
        .map(|json| json + "\n")
        .map_err(|e| format!("cannot write the results as JSON: {e}"))
}
