//! A container's cgroup on whatever host runs the tests (this project's hybrid host, the
//! pure v2 test VM), as root, proved by effect on a shell placed in it: a memory hog is
//! OOM-killed, a fork loop stops at pids.max, a frozen counter stops and a thawed one goes
//! on, a raised pids limit lets a failed fork succeed, a device outside the rules does not
//! open, and no directory is left in any hierarchy after success, failure or a killed owner.
//!
//! The shells are plain children (`Command::new("sh")`) that wait for a line on stdin before
//! running their script, so they are in the cgroup before they do anything. Every cgroup's
//! name carries the test's name and this process's pid, so concurrent runs never meet.

mod support;

use crabcan_cgroups::{
    CgroupPath, ContainerCgroup, Cpu, Layout, Memory, Pids, Resources, default_rules,
};
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{LIMIT, finish};

fn layout() -> Layout {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates cgroups: run it as root (CI does)"
    );
    Layout::detect().expect("detect the cgroup layout")
}

/// crabcan run's placement with a name unique to the test and this process.
fn run_path(test: &str) -> CgroupPath {
    CgroupPath::run(&crabcan_cgroups::run_leaf(
        &format!("t{test}"),
        std::process::id(),
    ))
    .unwrap()
}

fn require(layout: &Layout, controllers: &[&str]) {
    for c in controllers {
        assert!(
            layout.has(c),
            "this test needs the {c} controller, which this host lacks: {}",
            layout.describe()
        );
    }
}

/// A shell that runs `script` once released; stdout is piped for line-wise reading.
fn gated(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

/// Reads stdout lines until one equals `want`; returns the lines before it.
fn until(child: &mut Child, want: &str) -> Vec<String> {
    let out = child.stdout.as_mut().unwrap();
    let mut r = BufReader::new(out);
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        let n = r.read_line(&mut l).unwrap();
        assert!(n > 0, "the shell ended before '{want}': {lines:?}");
        let l = l.trim_end().to_string();
        if l == want {
            return lines;
        }
        lines.push(l);
    }
}

/// Removes the cgroup (killing what is in it, thawing it first) should the test fail
/// before it does so itself.
struct Guard(Option<ContainerCgroup>);

impl Guard {
    fn remove(mut self) {
        self.0.take().unwrap().remove().unwrap();
    }
}

impl std::ops::Deref for Guard {
    type Target = ContainerCgroup;
    fn deref(&self) -> &ContainerCgroup {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            let _ = cg.remove();
        }
    }
}

fn create(l: &Layout, path: &CgroupPath, r: &Resources) -> Guard {
    Guard(Some(ContainerCgroup::create(l, path, r).unwrap()))
}

