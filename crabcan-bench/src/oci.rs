//! The OCI rows: any runtime binary with runc's command line (`--root DIR create/start/
//! delete/run/exec/kill`), measured side by side and interleaved: `run --bundle` of
//! `/bin/true`, the separate steps `create`, `start` and `delete`, `exec` into a running
//! container, the peak memory of the runtime's processes during `create` and `exec`, and
//! whether anything of the runtime stays resident once `create` has returned.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use xtask::util::Result;

use crate::report::Stats;
use crate::sys;

/// A runtime with runc's command line.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// Short name in the table (`runc`, `crun`, `crabcan`).
    pub name: &'static str,
    /// The binary.
    pub program: PathBuf,
    /// Its `--root`: private state under the bench directory.
    pub state: PathBuf,
    /// crun's mount namespace on a hybrid cgroup host, entered by every call.
    pub ns: Option<Arc<sys::HeldNamespace>>,
    /// Whether `exec` exists (crabcan may have `create` before `exec`).
    pub has_exec: bool,
}

/// Which OCI commands a crabcan binary has, asked through `--help` (which runs nothing).
pub fn crabcan_support(program: &Path) -> (bool, bool) {
    let has = |cmd: &str, flag: &str| {
        Command::new(program)
            .args([cmd, "--help"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(flag))
    };
    let lifecycle = has("create", "--bundle") && has("start", "Usage") && has("delete", "Usage");
    (lifecycle, lifecycle && has("exec", "Usage"))
}

impl OciRuntime {
    /// `PROGRAM --root STATE ARGS…` with stdio on /dev/null, forked (see [`sys::use_fork`]) or
    /// entered into crun's namespace.
    pub fn cmd<S: Into<OsString> + Clone>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("--root")
            .arg(&self.state)
            .args(args.iter().cloned().map(Into::into))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.ns {
            Some(ns) => ns.enter(&mut c),
            None => sys::use_fork(&mut c),
        }
        c
    }

    /// Runs `ARGS…` once with stderr captured; its last line when it fails.
    fn check<S: Into<OsString> + Clone>(&self, args: &[S]) -> std::result::Result<(), String> {
        let mut c = self.cmd(args);
        c.stderr(Stdio::piped());
        let out = c
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} ({})",
                xtask::util::last_line(&out.stderr),
                out.status
            ))
        }
    }
}

/// One runtime's OCI figures.
#[derive(Serialize)]
pub struct OciRow {
    pub runtime: &'static str,
    /// Why it has no figures (crabcan without the OCI commands), when it has none.
    pub note: Option<String>,
    pub run_ms: Stats,
    pub create_ms: Stats,
    pub start_ms: Stats,
    pub delete_ms: Stats,
    pub exec_ms: Stats,
    /// Whether the binary has `exec` (crabcan may have the lifecycle before it).
    pub has_exec: bool,
    /// `ru_maxrss` of `create` and what it reaped: the largest runtime process during create.
    pub create_maxrss_kib: Stats,
    /// `VmHWM` of the container's process while it waits for `start` (runtime code still).
    pub created_process_vmhwm_kib: Stats,
    /// `ru_maxrss` of `exec` and what it reaped (the exec'd `/bin/true` included).
    pub exec_maxrss_kib: Stats,
    /// How many times the processes left by `create` were checked…
    pub resident_checks: usize,
    /// … and what was found beside the container's own process (empty: nothing resident).
    pub resident: Vec<String>,
    pub failures: usize,
    /// The first failure's message.
    pub first_failure: Option<String>,
}

impl OciRow {
    fn empty(runtime: &'static str, note: Option<String>) -> OciRow {
        OciRow {
            runtime,
            note,
            run_ms: Stats::default(),
            create_ms: Stats::default(),
            start_ms: Stats::default(),
            delete_ms: Stats::default(),
            exec_ms: Stats::default(),
            has_exec: false,
            create_maxrss_kib: Stats::default(),
            created_process_vmhwm_kib: Stats::default(),
            exec_maxrss_kib: Stats::default(),
            resident_checks: 0,
            resident: Vec::new(),
            failures: 0,
            first_failure: None,
        }
    }
}

