//! kubelet's calls for a pod's life, its security settings and its faults, made over the CRI
//! against containerd with the runtime under test as the `crabcan` handler's binary, each
//! checked by its effect.

use std::fs;
use std::time::{Duration, Instant};

use crabcan_cri_tests::bounded;
use crabcan_cri_tests::node::{HANDLER, Node};
use crabcan_cri_tests::pod::{self, PodSpec};
use crabcan_cri_tests::scope;
use k8s_cri::v1::{
    Capability, ContainerState, LinuxContainerResources, ListContainerStatsRequest,
    ListContainersRequest, PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest,
    StatusRequest, StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest,
    VersionRequest,
};

fn ns(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("cannot read the {kind} namespace of {pid}: {e}"))
}

/// Whether the handler's binary ran `subcommand` for container `id` (through the timer).
fn ran(node: &Node, subcommand: &str, id: &str) -> bool {
    node.crabcan
        .calls()
        .iter()
        .any(|c| c.subcommand() == subcommand && c.args.iter().any(|a| a == id))
}

fn stop_container(node: &Node, id: &str, timeout: i64) {
    let req = StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    };
    node.must("StopContainer", |mut c| async move {
        c.stop_container(req).await
    });
}

fn remove_container(node: &Node, id: &str) {
    let req = RemoveContainerRequest {
        container_id: id.to_string(),
    };
    node.must("RemoveContainer", |mut c| async move {
        c.remove_container(req).await
    });
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The CRI log lines of a container's log file: (stream, tag, message).
fn log_lines(path: &std::path::Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let time = f.next().unwrap_or("");
            // RFC 3339 with nanoseconds, as the CRI log format has it.
            assert!(
                time.len() >= 20 && time.as_bytes()[4] == b'-' && time.contains('T'),
                "{}: not a CRI log line (bad time): {l:?}",
                path.display()
            );
            (
                f.next().unwrap_or("").to_string(),
                f.next().unwrap_or("").to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pod_lifecycle_on_the_pod_network() {
    let node = Node::start("cri-lifecycle");

    let v = node.must("Version", |mut c| async move {
        c.version(VersionRequest {
            version: "v1".into(),
        })
        .await
    });
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("containerd", "v1"),
        "Version: {v:?}"
    );
    let st = node.must("Status", |mut c| async move {
        c.status(StatusRequest { verbose: false }).await
    });
    let conditions = st.status.map(|s| s.conditions).unwrap_or_default();
    for want in ["RuntimeReady", "NetworkReady"] {
        assert!(
            conditions.iter().any(|c| c.r#type == want && c.status),
            "Status does not report {want}: {conditions:?}"
        );
    }

    let spec = PodSpec::new("web");
    let sandbox = node.sandbox_config(&spec);
    let pod = node.run_pod(&sandbox, HANDLER);
    assert!(
        ran(&node, "create", &pod) && ran(&node, "start", &pod),
        "the crabcan handler's binary did not create and start the sandbox: {:?}",
        node.crabcan.calls()
    );
    assert!(
        node.runc.calls().is_empty(),
        "the runc handler ran for a crabcan pod"
    );
    let sb = node.pod_pid(&pod).to_string();
    assert_ne!(
        ns(&sb, "net"),
        ns("self", "net"),
        "the pod has no network namespace of its own"
    );
    let req = PodSandboxStatusRequest {
        pod_sandbox_id: pod.clone(),
        verbose: false,
    };
    let status = node
        .must("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(req).await
        })
        .status
        .expect("a sandbox status");
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(
        status.network.map(|n| n.ip).as_deref(),
        Some("127.0.0.1"),
        "the pod's IP is not the one the CNI plugin reported"
    );

    let logger = pod::container(
        "logger",
        &[
            "sh",
            "-c",
            "echo hello-stdout; echo hello-stderr >&2; exec sleep inf",
        ],
        &spec,
    );
    // The second container ignores SIGTERM: StopContainer must SIGKILL it after the timeout.
    let stubborn = pod::container(
        "stubborn",
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        &spec,
    );
    let c1 = node.run(&pod, &logger, &sandbox);
    let c2 = node.run(&pod, &stubborn, &sandbox);
    for id in [&c1, &c2] {
        assert!(
            ran(&node, "create", id),
            "the crabcan handler's binary did not create container {id}"
        );
        let (st, _) = node.container_status(id);
        assert_eq!(
            st.state,
            ContainerState::ContainerRunning as i32,
            "ContainerStatus of {id}: {st:?}"
        );
        assert!(st.started_at > 0, "no start time: {st:?}");
        assert!(
            !st.image.map(|i| i.image).unwrap_or_default().is_empty() && !st.image_ref.is_empty(),
            "ContainerStatus of {id} names no image"
        );
    }
    let (p1, p2) = (node.container_pid(&c1), node.container_pid(&c2));

    // The log file, in the CRI format, from the container's stdout and stderr.
    let log = node.log_root.join("web/logger.log");
    assert_eq!(
        std::path::PathBuf::from(node.container_status(&c1).0.log_path),
        log,
        "ContainerStatus names another log file"
    );
    let lines = bounded::until(Duration::from_secs(20), "the logger's two lines", || {
        let l = log_lines(&log);
        (l.len() >= 2).then_some(l)
    });
    for (stream, text) in [("stdout", "hello-stdout"), ("stderr", "hello-stderr")] {
        assert!(
            lines
                .iter()
                .any(|(s, tag, m)| s == stream && tag == "F" && m == text),
            "{}: no full {stream} line {text:?}: {lines:?}",
            log.display()
        );
    }

    // ExecSync: output apart per stream, and the exit code.
    let (out, err, code) = node.exec(&c1, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((out.as_str(), err.as_str(), code), ("out\n", "err\n", 3));
    assert!(
        node.crabcan
            .calls()
            .iter()
            .any(|c| c.subcommand() == "exec" && c.id() == c1),
        "ExecSync did not go through the handler's binary"
    );

    // Both containers share the sandbox's network, IPC and UTS namespaces and hostname, and
    // each has its own PID namespace.
    let expect = format!(
        "{}\n{}\n{}\n{}",
        ns(&sb, "net"),
        ns(&sb, "ipc"),
        ns(&sb, "uts"),
        pod::hostname("web")
    );
    for id in [&c1, &c2] {
        let got = node.sh(
            id,
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname",
        );
        assert_eq!(got, expect, "{id} does not share the sandbox's namespaces");
    }
    assert_ne!(ns(&p1.to_string(), "pid"), ns(&p2.to_string(), "pid"));
    // The CNI plugin brought lo up in the pod's namespace (IFF_UP is bit 0 of the flags).
    let flags = node.sh(&c1, "cat /sys/class/net/lo/flags");
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).expect("hex flags");
    assert_eq!(flags & 1, 1, "lo is down in the pod");

    // UpdateContainerResources reaches the container's cgroups.
    let mem = scope::cgroup_dir(p1, "memory").expect("the logger's memory cgroup");
    let cpu = scope::cgroup_dir(p1, "cpu").expect("the logger's cpu cgroup");
    let read = |p: std::path::PathBuf| {
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
            .trim()
            .to_string()
    };
    assert_ne!(read(mem.join("memory.limit_in_bytes")), "67108864");
    assert_ne!(read(cpu.join("cpu.shares")), "512");
    let req = UpdateContainerResourcesRequest {
        container_id: c1.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    };
    node.must("UpdateContainerResources", |mut c| async move {
        c.update_container_resources(req).await
    });
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(cpu.join("cpu.shares")), "512");
    assert!(
        node.crabcan
            .calls()
            .iter()
            .any(|c| c.subcommand() == "update" && c.id() == c1),
        "the update did not go through the handler's binary"
    );

    // ListContainers and ListContainerStats see both.
    let listed = node.must("ListContainers", |mut c| async move {
        c.list_containers(ListContainersRequest { filter: None })
            .await
    });
    for id in [&c1, &c2] {
        let c = listed
            .containers
            .iter()
            .find(|c| &c.id == id)
            .unwrap_or_else(|| panic!("ListContainers lacks {id}"));
        assert_eq!(c.pod_sandbox_id, pod);
        assert_eq!(c.state, ContainerState::ContainerRunning as i32);
    }
    let stats = node.must("ListContainerStats", |mut c| async move {
        c.list_container_stats(ListContainerStatsRequest { filter: None })
            .await
    });
    for id in [&c1, &c2] {
        let s = stats
            .stats
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| &a.id == id))
            .unwrap_or_else(|| panic!("ListContainerStats lacks {id}: {stats:?}"));
        let ws = s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value);
        assert!(
            ws.is_some_and(|v| v > 0),
            "no memory working set for {id}: {s:?}"
        );
    }

    // StopContainer: SIGTERM is ignored, so SIGKILL follows after the 2 s timeout.
    let t = Instant::now();
    stop_container(&node, &c2, 2);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "StopContainer with a 2 s timeout took {took:?}"
    );
    let (st, _) = node.container_status(&c2);
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(st.exit_code, 137, "not reported as SIGKILLed: {st:?}");
    assert!(st.finished_at >= st.started_at, "no finish time: {st:?}");
    assert!(gone(p2), "the stopped container's process {p2} still runs");
    assert!(
        node.crabcan.calls().iter().any(|c| c.subcommand() == "kill"
            && c.args.contains(&c2)
            && c.args.last().is_some_and(|s| s == "9" || s == "KILL")),
        "no SIGKILL went through the handler's binary: {:?}",
        node.crabcan.calls()
    );

    // StopPodSandbox stops the rest; then the containers and the sandbox are removed.
    let req = StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    node.must("StopPodSandbox", |mut c| async move {
        c.stop_pod_sandbox(req).await
    });
    let sb_pid: u32 = sb.parse().expect("a pid");
    bounded::until(Duration::from_secs(10), "the pod's processes end", || {
        (gone(sb_pid) && gone(p1)).then_some(())
    });
    for id in [&c1, &c2] {
        remove_container(&node, id);
    }
    assert!(node.container_ids().is_empty(), "containers still listed");
    node.remove_pod(&pod);
    assert!(node.pod_ids().is_empty(), "the pod is still listed");
    node.finish();
}