fn assert_gone(paths: &[PathBuf]) {
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

fn mem(l: &Layout, limit: i64) -> Resources {
    // memory+swap equal to memory: nothing can be swapped out. A v1 kernel booted without
    // swap accounting has no memsw files; then there is no swap limit to set.
    let swap_counted = match l.v1_of("memory") {
        Some(h) => h.mount_point.join("memory.memsw.limit_in_bytes").exists(),
        None => true,
    };
    Resources {
        memory: Some(Memory {
            limit: Some(limit),
            swap: swap_counted.then_some(limit),
            ..Memory::default()
        }),
        ..Resources::default()
    }
}

#[test]
fn memory_hog_is_oom_killed_and_nothing_is_left() {
    let l = layout();
    require(&l, &["memory"]);
    let hog = "x=$(head -c 64m /dev/zero | tr '\\0' a) 2>/dev/null; echo held ${#x}";
    for (limit, killed) in [(32 << 20, true), (512 << 20, false)] {
        let cg = create(&l, &run_path("oom"), &mem(&l, limit));
        let paths = cg.paths();
        assert!(
            paths.len() >= 2 || l.mode() == crabcan_cgroups::Mode::Unified,
            "{paths:?}"
        );
        let mut child = gated(hog);
        cg.add_process(child.id() as i32).unwrap();
        release(&mut child);
        let (st, out, _) = finish(&mut child, LIMIT);
        if killed {
            assert_eq!(st.signal(), Some(9), "not OOM-killed under {limit}: {out}");
            assert!(cg.oom_kills() >= 1, "no OOM kill counted");
        } else {
            assert_eq!(out, format!("held {}\n", 64 << 20), "{st:?}");
            assert_eq!(cg.oom_kills(), 0);
        }
        cg.remove();
        assert_gone(&paths);
    }
}

/// A child shell starts 30 sleepers; the outer shell then says `done` with builtins only and
/// becomes a sleeper itself (no fork).
const FORKS: &str = "sh -c 'for i in $(seq 1 30); do sleep 100 & done; echo all-started' 2>/dev/null; echo done; exec sleep 100";

#[test]
fn pids_limit_stops_a_fork_loop() {
    let l = layout();
    require(&l, &["pids"]);
    for (limit, all) in [(8, false), (64, true)] {
        let r = Resources {
            pids: Some(Pids { limit }),
            ..Resources::default()
        };
        let cg = create(&l, &run_path("pids"), &r);
        let paths = cg.paths();
        let mut child = gated(FORKS);
        cg.add_process(child.id() as i32).unwrap();
        release(&mut child);
        let lines = until(&mut child, "done");
        let n = cg.pids().unwrap().len();
        assert_eq!(cg.stats().unwrap().pids.limit, limit as u64);
        if all {
            assert_eq!(lines, ["all-started"]);
            // The outer shell and 30 sleepers.
            assert_eq!(n, 31, "{:?}", cg.pids());
        } else {
            assert!(lines.is_empty(), "all 30 sleepers started under pids 8");
            assert!((2..8).contains(&n), "{n} processes under pids 8");
        }
        cg.remove();
        let _ = support::wait_within(&mut child, LIMIT);
        assert_gone(&paths);
    }
}

#[test]
fn a_fork_refused_at_the_limit_succeeds_after_update() {
    let l = layout();
    require(&l, &["pids"]);
    let two = Resources {
        pids: Some(Pids { limit: 2 }),
        ..Resources::default()
    };
    let cg = create(&l, &run_path("update"), &two);
    let paths = cg.paths();
    // The shell and the inner shell fill pids 2: the inner one's fork fails (which ends
    // it); the outer one waits for a second line and tries again after the update.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "read go; sh -c '(true) && echo forked' 2>/dev/null || echo failed; echo step; \
             read again; sh -c '(true) && echo forked' 2>/dev/null || echo failed; echo end",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cg.add_process(child.id() as i32).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(until(&mut child, "step"), ["failed"]);
    cg.update(&Resources {
        pids: Some(Pids { limit: 16 }),
        ..Resources::default()
    })
    .unwrap();
    stdin.write_all(b"again\n").unwrap();
    assert_eq!(until(&mut child, "end"), ["forked"]);
    drop(stdin);
    let _ = support::wait_within(&mut child, LIMIT);
    cg.remove();
    assert_gone(&paths);
}

/// The counter's last value, from the file the shell rewrites. The shell truncates before
/// it writes: on a loaded machine it can be preempted in between for a while.
fn counter(file: &std::path::Path) -> u64 {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(t) = std::fs::read_to_string(file)
            && let Ok(n) = t.trim().parse()
        {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no number in {}", file.display());
}

#[test]
fn freeze_stops_a_counter_and_thaw_restarts_it() {
    let l = layout();
    let cg = create(&l, &run_path("freeze"), &Resources::default());
    let paths = cg.paths();
    let file = std::env::temp_dir().join(format!("crabcan-freeze-{}", std::process::id()));
    let mut child = gated(&format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; done",
        file.display()
    ));
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    let start = counter(&file);
    let deadline = Instant::now() + LIMIT;
    while counter(&file) < start + 5 {
        assert!(Instant::now() < deadline, "the counter does not count");
    }
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    // Frozen between truncating and writing, the file may be empty: compare the text.
    let raw = || std::fs::read_to_string(&file).unwrap();
    let frozen_text = raw();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(raw(), frozen_text, "the counter moved while frozen");
    let a: u64 = frozen_text.trim().parse().unwrap_or(0);
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    let deadline = Instant::now() + LIMIT;
    while counter(&file) <= a {
        assert!(
            Instant::now() < deadline,
            "the counter did not resume after thaw"
        );
    }
    // A frozen cgroup is removed too: remove thaws so its processes can die.
    cg.freeze().unwrap();
    cg.remove();
    let st = support::wait_within(&mut child, LIMIT);
    assert_eq!(st.signal(), Some(9));
    let _ = std::fs::remove_file(&file);
    assert_gone(&paths);
}

#[test]
fn device_rules_deny_a_node_outside_them() {
    let l = layout();
    // /dev/kmsg (char 1:11) is outside the default rules; /dev/null (1:3) is inside.
    let script = "if (: < /dev/kmsg) 2>/dev/null; then echo kmsg-opened; else echo kmsg-denied; fi; \
                  if (: < /dev/null) 2>/dev/null; then echo null-opened; fi";
    for (rules, want) in [
        (Some(default_rules()), "kmsg-denied\nnull-opened\n"),
        // The control: without the rules the same shell opens it.
        (None, "kmsg-opened\nnull-opened\n"),
    ] {
        let r = Resources {
            devices: rules,
            ..Resources::default()
        };
        let cg = create(&l, &run_path("devices"), &r);
        let paths = cg.paths();
        let mut child = gated(script);
        cg.add_process(child.id() as i32).unwrap();
        release(&mut child);
        let (st, out, err) = finish(&mut child, LIMIT);
        assert!(st.success(), "{err}");
        assert_eq!(out, want);
        cg.remove();
        assert_gone(&paths);
    }
}

#[test]
fn open_from_a_recorded_path_kill_all_and_stats() {
    let l = layout();
    let path = run_path("open");
    let cg = create(&l, &path, &Resources::default());
    let paths = cg.paths();
    let mut child = gated("sleep 100 & sleep 100 & echo up; wait");
    let pid = child.id() as i32;
    cg.add_process(pid).unwrap();
    release(&mut child);
    until(&mut child, "up");
    // Another process would have only the layout and the recorded path.
    let again = ContainerCgroup::open(&Layout::detect().unwrap(), &path).unwrap();
    assert_eq!(again.paths(), paths);
    let recorded = ContainerCgroup::open_paths(&l, &path, &paths).unwrap();
    assert_eq!(recorded.paths(), paths);
    assert_eq!(recorded.pids().unwrap().len(), 3);
    assert!(
        ContainerCgroup::open_paths(&l, &path, &[PathBuf::from("/tmp")])
            .unwrap_err()
            .to_string()
            .contains("under no cgroup hierarchy")
    );
    let pids = again.pids().unwrap();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.contains(&pid));
    let s = again.stats().unwrap();
    if l.has("pids") {
        assert_eq!(s.pids.current, 3);
    }
    if l.has("memory") {
        assert!(s.memory.usage.usage > 0, "{s:?}");
    }
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["cpu"]["usage"].is_object() && json["memory"]["usage"].is_object());
    again.kill_all(Signal::SIGTERM).unwrap();
    let st = support::wait_within(&mut child, LIMIT);
    assert_eq!(st.signal(), Some(15));
    let deadline = Instant::now() + LIMIT;
    while !again.pids().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?} survived kill_all",
            again.pids()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    again.remove().unwrap();
    assert_gone(&paths);
    let e = ContainerCgroup::open(&l, &path).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn a_failed_create_leaves_nothing() {
    let l = layout();
    require(&l, &["cpuset"]);
    let path = run_path("fail");
    // CPU 4095 exists on no machine this runs on: the kernel refuses the write.
    let r = Resources {
        cpu: Some(Cpu {
            cpus: Some("4095".into()),
            ..Cpu::default()
        }),
        ..Resources::default()
    };
    let e = ContainerCgroup::create(&l, &path, &r)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot write '4095' to ") && e.contains("(cpuset cpus)"),
        "{e}"
    );
    let e = ContainerCgroup::open(&l, &path).unwrap_err().to_string();
    assert!(e.contains("does not exist in any hierarchy"), "{e}");
}