#[derive(Default)]
struct Series {
    run: Vec<f64>,
    create: Vec<f64>,
    start: Vec<f64>,
    delete: Vec<f64>,
    exec: Vec<f64>,
    create_rss: Vec<f64>,
    created_hwm: Vec<f64>,
    exec_rss: Vec<f64>,
    checks: usize,
    resident: Vec<String>,
    failures: usize,
    first_failure: Option<String>,
}

impl Series {
    fn fail(&mut self, why: String) {
        self.failures += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(why);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Measures every runtime in `rts`, interleaved, `rounds` times after `warmup` rounds (not
/// kept). `true_bundle` runs `/bin/true`, `sleep_bundle` a long sleep (the exec target).
/// `missing` are rows without figures (crabcan without the OCI commands yet).
pub fn measure(
    rts: &[OciRuntime],
    missing: Vec<OciRow>,
    true_bundle: &Path,
    sleep_bundle: &Path,
    rounds: usize,
    warmup: usize,
) -> Result<Vec<OciRow>> {
    // The harness is a subreaper (set up by the caller): what create leaves comes to it.
    let result = measure_all(rts, true_bundle, sleep_bundle, rounds, warmup);
    sys::reap_exited();
    let mut rows = result?;
    rows.extend(missing);
    Ok(rows)
}

fn measure_all(
    rts: &[OciRuntime],
    true_bundle: &Path,
    sleep_bundle: &Path,
    rounds: usize,
    warmup: usize,
) -> Result<Vec<OciRow>> {
    let mut series: Vec<Series> = rts.iter().map(|_| Series::default()).collect();
    let mut seq = 0u64;
    let mut next_id = || {
        seq += 1;
        format!("cb-oci-{}-{seq}", std::process::id())
    };
    let pid_file = crate::setup::bench_dir().join("oci.pid");
    println!(
        "oci: {rounds} rounds of run --bundle, create/start/delete, interleaved in a fresh order \
         each round"
    );
    let mut order = crate::order::RoundOrder::new(rts.len());
    for round in 0..warmup + rounds {
        let keep = round >= warmup;
        for &i in order.next_round() {
            let (rt, s) = (&rts[i], &mut series[i]);
            let mut scratch = Series::default();
            let s = if keep { s } else { &mut scratch };
            run_once(rt, true_bundle, &next_id(), s)?;
            lifecycle_once(rt, true_bundle, &next_id(), &pid_file, s)?;
        }
    }
    let _ = fs::remove_file(&pid_file);

    // exec: one long-running container per runtime, exec'd into in turn.
    let mut running = Vec::new();
    for (rt, s) in rts.iter().zip(series.iter_mut()) {
        if !rt.has_exec {
            running.push(None);
            continue;
        }
        let id = next_id();
        let mut c = rt.cmd(&[
            OsString::from("run"),
            "--detach".into(),
            "--bundle".into(),
            sleep_bundle.into(),
            id.clone().into(),
        ]);
        // No pipes: the container would hold them open.
        let created = match sys::run_timed(&mut c) {
            Ok(t) if t.reaped.code == 0 => Ok(()),
            Ok(t) => Err(format!("{} run --detach exited {}", rt.name, t.reaped.code)),
            Err(e) => Err(format!("cannot run {}: {e}", rt.name)),
        };
        match created {
            Ok(()) => running.push(Some(id)),
            Err(e) => {
                s.fail(e);
                running.push(None);
            }
        }
    }
    println!("oci: {rounds} rounds of exec /bin/true into a running container, interleaved");
    let exec_result = (|| -> Result<()> {
        for round in 0..warmup + rounds {
            for ((rt, s), id) in rts.iter().zip(series.iter_mut()).zip(&running) {
                let Some(id) = id else { continue };
                let t = sys::run_timed(&mut rt.cmd(&["exec", id.as_str(), "/bin/true"]))
                    .map_err(|e| format!("cannot run {}: {e}", rt.program.display()))?;
                if t.reaped.code != 0 {
                    s.fail(format!("{} exec exited {}", rt.name, t.reaped.code));
                } else if round >= warmup {
                    s.exec.push(ms(t.elapsed));
                    s.exec_rss.push(t.reaped.maxrss_kib as f64);
                }
            }
        }
        Ok(())
    })();
    for (rt, id) in rts.iter().zip(&running) {
        if let Some(id) = id {
            let _ = rt.check(&["kill", id.as_str(), "KILL"]);
            // The sleeping container was reparented to the harness (a subreaper).
            std::thread::sleep(Duration::from_millis(50));
            sys::reap_exited();
            if let Err(e) = rt.check(&["delete", "--force", id.as_str()]) {
                eprintln!("{} delete --force {id}: {e}", rt.name);
            }
        }
    }
    exec_result?;

    Ok(rts
        .iter()
        .zip(series)
        .map(|(rt, s)| OciRow {
            runtime: rt.name,
            note: None,
            run_ms: Stats::of(&s.run),
            create_ms: Stats::of(&s.create),
            start_ms: Stats::of(&s.start),
            delete_ms: Stats::of(&s.delete),
            exec_ms: Stats::of(&s.exec),
            has_exec: rt.has_exec,
            create_maxrss_kib: Stats::of(&s.create_rss),
            created_process_vmhwm_kib: Stats::of(&s.created_hwm),
            exec_maxrss_kib: Stats::of(&s.exec_rss),
            resident_checks: s.checks,
            resident: s.resident,
            failures: s.failures,
            first_failure: s.first_failure,
        })
        .collect())
}

fn run_once(rt: &OciRuntime, bundle: &Path, id: &str, s: &mut Series) -> Result<()> {
    let mut c = rt.cmd(&[
        OsString::from("run"),
        "--bundle".into(),
        bundle.into(),
        id.into(),
    ]);
    let t = sys::run_timed(&mut c).map_err(|e| format!("cannot run {}: {e}", rt.name))?;
    if t.reaped.code == 0 {
        s.run.push(ms(t.elapsed));
    } else {
        let why = format!("{} run exited {}", rt.name, t.reaped.code);
        let _ = rt.check(&["delete", "--force", id]);
        s.fail(why);
    }
    sys::reap_exited();
    Ok(())
}

/// create (with the residency check and the waiting process's memory), start, wait, delete.
fn lifecycle_once(
    rt: &OciRuntime,
    bundle: &Path,
    id: &str,
    pid_file: &Path,
    s: &mut Series,
) -> Result<()> {
    let _ = fs::remove_file(pid_file);
    let mut c = rt.cmd(&[
        OsString::from("create"),
        "--bundle".into(),
        bundle.into(),
        "--pid-file".into(),
        pid_file.into(),
        id.into(),
    ]);
    let t = sys::run_timed(&mut c).map_err(|e| format!("cannot run {}: {e}", rt.name))?;
    let pid: Option<i32> = fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let Some(pid) = pid.filter(|_| t.reaped.code == 0) else {
        s.fail(format!(
            "{} create exited {} (pid file: {pid:?})",
            rt.name, t.reaped.code
        ));
        let _ = rt.check(&["delete", "--force", id]);
        sys::reap_exited();
        return Ok(());
    };
    s.create.push(ms(t.elapsed));
    s.create_rss.push(t.reaped.maxrss_kib as f64);
    // Whatever create left running was reparented to the harness: only the container's
    // process may be there.
    s.checks += 1;
    for other in sys::own_children().into_iter().filter(|p| *p != pid) {
        let stat = fs::read_to_string(format!("/proc/{other}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if zombie {
            continue;
        }
        let exe = fs::read_link(format!("/proc/{other}/exe")).unwrap_or_default();
        let what = format!("{} ({})", exe.display(), comm(other));
        if !s.resident.contains(&what) {
            s.resident.push(what);
        }
    }
    if let Some(hwm) = status_kib(pid, "VmHWM") {
        s.created_hwm.push(hwm as f64);
    }
    let t = sys::run_timed(&mut rt.cmd(&["start", id]))
        .map_err(|e| format!("cannot run {}: {e}", rt.name))?;
    if t.reaped.code == 0 {
        s.start.push(ms(t.elapsed));
    } else {
        s.fail(format!("{} start exited {}", rt.name, t.reaped.code));
    }
    // The container (our child now) ends with /bin/true; delete needs it stopped.
    if sys::wait(pid).is_err() {
        // Not reparented to us (a runtime that keeps a parent): wait until it is gone.
        for _ in 0..1000 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let t = sys::run_timed(&mut rt.cmd(&["delete", id]))
        .map_err(|e| format!("cannot run {}: {e}", rt.name))?;
    if t.reaped.code == 0 {
        s.delete.push(ms(t.elapsed));
    } else {
        s.fail(format!("{} delete exited {}", rt.name, t.reaped.code));
        let _ = rt.check(&["delete", "--force", id]);
    }
    sys::reap_exited();
    Ok(())
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// A `kB` field (`VmHWM`, `RssAnon`, …) of `/proc/PID/status`.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The row of a runtime that cannot be measured yet.
pub fn not_built(runtime: &'static str, why: &str) -> OciRow {
    OciRow::empty(runtime, Some(why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime with runc's command line in shell: `create` starts a sleeping "container",
    /// and with `leave` also a second process that stays behind, as a resident monitor would.
    fn fake_runtime(dir: &Path, leave: bool) -> OciRuntime {
        let script = dir.join("fake-runtime");
        let extra = if leave {
            "sleep 29 & echo $! > \"$root/monitor\""
        } else {
            ":"
        };
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nroot=$2; shift 2\ncase $1 in\n\
                 create) sleep 30 & echo $! > \"$5\"; echo $! > \"$root/pid\"; {extra} ;;\n\
                 start) kill \"$(cat \"$root/pid\")\" ;;\n\
                 delete) [ -f \"$root/monitor\" ] && kill \"$(cat \"$root/monitor\")\"; : ;;\n\
                 esac\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        OciRuntime {
            name: "fake",
            program: script,
            state: dir.to_path_buf(),
            ns: None,
            has_exec: false,
        }
    }

    #[test]
    fn a_process_left_by_create_is_found_and_the_container_is_not() {
        let _children = sys::children_lock();
        let base = std::env::temp_dir().join(format!("crabcan-bench-oci-{}", std::process::id()));
        sys::set_subreaper(true).unwrap();
        let mut found = Vec::new();
        let mut seen = Vec::new();
        for leave in [false, true] {
            let dir = base.join(if leave { "leave" } else { "clean" });
            fs::create_dir_all(&dir).unwrap();
            let rt = fake_runtime(&dir, leave);
            let mut s = Series::default();
            lifecycle_once(&rt, &dir, "x", &dir.join("pidfile"), &mut s).unwrap();
            assert_eq!(
                (s.failures, s.checks, s.create.len(), s.delete.len()),
                (0, 1, 1, 1),
                "{:?}",
                s.first_failure
            );
            // The monitor may not have exec'd sleep yet (then it is the script's fork); other
            // tests' children may show up too, and do not count.
            found.push(
                s.resident
                    .iter()
                    .any(|r| r.ends_with("(sleep)") || r.ends_with("(fake-runtime)")),
            );
            seen.push(s.resident.clone());
        }
        sys::reap_exited();
        let _ = fs::remove_dir_all(&base);
        assert_eq!(
            found,
            [false, true],
            "resident processes found (clean, leave); beside the container: {seen:?}"
        );
    }
}