#[test]
fn host_network_pod() {
    let node = Node::start("cri-hostnet");
    let spec = PodSpec {
        host_network: true,
        ..PodSpec::new("hostnet")
    };
    let sandbox = node.sandbox_config(&spec);
    let pod = node.run_pod(&sandbox, HANDLER);
    let sb = node.pod_pid(&pod).to_string();
    assert_eq!(
        ns(&sb, "net"),
        ns("self", "net"),
        "the sandbox is not on the host network"
    );
    let c = node.run(
        &pod,
        &pod::container("app", &["sleep", "inf"], &spec),
        &sandbox,
    );
    let host = nix::unistd::gethostname()
        .expect("the host's name")
        .to_string_lossy()
        .into_owned();
    let got = node.sh(
        &c,
        "for n in net uts; do readlink /proc/self/ns/$n; done; hostname",
    );
    assert_eq!(
        got,
        format!("{}\n{}\n{host}", ns("self", "net"), ns("self", "uts")),
        "the container is not on the host's network and UTS namespaces"
    );
    node.remove_pod(&pod);
    node.finish();
}

/// What a container's /proc/self/status says for `field`.
fn status_field(node: &Node, id: &str, field: &str) -> String {
    node.sh(
        id,
        &format!("grep '^{field}:' /proc/self/status | cut -f2-"),
    )
}