#[test]
fn a_run_cgroup_whose_owner_died_is_swept_in_every_hierarchy() {
    let l = layout();
    // A dead owner: a child that has exited and been reaped.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = CgroupPath::run(&crabcan_cgroups::run_leaf("tstale", dead_pid)).unwrap();
    let old = create(&l, &stale, &Resources::default());
    let old_paths = old.paths();
    std::mem::forget(old);
    // An engine-named cgroup beside it is never touched, nor the default cgroup of an OCI
    // container whose id merely looks like a run's name.
    let foreign: Vec<PathBuf> = old_paths
        .iter()
        .flat_map(|p| {
            [
                p.with_file_name(format!("docker-{dead_pid}")),
                p.with_file_name(format!("crabcan-tstale-{dead_pid}")),
            ]
        })
        .collect();
    for f in &foreign {
        std::fs::create_dir(f).unwrap();
    }
    let next = create(&l, &run_path("sweeper"), &Resources::default());
    // Creation leaves them (the sweep is no part of a start's path) ...
    assert!(old_paths.iter().all(|p| p.exists()));
    // ... the run sweeps them once its container runs.
    next.sweep_dead_runs();
    assert_gone(&old_paths);
    for f in &foreign {
        assert!(f.exists(), "{} was swept", f.display());
        std::fs::remove_dir(f).unwrap();
    }
    let paths = next.paths();
    next.remove();
    assert_gone(&paths);
}

