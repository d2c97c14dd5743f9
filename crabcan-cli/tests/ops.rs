//! The OCI commands that act on a running container through its cgroup — `pause`,
//! `resume`, `update`, `events`, `ps` — end to end, each checked by its effect on the
//! container's processes.
//!
//! The test plays the engine, as in tests/oci.rs: a child subreaper that adopts and reaps
//! the containers it creates.

mod bounded;
mod common;
mod engine;

use common::*;
use engine::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Writes an ever-growing count to /tmp/count (a tmpfs of the container).
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; \
                       mv /tmp/count.new /tmp/count; sleep 0.02; done";

engine_env! {
    /// One test's state root and bundles, under target/.
    struct Env {
        name: String,
    }
}

impl Env {
    fn new(name: &str) -> Env {
        Env {
            e: Engine::new(&format!("ops-{name}")),
            name: name.to_string(),
        }
    }

    /// A container from `crabcan spec` running `script`, with a tmpfs on /tmp, in a cgroup
    /// of its own whose name is the test's, adjusted by `tweak`; created and started.
    /// Returns its pid and its cgroup directories.
    fn start(&self, id: &str, script: &str, tweak: impl FnOnce(&mut Value)) -> (i32, Vec<PathBuf>) {
        let b = self.bundle(id, &["sh", "-c", script], |c| {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "size=4m"]
            }));
            c["linux"]["cgroupsPath"] = json!(format!(
                "crabcan-ops-{}-{}-{id}",
                self.name,
                std::process::id()
            ));
            tweak(c);
        });
        let pid = self.started(id, &b);
        (pid, self.cgroup_dirs(id))
    }

    /// Kills every process of `id`, reaps its init, deletes it and checks that nothing of
    /// it is left: no state, no cgroup directory, no process.
    fn remove(&self, id: &str, pid: i32, dirs: &[PathBuf]) {
        assert_ok(&self.cc(&["kill", "--all", id, "KILL"]));
        reap(pid);
        assert_ok(&self.cc(&["delete", id]));
        assert!(!self.root().join(id).exists(), "{id}'s state is left");
        for d in dirs {
            assert!(!d.exists(), "{} is left", d.display());
        }
        assert!(!alive(pid), "{pid} is left");
    }
}

/// A file in the container's /tmp, read through its init's root.
fn tmp_file(pid: i32, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/{name}")).ok()
}

fn count(pid: i32) -> Option<u64> {
    tmp_file(pid, "count")?.trim().parse().ok()
}

/// A refusal: exit 1 and one line holding `needle`.
fn refused(o: &Output, needle: &str) {
    assert_eq!(code(o), 1, "exit code; stderr {:?}", stderr(o));
    assert_one_line(o, needle);
}

#[test]
fn pause_stops_a_counter_and_resume_restarts_it() {
    let env = Env::new("pause");
    let (pid, dirs) = env.start("p1", COUNTER, |_| {});
    let first = until("the counter starts", || count(pid));
    until("the counter moves", || count(pid).filter(|c| *c > first));

    assert_ok(&env.cc(&["pause", "p1"]));
    assert_eq!(env.status("p1"), "paused");
    let held = count(pid).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(pid), Some(held), "the count moved while paused");
    // Pausing twice is refused; so is resuming a container that is not paused.
    refused(&env.cc(&["pause", "p1"]), "paused");

    assert_ok(&env.cc(&["resume", "p1"]));
    assert_eq!(env.status("p1"), "running");
    until("the counter moves after resume", || {
        count(pid).filter(|c| *c > held)
    });
    refused(&env.cc(&["resume", "p1"]), "container not paused");

    // A paused container is still deleted whole by delete --force.
    assert_ok(&env.cc(&["pause", "p1"]));
    assert_ok(&env.cc(&["delete", "--force", "p1"]));
    reap(pid);
    assert!(!env.root().join("p1").exists());
    for d in &dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
}

