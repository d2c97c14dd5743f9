//! podman (through conmon) with the runtime under test as `--runtime`.

use crabcan_engine_tests::podman::Podman;
use crabcan_engine_tests::{check_exec_user_workdir_env_and_tty, check_pause_and_unpause, scope};

#[test]
fn run_rm_passes_output_and_exit_status() {
    let p = Podman::start("podman_run_rm");
    let out = p.run(&["--rm"], &["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    out.expect_code(3);
    assert_eq!(out.stdout, "hi\n");
    assert!(out.stderr.contains("oops"), "stderr: {}", out.stderr);
    // A command missing from the image fails at create; podman maps the runtime's
    // "executable file not found" to 127.
    let missing = p.run(&["--rm"], &["/no/such/command"]);
    missing.expect_code(127);
    p.finish();
}

#[test]
fn detached_container_stops_on_sigterm_and_is_removed() {
    let p = Podman::start("podman_detach_stop_rm");
    let name = p.name();
    p.run(
        &["-d", "--name", &name],
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo up; while :; do sleep 0.1; done",
        ],
    )
    .ok();
    let pid = p.pid(&name);
    let cg = scope::cgroup_dir(pid, "pids").expect("the container's pids cgroup");
    assert!(
        cg.to_string_lossy().contains(&format!("/{}/", p.scope.tag)),
        "the container is not under its cgroup parent: {}",
        cg.display()
    );
    let status = p.run_cmd(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(status.ok().trim(), "running");
    p.run_cmd(&["stop", "--time", "30", &name]).ok();
    let exit = p.run_cmd(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(
        exit.ok().trim(),
        "7",
        "the container did not exit through its TERM trap"
    );
    let logs = p.run_cmd(&["logs", &name]);
    assert_eq!(logs.ok(), "up\ngot-term\n");
    p.run_cmd(&["rm", &name]).ok();
    let listed = p.run_cmd(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("name={name}"),
    ]);
    assert_eq!(
        listed.ok().trim(),
        "",
        "podman rm left the container listed"
    );
    p.finish();
}

#[test]
fn read_only_root() {
    let p = Podman::start("podman_read_only");
    let script = "touch /etc/x 2>&1; echo rc=$?; touch /tmp/x && echo tmp-ok";
    let ro = p.run(&["--rm", "--read-only"], &["sh", "-c", script]);
    let text = ro.ok();
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("rc=1"), "{text}");
    // podman gives a read-only container tmpfs on /tmp.
    assert!(text.contains("tmp-ok"), "{text}");
    // The same script without --read-only writes /etc: the check above is the flag's effect.
    let rw = p.run(&["--rm"], &["sh", "-c", script]);
    assert!(rw.ok().contains("rc=0"), "{}", rw.stdout);
    p.finish();
}

#[test]
fn env_workdir_and_hostname() {
    let p = Podman::start("podman_env_workdir_hostname");
    let out = p.run(
        &[
            "--rm",
            "-e",
            "FOO=bar baz",
            "-w",
            "/tmp",
            "--hostname",
            "box1",
        ],
        &["sh", "-c", "echo \"$FOO\"; pwd; hostname"],
    );
    assert_eq!(out.ok(), "bar baz\n/tmp\nbox1\n");
    p.finish();
}

#[test]
fn tty_through_conmon_console_socket() {
    let p = Podman::start("podman_tty");
    let out = p.run(
        &["--rm", "-t"],
        &["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty"],
    );
    let text = out.ok();
    // The pty's line discipline turns \n into \r\n: the output went through the pty whose
    // master the runtime sent over conmon's console socket.
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("both-tty\r\n"), "{text:?}");
    let plain = p.run(&["--rm"], &["sh", "-c", "tty; [ -t 1 ] || echo no-tty"]);
    assert!(plain.stdout.contains("no-tty\n"), "{:?}", plain.stdout);
    p.finish();
}

#[test]
fn pids_limit() {
    let p = Podman::start("podman_pids_limit");
    let name = p.name();
    p.run(
        &["-d", "--name", &name, "--pids-limit", "12"],
        &["sleep", "600"],
    )
    .ok();
    let pid = p.pid(&name);
    assert_eq!(scope::pids_max(pid).as_deref(), Some("12"));
    // By effect, in the container's own command: the 13th process cannot be forked under
    // --pids-limit 12 (busybox sh gives up with status 2), while the same forks all work
    // under podman's default limit.
    let forks = "for i in $(seq 1 20); do sleep 60 & done 2>&1; echo done";
    let limited = p.run(&["--rm", "--pids-limit", "12"], &["sh", "-c", forks]);
    let all = format!("{}{}", limited.stdout, limited.stderr);
    assert!(
        all.contains("can't fork") && !limited.stdout.contains("done"),
        "no fork failed under pids.max 12:\n{all}"
    );
    let free = p.run(&["--rm"], &["sh", "-c", forks]);
    assert_eq!(free.ok(), "done\n", "the forks fail without --pids-limit");
    p.finish();
}

#[test]
fn pause_and_unpause() {
    let p = Podman::start("podman_pause");
    check_pause_and_unpause(&p);
    p.finish();
}

#[test]
fn exec_with_user_workdir_env_and_tty() {
    let p = Podman::start("podman_exec");
    let name = check_exec_user_workdir_env_and_tty(&p, "box2");
    // podman gives the user's own group too.
    let ids = p.run_cmd(&["exec", "-u", "65534", &name, "id", "-g"]);
    assert_eq!(ids.ok(), "65534\n");
    let missing = p.run_cmd(&["exec", &name, "/no/such/command"]);
    assert_ne!(missing.code, Some(0), "exec of a missing command succeeded");
    p.finish();
}
