//! containerd's `ctr` (runc shim v2) with the runtime under test as `--runc-binary`.

use crabcan_engine_tests::containerd::Ctr;
use crabcan_engine_tests::{COUNTER, assert_pause_and_resume, bounded};
use std::time::Duration;

#[test]
fn run_rm_passes_output_and_exit_status() {
    let c = Ctr::start("ctr_run_rm");
    let out = c.run(&["--rm"], &c.id("c1"), &["sh", "-c", "echo hi; exit 4"]);
    out.expect_code(4);
    assert_eq!(out.stdout, "hi\n");
    c.finish();
}

#[test]
fn two_container_pod_shares_one_network_namespace() {
    let c = Ctr::start("ctr_pod_with_ns");
    let sandbox = c.id("sandbox");
    c.run(&["-d", "--null-io"], &sandbox, &["sleep", "600"])
        .ok();
    let sb = c.pid(&sandbox);
    let ns = |pid: &str, kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| panic!("cannot read the {kind} namespace of {pid}: {e}"))
    };
    let sb_net = ns(&sb.to_string(), "net");
    assert_ne!(
        sb_net,
        ns("self", "net"),
        "the sandbox has no network namespace of its own"
    );
    let with = format!("network:/proc/{sb}/ns/net");
    let out = c.run(
        &["--rm", "--with-ns", &with],
        &c.id("app"),
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/pid",
        ],
    );
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(sb_net.as_str()),
        "the app did not join the sandbox's network"
    );
    // Only the network namespace is shared: the app has a PID namespace of its own.
    let app_pid_ns = lines.next().expect("the app's pid namespace");
    assert_ne!(app_pid_ns, ns(&sb.to_string(), "pid"));
    c.finish();
}

#[test]
fn task_pause_and_resume() {
    let c = Ctr::start("ctr_pause_resume");
    let id = c.id("counter");
    c.run(&["-d", "--null-io"], &id, &["sh", "-c", COUNTER])
        .ok();
    let pid = c.pid(&id);
    assert_pause_and_resume(
        pid,
        || {
            c.run_cmd(&["task", "pause", &id]).ok();
            let ls = c.run_cmd(&["task", "ls"]);
            assert!(
                ls.ok()
                    .lines()
                    .any(|l| l.starts_with(id.as_str()) && l.contains("PAUSED")),
                "ctr task ls does not say PAUSED:\n{}",
                ls.stdout
            );
        },
        || {
            c.run_cmd(&["task", "resume", &id]).ok();
        },
    );
    c.finish();
}

#[test]
fn task_exec_and_ps() {
    let c = Ctr::start("ctr_exec_ps");
    let id = c.id("box");
    c.run(&["-d", "--null-io"], &id, &["sleep", "600"]).ok();
    let init = c.pid(&id);
    let fifo = c.scope.path("fifo");
    let fifo = fifo.to_str().expect("utf-8 path");
    let out = c.run_cmd(&[
        "task",
        "exec",
        "--fifo-dir",
        fifo,
        "--exec-id",
        "e1",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "pwd; cat /proc/1/cmdline; echo; exit 6",
    ]);
    // The exec'd process runs in the container's PID namespace, in the directory asked for,
    // and its exit status comes back through the shim.
    out.expect_code(6);
    assert_eq!(out.stdout, "/tmp\nsleep\x00600\x00\n");
    c.run_cmd(&[
        "task",
        "exec",
        "--detach",
        "--fifo-dir",
        fifo,
        "--exec-id",
        "e2",
        &id,
        "sleep",
        "500",
    ])
    .ok();
    // `ctr task ps` (the runtime's `ps`) lists the init and the running exec.
    let exec_pid = bounded::until(
        Duration::from_secs(20),
        "ctr task ps lists the exec",
        || {
            let ps = c.run_cmd(&["task", "ps", &id]);
            let text = ps.ok().to_string();
            assert!(
                text.lines()
                    .any(|l| l.split_whitespace().next() == Some(&init.to_string())),
                "ctr task ps does not list the init {init}:\n{text}"
            );
            text.lines()
                .find(|l| l.contains("ExecID:e2"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        },
    );
    let cmdline = std::fs::read(format!("/proc/{exec_pid}/cmdline")).unwrap_or_default();
    assert_eq!(
        cmdline, b"sleep\x00500\x00",
        "ctr task ps named pid {exec_pid} for e2"
    );
    c.finish();
}

#[test]
fn task_ps_lists_the_containers_processes() {
    let c = Ctr::start("ctr_ps");
    let id = c.id("box");
    c.run(
        &["-d", "--null-io"],
        &id,
        &["sh", "-c", "sleep 500 & exec sleep 600"],
    )
    .ok();
    let init = c.pid(&id);
    // `ctr task ps` is the runtime's `ps --format json`: the init and its child, nothing
    // else.
    let pids = bounded::until(Duration::from_secs(20), "ctr task ps lists both", || {
        let text = c.run_cmd(&["task", "ps", &id]).ok().to_string();
        let pids: Vec<u32> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        (pids.len() == 2).then_some(pids)
    });
    assert!(pids.contains(&init), "no init {init} in {pids:?}");
    let other = pids.iter().find(|p| **p != init).unwrap();
    let cmdline = std::fs::read(format!("/proc/{other}/cmdline")).unwrap_or_default();
    assert_eq!(cmdline, b"sleep\x00500\x00", "ctr task ps named {other}");
    c.finish();
}