/// On "go" in /tmp: forks 12 sleeps in a subshell and writes its output to /tmp/out
/// ("done" when every fork worked; busybox sh stops at the first failed one).
const FORKER: &str = "while :; do if [ -e /tmp/go ]; then rm /tmp/go; \
     ( for i in $(seq 1 12); do sleep 30 & done; echo done ) > /tmp/out.new 2>&1; \
     mv /tmp/out.new /tmp/out; fi; sleep 0.05; done";

fn fork_trial(pid: i32) -> String {
    let _ = std::fs::remove_file(format!("/proc/{pid}/root/tmp/out"));
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").unwrap();
    until("the fork trial", || tmp_file(pid, "out"))
}

fn read_limit(dirs: &[PathBuf], v1: &str, v2: &str) -> String {
    dirs.iter()
        .find_map(|d| {
            std::fs::read_to_string(d.join(v1))
                .or_else(|_| std::fs::read_to_string(d.join(v2)))
                .ok()
        })
        .unwrap_or_else(|| panic!("neither {v1} nor {v2} in {dirs:?}"))
        .trim()
        .to_string()
}

#[test]
fn update_raises_a_pids_limit_and_a_failed_fork_then_succeeds() {
    let env = Env::new("update");
    let (pid, dirs) = env.start("u1", FORKER, |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 8});
        c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    });
    let before = fork_trial(pid);
    assert!(
        before.contains("can't fork") && !before.contains("done"),
        "no fork failed under a pids limit of 8: {before:?}"
    );

    // docker's shim: LinuxResources on stdin, every field it does not set as 0.
    let mut up = env
        .cmd(&["update", "--resources", "-", "u1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    up.stdin
        .take()
        .unwrap()
        .write_all(
            br#"{"memory":{"limit":0,"reservation":0,"kernel":0},"cpu":{"shares":0,"quota":0,"period":0},"pids":{"limit":64},"blockIO":{"weight":0}}"#,
        )
        .unwrap();
    let st = bounded::wait_within(&mut up, LIMIT, "crabcan update");
    assert!(st.success(), "update --resources - failed");
    let after = fork_trial(pid);
    assert_eq!(after, "done\n", "a fork failed under a pids limit of 64");
    // The zeros changed nothing: the memory limit is the one create wrote.
    assert_eq!(
        read_limit(&dirs, "memory.limit_in_bytes", "memory.max"),
        (64 << 20).to_string()
    );

    // runc's single flags.
    assert_ok(&env.cc(&["update", "--memory", "32m", "--pids-limit", "100", "u1"]));
    assert_eq!(read_limit(&dirs, "pids.max", "pids.max"), "100");
    assert_eq!(
        read_limit(&dirs, "memory.limit_in_bytes", "memory.max"),
        (32 << 20).to_string()
    );
    // A file with the JSON, and a value the kernel would refuse: one line, nothing changed.
    let file = env.dir.path().join("r.json");
    std::fs::write(&file, r#"{"pids":{"limit":-1}}"#).unwrap();
    assert_ok(&env.cc(&["update", "-r", &file.to_string_lossy(), "u1"]));
    assert_eq!(read_limit(&dirs, "pids.max", "pids.max"), "max");
    std::fs::write(&file, r#"{"memory":{"limit":5}}"#).unwrap();
    assert_one_line(
        &env.cc(&["update", "--resources", &file.to_string_lossy(), "u1"]),
        "memory limit 5",
    );
    refused(&env.cc(&["update", "--memory", "12q", "u1"]), "--memory");
    assert_eq!(
        read_limit(&dirs, "memory.limit_in_bytes", "memory.max"),
        (32 << 20).to_string()
    );
    env.remove("u1", pid, &dirs);
}

#[test]
fn events_stats_gives_the_cgroups_memory_and_pids_numbers() {
    let env = Env::new("events");
    let (pid, dirs) = env.start("e1", "exec sleep 600", |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
        c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    });
    let o = env.cc(&["events", "--stats", "e1"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], "e1");
    let d = &v["data"];
    assert_eq!(d["pids"]["current"], json!(1), "{d}");
    assert_eq!(d["pids"]["limit"], json!(42), "{d}");
    assert_eq!(d["memory"]["usage"]["limit"], json!(64 << 20), "{d}");
    let usage: u64 = read_limit(&dirs, "memory.usage_in_bytes", "memory.current")
        .parse()
        .unwrap();
    let reported = d["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(reported > 0, "{d}");
    // The same counter, read a moment apart.
    assert!(
        reported.abs_diff(usage) < 4 << 20,
        "reported {reported}, the cgroup has {usage}"
    );

    // The stream: a stats line per interval until stopped.
    let mut ev = env
        .cmd(&["events", "--interval", "100ms", "e1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(ev.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "stats", "{l}");
        assert_eq!(v["data"]["pids"]["current"], json!(1), "{l}");
    }
    // It ends by itself once the container is gone.
    env.remove("e1", pid, &dirs);
    let st = bounded::wait_within(&mut ev, LIMIT, "crabcan events");
    assert!(st.success(), "events: {st}");
}

#[test]
fn events_reports_an_oom_kill() {
    let env = Env::new("oom");
    // On "go", a subshell takes about 64 MiB; the cgroup allows 16 MiB without swap. The
    // subshell (and its pipeline) offers itself first to the OOM killer: a second round of
    // it while the first victim's memory is being freed (seen in a slow virtual machine)
    // must not take the shell the test goes on with.
    let script = "while :; do if [ -e /tmp/go ]; then rm /tmp/go; \
                  ( echo 1000 > /proc/self/oom_score_adj; \
                  x=$(head -c 64m /dev/zero | tr '\\0' a); echo ${#x} ) 2>/dev/null; fi; \
                  sleep 0.05; done";
    let (pid, dirs) = env.start("o1", script, |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    });
    let mut ev = env
        .cmd(&["events", "--interval", "60s", "o1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    // Give events time to read the OOM counter before the hog runs.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").unwrap();
    let line = rx.recv_timeout(LIMIT).expect("no OOM event");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v, json!({"type": "oom", "id": "o1"}));
    assert!(alive(pid), "the container's init died with the hog");
    env.remove("o1", pid, &dirs);
    let st = bounded::wait_within(&mut ev, LIMIT, "crabcan events");
    assert!(st.success(), "events: {st}");
}

#[test]
fn ps_lists_the_processes_of_the_cgroup() {
    let env = Env::new("ps");
    let (pid, dirs) = env.start("s1", "sleep 500 & exec sleep 600", |_| {});
    // Once the shell has forked the background sleep.
    let pids: Vec<i32> = until("ps lists two processes", || {
        let o = env.cc(&["ps", "--format", "json", "s1"]);
        assert_ok(&o);
        let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
        assert!(pids.len() <= 2, "{pids:?}");
        (pids.len() == 2).then_some(pids)
    });
    assert!(pids.contains(&pid), "the init {pid} is not in {pids:?}");
    // Exactly the cgroup's processes: the other is the background sleep, our grandchild.
    let other = pids.iter().find(|p| **p != pid).unwrap();
    until("the background sleep has exec'd", || {
        let cmdline = std::fs::read(format!("/proc/{other}/cmdline")).unwrap();
        (cmdline == b"sleep\x00500\x00").then_some(())
    });
    until("the init has exec'd", || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        (cmdline == b"sleep\x00600\x00").then_some(())
    });

    // The table: ps -ef's header and one line per process of the container.
    let o = env.cc(&["ps", "s1"]);
    assert_ok(&o);
    let text = stdout(&o);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.split_whitespace().any(|f| f == "PID"), "{text}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().any(|r| r.contains("sleep 600")), "{text}");
    // Extra arguments go to ps.
    let o = env.cc(&["ps", "s1", "-o", "pid,args"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with("PID") || text.trim_start().starts_with("PID"),
        "{text}"
    );
    assert!(text.contains(&format!("{pid} sleep 600")), "{text}");
    env.remove("s1", pid, &dirs);
}

#[test]
fn unknown_and_stopped_containers_are_one_line_errors() {
    let env = Env::new("errors");
    for args in [
        &["pause", "nope"][..],
        &["resume", "nope"],
        &["update", "--pids-limit", "5", "nope"],
        &["events", "--stats", "nope"],
        &["events", "nope"],
        &["ps", "nope"],
        &["ps", "--format", "json", "nope"],
    ] {
        refused(&env.cc(args), "container does not exist");
    }
    let (pid, dirs) = env.start("x1", "exit 0", |_| {});
    reap(pid);
    assert_eq!(env.status("x1"), "stopped");
    for args in [
        &["pause", "x1"][..],
        &["update", "--pids-limit", "5", "x1"],
        &["events", "--stats", "x1"],
        &["events", "x1"],
        &["ps", "x1"],
    ] {
        refused(&env.cc(args), "container not running");
    }
    refused(&env.cc(&["resume", "x1"]), "container not paused");
    assert_one_line(
        &env.cc(&["events", "--interval", "0s", "x1"]),
        "invalid --interval",
    );
    assert_one_line(
        &env.cc(&["update", "--resources", "/nonexistent/r.json", "x1"]),
        "cannot read --resources",
    );
    assert_ok(&env.cc(&["delete", "x1"]));
    for d in &dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
}

/// podman's `--read-only` mounts tmpfs with runc's `tmpcopyup` on /run, /tmp and friends:
/// the fresh tmpfs holds a copy of what the image had there, and writes go to the tmpfs,
/// never to the image.
#[test]
fn a_tmpcopyup_tmpfs_starts_with_the_images_files() {
    let env = Env::new("copyup");
    let script = "cat /etc/passwd > /tmp/pw; \
                  echo x > /etc/added && cat /etc/added > /tmp/w; \
                  ls -ld /etc | cut -c1-10 > /tmp/mode; touch /tmp/ready; exec sleep 600";
    let (pid, dirs) = env.start("c1", script, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/etc", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "tmpcopyup"]
        }));
    });
    let image = rootfs();
    let pw = until("the container's copy of /etc/passwd", || {
        tmp_file(pid, "ready")?;
        tmp_file(pid, "pw")
    });
    assert_eq!(
        pw,
        std::fs::read_to_string(image.join("etc/passwd")).unwrap()
    );
    assert_eq!(
        tmp_file(pid, "w").as_deref(),
        Some("x\n"),
        "/etc was not writable"
    );
    assert_eq!(tmp_file(pid, "mode").as_deref(), Some("drwxr-xr-x\n"));
    assert!(
        !image.join("etc/added").exists(),
        "the write reached the image"
    );
    env.remove("c1", pid, &dirs);

    // Read-only with copy-up: filled first, then read-only.
    let script = "cat /etc/group > /tmp/gr; \
                  { echo x > /etc/added; } 2>/dev/null || echo refused > /tmp/w; \
                  touch /tmp/ready; exec sleep 600";
    let (pid, dirs) = env.start("c2", script, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/etc", "type": "tmpfs", "source": "tmpfs",
            "options": ["ro", "tmpcopyup", "mode=755"]
        }));
    });
    let w = until("the write attempt", || {
        tmp_file(pid, "ready")?;
        tmp_file(pid, "w")
    });
    assert_eq!(w, "refused\n");
    assert_eq!(
        tmp_file(pid, "gr").unwrap(),
        std::fs::read_to_string(image.join("etc/group")).unwrap()
    );
    env.remove("c2", pid, &dirs);
}