#[test]
fn a_relative_path_goes_under_the_callers_cgroup() {
    let l = layout();
    let name = format!("crabcan-trel-{}", std::process::id());
    let path = CgroupPath::parse(&name).unwrap();
    let cg = create(&l, &path, &Resources::default());
    let paths = cg.paths();
    for h in &l.v1 {
        let want = h.own_dir().unwrap().join(&name);
        assert!(paths.contains(&want), "{} not in {paths:?}", want.display());
        assert!(want.is_dir());
    }
    if let Some(v2) = &l.v2 {
        assert!(
            paths.contains(&v2.own_dir().unwrap().join(&name)),
            "{paths:?}"
        );
    }
    cg.remove();
    assert_gone(&paths);
}

/// The container's file `name` in the hierarchy that holds `controller`.
fn file_of(cg: &ContainerCgroup, l: &Layout, controller: &str, name: &str) -> String {
    let dir = match l.v1_of(controller) {
        Some(h) => cg
            .paths()
            .into_iter()
            .find(|p| p.starts_with(&h.mount_point))
            .unwrap(),
        None => cg.v2_dir().unwrap().to_path_buf(),
    };
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("read {name} in {}: {e}", dir.display()))
        .trim()
        .to_string()
}

#[test]
fn memory_and_swap_updates_never_fail_half_way() {
    let l = layout();
    require(&l, &["memory"]);
    let cg = create(&l, &run_path("memsw"), &mem(&l, 64 << 20));
    let (limit_file, swap_file) = if l.v1_of("memory").is_some() {
        ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    } else {
        ("memory.max", "memory.swap.max")
    };
    // Up (memsw must go first on v1), down (the limit must go first), unlimited and back.
    for mib in [256i64, 32, 128] {
        cg.update(&mem(&l, mib << 20))
            .unwrap_or_else(|e| panic!("update to {mib} MiB: {e}"));
        assert_eq!(
            file_of(&cg, &l, "memory", limit_file),
            (mib << 20).to_string()
        );
        let swap = file_of(&cg, &l, "memory", swap_file);
        if l.v1_of("memory").is_some() {
            assert_eq!(swap, (mib << 20).to_string());
        } else {
            assert_eq!(swap, "0");
        }
    }
    let unlimited = Resources {
        memory: Some(Memory {
            limit: Some(-1),
            ..Memory::default()
        }),
        ..Resources::default()
    };
    cg.update(&unlimited).unwrap();
    assert!(
        ["max", "9223372036854771712"].contains(&file_of(&cg, &l, "memory", limit_file).as_str())
    );
    cg.update(&mem(&l, 48 << 20)).unwrap();
    assert_eq!(
        file_of(&cg, &l, "memory", limit_file),
        (48 << 20).to_string()
    );
    let paths = cg.paths();
    cg.remove();
    assert_gone(&paths);
}

#[test]
fn unified_values_go_to_v2_only_where_its_controller_is() {
    let l = layout();
    let mut map = std::collections::BTreeMap::new();
    map.insert("pids.max".to_string(), "33".to_string());
    let r = Resources {
        unified: Some(map),
        ..Resources::default()
    };
    let path = run_path("unified");
    match l.controller("pids") {
        Some(crabcan_cgroups::Where::V2(_)) => {
            let cg = create(&l, &path, &r);
            assert_eq!(file_of(&cg, &l, "pids", "pids.max"), "33");
            cg.remove();
        }
        _ => {
            // pids is on v1 here (or nowhere): refused with the path, nothing created.
            let e = ContainerCgroup::create(&l, &path, &r)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("unified pids.max: "), "{e}");
            assert!(ContainerCgroup::open(&l, &path).is_err());
        }
    }
}

