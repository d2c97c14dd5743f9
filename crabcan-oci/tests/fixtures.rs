//! The configs real tools wrote (runc spec, podman, ctr, docker; recorded on this kind of
//! host) translate, and what they ask for arrives in the plan.

use crabcan_oci::{Host, NsKind, Plan, parse, translate};
use crabcan_security::Seccomp;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> Plan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let b = parse(PathBuf::from("/bundle"), &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut warnings = Vec::new();
    let p = translate(&b, Host::default(), &mut |w| warnings.push(w))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(warnings.is_empty(), "{name}: {warnings:?}");
    p
}

const ALL: &[&str] = &[
    "runc-spec.json",
    "podman-config.json",
    "podman-as-runc-config.json",
    "podman-pids-config.json",
    "podman-tty-config.json",
    "ctr-config.json",
    "ctr-sandbox-config.json",
    "ctr-withns-config.json",
    "docker-config.json",
    "docker-pids-config.json",
    "docker-tty-config.json",
];

#[test]
fn every_engine_config_translates_without_a_user_namespace() {
    for name in ALL {
        let p = fixture(name);
        assert!(p.namespace(NsKind::User).is_none(), "{name}");
        assert!(p.creates(NsKind::Mount) && p.creates(NsKind::Pid), "{name}");
        assert!(!p.process.args.is_empty(), "{name}");
        assert!(
            !p.masked_paths.is_empty() && !p.readonly_paths.is_empty(),
            "{name}"
        );
        assert!(p.mounts.iter().any(|m| m.fstype == "proc"), "{name}");
    }
}

#[test]
fn engine_seccomp_profiles_are_read() {
    for name in ["podman-config.json", "docker-config.json"] {
        let Seccomp::Profile(prof) = fixture(name).seccomp else {
            panic!("{name}: no profile")
        };
        assert_eq!(prof.architectures.len(), 3, "{name}");
        assert!(prof.syscalls.len() > 10, "{name}");
    }
    assert_eq!(fixture("ctr-config.json").seccomp, Seccomp::Unconfined);
}

#[test]
fn what_engines_ask_for_arrives() {
    let pod = fixture("podman-pids-config.json");
    assert_eq!(pod.resources.pids.unwrap().limit, 42);
    let path = pod.cgroups_path.as_ref().unwrap().to_string();
    assert!(path.contains("libpod"), "{path}");
    assert!(
        pod.mounts
            .iter()
            .any(|m| m.fstype == "bind" && m.destination == Path::new("/etc/hosts"))
    );
    let names: Vec<&str> = pod.process.rlimits.iter().map(|r| r.name).collect();
    assert_eq!(names, ["RLIMIT_NOFILE", "RLIMIT_NPROC"]);
    assert!(!pod.process.no_new_privs);

    let docker = fixture("docker-config.json");
    let keys: Vec<String> = docker
        .sysctl
        .iter()
        .map(|(k, _)| k.display().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "net/ipv4/ip_unprivileged_port_start",
            "net/ipv4/ping_group_range"
        ]
    );
    assert_eq!(docker.process.oom_score_adj, Some(0));
    let path = docker.cgroups_path.as_ref().unwrap().to_string();
    assert!(path.starts_with("/docker/"), "{path}");

    let tty = fixture("docker-tty-config.json");
    assert!(tty.process.terminal);
    assert!(fixture("podman-tty-config.json").process.terminal);

    let app = fixture("ctr-withns-config.json");
    let net = app.namespace(NsKind::Net).unwrap();
    assert!(net.path.as_deref().unwrap().ends_with("ns/net"));
    assert!(!app.creates(NsKind::Net));
    assert_eq!(app.root, Path::new("/bundle/rootfs"));

    let runc = fixture("runc-spec.json");
    assert_eq!(runc.hostname.as_deref(), Some("runc"));
    assert!(runc.root_readonly);
}

#[test]
fn every_engine_config_plans_its_mounts_and_confinement() {
    for name in ALL {
        let p = fixture(name);
        let m = crabcan_mounts::plan(&crabcan_oci::mount_config(&p, false))
            .unwrap_or_else(|e| panic!("{name}: mounts: {e}"));
        assert!(m.targets().any(|t| t == Path::new("/proc")), "{name}");
        let s = crabcan_security::plan(&crabcan_oci::security_config(&p))
            .unwrap_or_else(|e| panic!("{name}: security: {e}"));
        assert_eq!(
            s.seccomp_program().is_some(),
            matches!(p.seccomp, Seccomp::Profile(_)),
            "{name}"
        );
        assert_eq!(s.no_new_privs(), p.process.no_new_privs, "{name}");
    }
    // Zeros docker writes for what it leaves unset are no limits.
    let docker = fixture("docker-config.json");
    assert_eq!(docker.resources.cpu.as_ref().unwrap().shares, None);
    assert_eq!(docker.resources.block_io.as_ref().unwrap().weight, None);
    assert_eq!(
        docker.resources.memory.as_ref().unwrap().disable_oom_killer,
        None
    );
}