#[test]
fn security_settings_are_honoured() {
    assert!(
        scope::rootfs().join("bin/crabcan-probe").is_file(),
        "the test rootfs has no bin/crabcan-probe: run `cargo xtask rootfs target/test-rootfs`"
    );
    let node = Node::start("cri-security");
    let spec = PodSpec {
        privileged: true,
        ..PodSpec::new("secure")
    };
    let sandbox = node.sandbox_config(&spec);
    let pod = node.run_pod(&sandbox, HANDLER);
    let sleep = ["sleep", "inf"];
    // Every check is made in a container with the setting and in `plain`, which lacks it: the
    // probe must tell them apart, so a setting that is ignored fails its check.
    let plain = node.run(&pod, &pod::container("plain", &sleep, &spec), &sandbox);

    let mut cfg = pod::container("user", &sleep, &spec);
    pod::security(&mut cfg).run_as_user = Some(k8s_cri::v1::Int64Value { value: 1000 });
    pod::security(&mut cfg).run_as_group = Some(k8s_cri::v1::Int64Value { value: 3000 });
    let user = node.run(&pod, &cfg, &sandbox);
    assert_eq!(node.sh(&user, "id -u; id -g"), "1000\n3000");
    assert_eq!(status_field(&node, &user, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&node, &user, "Gid"), "3000\t3000\t3000\t3000");
    assert_eq!(node.sh(&plain, "id -u; id -g"), "0\n0");

    let mut cfg = pod::container("rofs", &sleep, &spec);
    pod::security(&mut cfg).readonly_rootfs = true;
    let rofs = node.run(&pod, &cfg, &sandbox);
    let (_, err, code) = node.exec(&rofs, &["touch", "/written"]);
    assert!(
        code != 0 && err.contains("Read-only file system"),
        "readOnlyRootFilesystem: touch / gave {code}: {err}"
    );
    node.sh(&plain, "touch /written && rm /written");

    let mut cfg = pod::container("caps", &sleep, &spec);
    pod::security(&mut cfg).capabilities = Some(Capability {
        add_capabilities: vec!["NET_RAW".into()],
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    let caps = node.run(&pod, &cfg, &sandbox);
    // CAP_NET_RAW is bit 13, alone.
    assert_eq!(status_field(&node, &caps, "CapEff"), "0000000000002000");
    assert_eq!(status_field(&node, &caps, "CapBnd"), "0000000000002000");
    let (_, err, code) = node.exec(&caps, &["sh", "-c", "touch /tmp/c && chown 1 /tmp/c"]);
    assert!(
        code != 0 && err.contains("Operation not permitted"),
        "without CAP_CHOWN chown gave {code}: {err}"
    );
    node.sh(&plain, "touch /tmp/c && chown 1 /tmp/c && rm /tmp/c");
    // containerd's default set for a plain container.
    assert_eq!(status_field(&node, &plain, "CapEff"), "00000000a80425fb");

    // RuntimeDefault seccomp: a filter is installed and keyctl(2), outside containerd's
    // default profile, is refused; in the privileged (unconfined) container it is not.
    let mut cfg = pod::container("privileged", &sleep, &spec);
    pod::make_privileged(&mut cfg);
    let privileged = node.run(&pod, &cfg, &sandbox);
    assert_eq!(status_field(&node, &plain, "Seccomp"), "2");
    assert_eq!(status_field(&node, &privileged, "Seccomp"), "0");
    let (out, _, code) = node.exec(&plain, &["crabcan-probe", "keyctl"]);
    assert_eq!(
        code, 0,
        "keyctl was not refused under RuntimeDefault: {out}"
    );
    let (out, _, code) = node.exec(&privileged, &["crabcan-probe", "keyctl"]);
    assert_eq!(
        code, 1,
        "keyctl was refused in a privileged container: {out}"
    );

    // Masked and read-only paths, as the kernel's mount table and file types show them.
    // A masked file is covered by /dev/null, a masked directory by an empty read-only tmpfs;
    // only the paths this kernel has are masked.
    let mut checked = 0;
    for path in pod::MASKED_PATHS {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        checked += 1;
        if meta.is_dir() {
            let script = format!(
                "grep ' {path} ' /proc/self/mountinfo | cut -d' ' -f6,9; ls -A {path} | wc -l"
            );
            let got = node.sh(&plain, &script);
            assert!(
                got.starts_with("ro") && got.contains(" tmpfs\n") && got.ends_with("\n0"),
                "{path} is not masked in a plain container: {got:?}"
            );
            let got = node.sh(&privileged, &script);
            assert!(
                !got.contains(" tmpfs\n"),
                "{path} is masked in the privileged container: {got:?}"
            );
        } else {
            let script = format!("stat -c %F {path}");
            assert_eq!(
                node.sh(&plain, &script),
                "character special file",
                "{path} is not masked in a plain container"
            );
            assert_ne!(
                node.sh(&privileged, &script),
                "character special file",
                "{path} is masked in the privileged container"
            );
        }
    }
    assert!(checked > 0, "none of kubelet's masked paths exists here");
    for path in pod::READONLY_PATHS {
        if fs::metadata(path).is_err() {
            continue;
        }
        let script = format!("grep ' {path} ' /proc/self/mountinfo | cut -d' ' -f6");
        let opts = node.sh(&plain, &script);
        assert!(
            opts.split(',').next() == Some("ro"),
            "{path} is not read-only in a plain container: {opts:?}"
        );
        assert_eq!(
            node.sh(&privileged, &script),
            "",
            "{path} is a read-only mount in the privileged container"
        );
    }
    // A privileged container has every capability the host's root has, and the host's devices.
    let host_bnd = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .expect("the test's own bounding set");
    assert_eq!(status_field(&node, &privileged, "CapEff"), host_bnd);
    let dev = "ls /dev | wc -l";
    let (n_priv, n_plain): (u32, u32) = (
        node.sh(&privileged, dev).parse().expect("a count"),
        node.sh(&plain, dev).parse().expect("a count"),
    );
    assert!(
        n_priv > n_plain,
        "the privileged container does not see the host's devices ({n_priv} vs {n_plain})"
    );

    node.remove_pod(&pod);
    node.finish();
}

#[test]
fn unknown_handler_is_refused_and_leaves_nothing() {
    let node = Node::start("cri-nohandler");
    let sandbox = node.sandbox_config(&PodSpec::new("nohandler"));
    let err = node
        .try_run_pod(&sandbox, "no-such-handler")
        .expect_err("RunPodSandbox with an unknown handler succeeded");
    assert!(
        err.message()
            .contains("no runtime for \"no-such-handler\" is configured"),
        "containerd's error is not the unknown-handler one: {:?}: {}",
        err.code(),
        err.message()
    );
    assert!(
        node.pod_ids().is_empty(),
        "a pod is listed after the refusal"
    );
    assert!(
        node.crabcan.calls().is_empty() && node.runc.calls().is_empty(),
        "a runtime ran for a refused pod"
    );
    node.finish();
}

#[test]
fn command_not_found_has_a_clear_reason() {
    let node = Node::start("cri-notfound");
    let spec = PodSpec::new("notfound");
    let sandbox = node.sandbox_config(&spec);
    let pod = node.run_pod(&sandbox, HANDLER);
    let id = node.create(
        &pod,
        &pod::container("missing", &["no-such-command-here"], &spec),
        &sandbox,
    );
    let err = node
        .try_start(&id)
        .expect_err("StartContainer of a missing command succeeded");
    let (st, _) = node.container_status(&id);
    eprintln!(
        "ContainerStatus: reason {:?}, message {:?}",
        st.reason, st.message
    );
    assert_ne!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    assert!(
        !st.reason.is_empty()
            && st.message.contains("no-such-command-here")
            && (st.message.contains("not found") || st.message.contains("no such file")),
        "ContainerStatus gives no clear reason: reason {:?}, message {:?} (StartContainer said: {})",
        st.reason,
        st.message,
        err.message()
    );
    node.remove_pod(&pod);
    node.finish();
}

/// A pod with one container, for the fault tests; returns (pod, container, their pids).
fn running_pod(node: &Node, name: &str) -> (String, String, Vec<u32>) {
    let spec = PodSpec::new(name);
    let sandbox = node.sandbox_config(&spec);
    let pod = node.run_pod(&sandbox, HANDLER);
    let c = node.run(
        &pod,
        &pod::container("app", &["sleep", "inf"], &spec),
        &sandbox,
    );
    let pids = vec![node.pod_pid(&pod), node.container_pid(&c)];
    (pod, c, pids)
}

#[test]
fn killed_shim_then_containerd_restart_leaves_nothing() {
    let node = Node::start("cri-killshim");
    let (pod, c, pids) = running_pod(&node, "killshim");
    let shim = node.shim_pid(&pod).expect("the pod's shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the shim");
    bounded::until(Duration::from_secs(10), "the shim dies", || {
        gone(shim).then_some(())
    });
    // containerd cleans up after a dead shim through the runtime (`delete --force`): the pod's
    // processes end and the container is reported exited.
    bounded::until(Duration::from_secs(20), "the dead shim's pod ends", || {
        pids.iter().all(|p| gone(*p)).then_some(())
    });
    assert!(
        ran(&node, "delete", &c),
        "the handler's binary did not delete the container of the dead shim: {:?}",
        node.crabcan.calls()
    );
    let (st, _) = node.container_status(&c);
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    node.stop_containerd();
    node.restart_containerd();
    node.remove_pod(&pod);
    bounded::until(Duration::from_secs(20), "the pod's processes end", || {
        pids.iter().all(|p| gone(*p)).then_some(())
    });
    node.finish();
}

#[test]
fn killed_containerd_then_restart_leaves_nothing() {
    let node = Node::start("cri-killcd");
    let (pod, c, pids) = running_pod(&node, "killcd");
    node.kill_containerd();
    // The shim and the pod outlive containerd.
    assert!(
        pids.iter().all(|p| !gone(*p)),
        "the pod died with containerd"
    );
    node.restart_containerd();
    let (st, _) = node.container_status(&c);
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "containerd lost the running container across its restart: {st:?}"
    );
    node.remove_pod(&pod);
    bounded::until(Duration::from_secs(20), "the pod's processes end", || {
        pids.iter().all(|p| gone(*p)).then_some(())
    });
    node.finish();
}