#[test]
fn hugepage_limits_go_wherever_hugetlb_is() {
    let l = layout();
    require(&l, &["hugetlb"]);
    let sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .expect("read /sys/kernel/mm/hugepages")
        .flatten()
        .filter_map(|e| {
            let kb: u64 = e
                .file_name()
                .to_str()?
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(crabcan_cgroups::stats::page_size_name(kb))
        })
        .collect();
    assert!(!sizes.is_empty(), "no huge page sizes on this kernel");
    let size = sizes[0].clone();
    let r = Resources {
        hugepage_limits: Some(vec![crabcan_cgroups::HugepageLimit {
            page_size: size.clone(),
            limit: 0,
        }]),
        ..Resources::default()
    };
    let cg = create(&l, &run_path("hugetlb"), &r);
    let file = if l.v1_of("hugetlb").is_some() {
        format!("hugetlb.{size}.limit_in_bytes")
    } else {
        format!("hugetlb.{size}.max")
    };
    assert_eq!(file_of(&cg, &l, "hugetlb", &file), "0");
    assert!(cg.stats().unwrap().hugetlb.contains_key(&size));
    let paths = cg.paths();
    cg.remove();
    assert_gone(&paths);
}

#[test]
fn a_limit_whose_file_the_kernel_lacks_is_one_clear_error() {
    let l = layout();
    let r = Resources {
        block_io: Some(crabcan_cgroups::BlockIo {
            weight: Some(500),
            ..crabcan_cgroups::BlockIo::default()
        }),
        ..Resources::default()
    };
    let Ok(plan) = crabcan_cgroups::plan_resources(&r, &l) else {
        // No block I/O controller at all: the plan's refusal is tested in the crate.
        return;
    };
    let file = plan.writes[0].file.clone();
    let (target_v1, path) = (l.v1_of("blkio").is_some(), run_path("blkio"));
    // Whether this kernel has the file, seen in an empty cgroup of the same place.
    let probe = create(&l, &path, &Resources::default());
    let dir = if target_v1 {
        probe
            .paths()
            .into_iter()
            .find(|p| p.starts_with(&l.v1_of("blkio").unwrap().mount_point))
            .unwrap()
    } else {
        probe.v2_dir().unwrap().to_path_buf()
    };
    let exists = dir.join(&file).exists();
    probe.remove();
    match ContainerCgroup::create(&l, &path, &r) {
        Ok(cg) => {
            let cg = Guard(Some(cg));
            assert!(exists, "{file} written although it did not exist");
            let want = if target_v1 { "500" } else { "default 4950" };
            assert!(
                file_of(&cg, &l, if target_v1 { "blkio" } else { "io" }, &file)
                    .contains(want.trim_start_matches("default "))
            );
            cg.remove();
        }
        Err(e) => {
            assert!(!exists, "{file} exists, yet: {e}");
            let e = e.to_string();
            assert!(
                e.starts_with("block I/O weight: ")
                    && e.contains(&format!("{file} does not exist")),
                "{e}"
            );
            assert!(
                ContainerCgroup::open(&l, &path).is_err(),
                "left behind after the failure"
            );
        }
    }
}

#[test]
fn only_empty_cgroups_go_with_a_bare_rmdir() {
    let l = layout();
    let path = run_path("bare");
    let cg = create(&l, &path, &Resources::default());
    let paths = cg.paths();
    let mut child = gated("echo up; exec sleep 100");
    cg.add_process(child.id() as i32).unwrap();
    release(&mut child);
    until(&mut child, "up");
    // A process in them: every directory is refused and left for the full removal.
    assert_eq!(crabcan_cgroups::remove_if_empty(&paths), paths);
    assert!(paths.iter().all(|p| p.is_dir()));
    let _ = child.kill();
    support::wait_within(&mut child, LIMIT);
    // An empty directory that is no cgroup is never removed, whatever the record says.
    let plain = std::env::temp_dir().join(format!("crabcan-not-a-cgroup-{}", std::process::id()));
    std::fs::create_dir_all(&plain).unwrap();
    let mut with_plain = paths.clone();
    with_plain.push(plain.clone());
    // The process is gone, but the kernel may still count it a moment: retry until nothing
    // is left to remove (the plain directory is not the cgroups' to remove, nor to return).
    let deadline = Instant::now() + LIMIT;
    let mut left = with_plain.clone();
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "left: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
        left = crabcan_cgroups::remove_if_empty(&left);
    }
    assert!(plain.is_dir(), "a directory outside cgroupfs was removed");
    std::fs::remove_dir(&plain).unwrap();
    assert_gone(&paths);
    // Already gone: nothing left to do.
    assert!(crabcan_cgroups::remove_if_empty(&paths).is_empty());
    drop(cg);
}

