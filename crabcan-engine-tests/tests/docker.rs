//! dockerd (on containerd) with the runtime under test added as `--add-runtime crabcan=PATH`.

use crabcan_engine_tests::docker::Docker;
use crabcan_engine_tests::{
    bounded, check_exec_user_workdir_env_and_tty, check_pause_and_unpause, scope,
};
use std::time::Duration;

#[test]
fn run_rm_passes_output_and_exit_status() {
    let d = Docker::start("docker_run_rm");
    let out = d.run(&["--rm"], &["sh", "-c", "echo hi; exit 5"]);
    out.expect_code(5);
    assert_eq!(out.stdout, "hi\n");
    // docker maps the runtime's "executable file not found" at create to 127.
    d.run(&["--rm"], &["/no/such/command"]).expect_code(127);
    d.finish();
}

#[test]
fn exec_with_user_workdir_env_and_tty() {
    let d = Docker::start("docker_exec");
    check_exec_user_workdir_env_and_tty(&d, "box3");
    d.finish();
}

/// On "go" in /tmp: forks 12 sleeps in a subshell and writes its output to /tmp/out
/// ("done" when every fork worked; busybox sh stops at the first that fails). The test
/// writes the trigger through the container's root, so the check needs no `exec`.
const FORKER: &str = "while :; do if [ -e /tmp/go ]; then rm /tmp/go; \
     ( for i in $(seq 1 12); do sleep 60 & done; echo done ) > /tmp/out.new 2>&1; \
     mv /tmp/out.new /tmp/out; fi; sleep 0.05; done";

fn fork_trial(pid: u32) -> String {
    let root = format!("/proc/{pid}/root/tmp");
    let _ = std::fs::remove_file(format!("{root}/out"));
    std::fs::write(format!("{root}/go"), "").unwrap();
    bounded::until(Duration::from_secs(20), "the fork trial", || {
        std::fs::read_to_string(format!("{root}/out")).ok()
    })
}

#[test]
fn update_pids_limit() {
    let d = Docker::start("docker_update_pids");
    let name = d.name();
    d.run(
        &["-d", "--name", &name, "--pids-limit", "8"],
        &["sh", "-c", FORKER],
    )
    .ok();
    let pid = d.pid(&name);
    assert_eq!(scope::pids_max(pid).as_deref(), Some("8"));
    let before = fork_trial(pid);
    assert!(
        before.contains("can't fork") && !before.contains("done"),
        "no fork failed under pids.max 8: {before:?}"
    );
    // docker's shim hands the runtime `update --resources -` with the new limit; the same
    // forks then succeed.
    d.run_cmd(&["update", "--pids-limit", "64", &name]).ok();
    assert_eq!(scope::pids_max(pid).as_deref(), Some("64"));
    let after = fork_trial(pid);
    assert_eq!(after, "done\n", "a fork failed under pids.max 64");
    d.finish();
}

#[test]
fn pause_and_unpause() {
    let d = Docker::start("docker_pause");
    check_pause_and_unpause(&d);
    d.finish();
}

/// Waits until `docker top` shows `sleep 500`, then checks that it lists exactly two
/// processes, the container's first (`init`) among them. `docker top` takes the pids from the
/// runtime's `ps --format json` and shows host `ps -ef` lines for exactly those.
#[track_caller]
fn assert_top_lists_two(d: &Docker, name: &str, init: u32) {
    let text = bounded::until(
        Duration::from_secs(20),
        "docker top lists sleep 500",
        || {
            let text = d.run_cmd(&["top", name]).ok().to_string();
            text.contains("sleep 500").then_some(text)
        },
    );
    let pids: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        pids.contains(&init.to_string().as_str()),
        "docker top misses the init {init}:\n{text}"
    );
    assert_eq!(pids.len(), 2, "docker top lists other processes:\n{text}");
}

#[test]
fn top_lists_init_and_exec() {
    let d = Docker::start("docker_top");
    let name = d.name();
    d.run(&["-d", "--name", &name], &["sleep", "600"]).ok();
    let init = d.pid(&name);
    d.run_cmd(&["exec", "-d", &name, "sleep", "500"]).ok();
    assert_top_lists_two(&d, &name, init);
    d.finish();
}

#[test]
fn top_lists_the_containers_processes() {
    let d = Docker::start("docker_top_procs");
    let name = d.name();
    d.run(
        &["-d", "--name", &name],
        &["sh", "-c", "sleep 500 & exec sleep 600"],
    )
    .ok();
    let init = d.pid(&name);
    assert_top_lists_two(&d, &name, init);
    d.finish();
}