#[test]
fn a_sub_cgroup_the_container_froze_does_not_keep_its_process_alive_at_removal() {
    let l = layout();
    // v1's freezer hierarchy where there is one, else v2's core freezer (cgroup.freeze).
    let path = run_path("subfrozen");
    let cg = create(&l, &path, &Resources::default());
    let paths = cg.paths();
    let mut child = gated("echo up; exec sleep 100");
    let pid = child.id() as i32;
    cg.add_process(pid).unwrap();
    release(&mut child);
    until(&mut child, "up");
    // The freezer's directory: v1's freezer hierarchy, else the v2 one.
    let v1 = l.v1_of("freezer").map(|h| h.mount_point.clone());
    let dir = paths
        .iter()
        .find(|p| match &v1 {
            Some(m) => p.starts_with(m),
            None => p.join("cgroup.freeze").exists(),
        })
        .unwrap_or_else(|| panic!("no freezer on this host: {}", l.describe()))
        .clone();
    let sub = dir.join("frozen-by-the-container");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), pid.to_string()).unwrap();
    let (file, on) = if v1.is_some() {
        ("freezer.state", "FROZEN")
    } else {
        ("cgroup.freeze", "1")
    };
    std::fs::write(sub.join(file), on).unwrap();
    let started = Instant::now();
    cg.remove(); // as a delete would; an error fails the test
    let _ = support::wait_within(&mut child, LIMIT);
    assert_gone(&paths);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the removal waited {:?} for a frozen process",
        started.elapsed()
    );
}

/// A creation in two steps names every directory before it makes one (a caller killed in
/// between has recorded whatever was left), and refuses a path whose directory in any
/// hierarchy holds someone else's process before it names or makes anything: such a
/// record would have the cgroup's removal kill that process.
#[test]
fn a_two_step_creation_names_its_directories_first_and_none_in_use() {
    let l = layout();
    let name = format!("/crabcan-ttwostep-{}", std::process::id());
    let path = CgroupPath::parse(&name).unwrap();
    let (mut named, mut made_first) = (Vec::new(), Vec::new());
    let cg = ContainerCgroup::create_v2_first(&l, &path, &Resources::default(), |dirs| {
        made_first = dirs.iter().filter(|d| d.exists()).cloned().collect();
        named = dirs;
        Ok(())
    })
    .unwrap();
    let mut cg = Guard(Some(cg));
    assert!(made_first.is_empty(), "made before named: {made_first:?}");
    cg.0.as_mut().unwrap().complete().unwrap();
    assert_eq!(
        named,
        cg.paths(),
        "the directories named are not the cgroup's"
    );
    // The second step is taken once: again, it is refused and changes nothing.
    let again = cg.0.as_mut().unwrap().complete();
    assert!(again.is_err(), "a second completion was accepted");
    assert_eq!(named, cg.paths());
    cg.remove();
    assert_gone(&named);

    // Someone else's process in the last hierarchy only (a v1 one on a hybrid host, which
    // the first step does not make).
    let theirs = named[l.v1.len().max(1) - 1].clone();
    std::fs::create_dir(&theirs).unwrap();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(theirs.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let mut recorded = false;
    let r = ContainerCgroup::create_v2_first(&l, &path, &Resources::default(), |_| {
        recorded = true;
        Ok(())
    });
    let made: Vec<PathBuf> = named
        .iter()
        .filter(|d| **d != theirs && d.exists())
        .cloned()
        .collect();
    let alive = sleeper.try_wait().unwrap().is_none();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let deadline = Instant::now() + LIMIT;
    while std::fs::remove_dir(&theirs).is_err() {
        assert!(Instant::now() < deadline, "{} stays busy", theirs.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    for d in &made {
        let _ = std::fs::remove_dir(d);
    }
    assert!(alive, "the other process died");
    let e = match r {
        Ok(cg) => {
            drop(Guard(Some(cg)));
            panic!(
                "a cgroup whose {} holds a process was created",
                theirs.display()
            );
        }
        Err(e) => e.to_string(),
    };
    assert!(e.contains("is not empty"), "{e}");
    assert!(!recorded, "a cgroup in use by others was named");
    assert!(made.is_empty(), "made before the refusal: {made:?}");
}
