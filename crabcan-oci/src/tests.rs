use crate::*;
use crabcan_security::{Capability, Seccomp};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

fn bundle(v: &Value) -> crabcan_errors::Result<Bundle> {
    parse("/b".into(), &v.to_string())
}

fn plan_of(v: &Value) -> crabcan_errors::Result<Plan> {
    translate(&bundle(v)?, Host::default(), &mut |_| {})
}

fn err_of(v: &Value) -> String {
    plan_of(v).unwrap_err().to_string()
}

fn set(v: &mut Value, pointer: &str, val: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut cur = v;
    for part in parent.split('/').skip(1) {
        if cur[part].is_null() {
            cur[part] = json!({});
        }
        cur = &mut cur[part];
    }
    cur[key] = val;
}

#[test]
fn the_default_spec_translates() {
    let p = plan_of(&default_spec(None)).unwrap();
    assert_eq!(p.root, Path::new("/b/rootfs"));
    assert!(p.root_readonly);
    assert_eq!(p.process.args, ["sh"]);
    assert!(p.process.terminal);
    assert!(p.process.no_new_privs);
    assert_eq!(p.hostname.as_deref(), Some("crabcan"));
    let kinds: Vec<NsKind> = p.namespaces.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NsKind::Pid,
            NsKind::Net,
            NsKind::Ipc,
            NsKind::Uts,
            NsKind::Mount,
            NsKind::Cgroup
        ]
    );
    assert!(!p.creates(NsKind::User));
    assert!(p.process.caps.bounding.contains(Capability::Kill));
    assert!(!p.process.caps.bounding.contains(Capability::SysAdmin));
    assert!(p.process.caps.inheritable.0 == 0);
    assert_eq!(p.mounts.len(), 7);
    assert_eq!(p.mounts[2].fstype, "devpts");
    assert_eq!(
        p.mounts[2].options.data,
        ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    );
    // runc's spec denies every device, then crabcan (as runc) allows the standard nodes.
    let rules = p.resources.devices.as_ref().unwrap();
    assert!(!rules[0].allow);
    assert!(
        rules
            .iter()
            .any(|r| r.allow && r.major == Some(1) && r.minor == Some(3))
    );
    assert!(p.masked_paths.contains(&"/proc/kcore".into()));
    assert!(p.readonly_paths.contains(&"/proc/sys".into()));
    assert_eq!(
        i64::from(p.process.rlimits[0].resource),
        i64::from(libc::RLIMIT_NOFILE)
    );
    assert_eq!(p.seccomp, Seccomp::Unconfined);
}

#[test]
fn the_rootless_spec_maps_the_caller() {
    let p = plan_of(&default_spec(Some((1000, 1001)))).unwrap();
    assert!(p.creates(NsKind::User));
    assert!(p.namespace(NsKind::Net).is_none());
    assert_eq!(
        p.uid_mappings,
        [IdRange {
            inside: 0,
            outside: 1000,
            count: 1
        }]
    );
    assert_eq!(p.gid_mappings[0].outside, 1001);
    assert_eq!(p.resources, crabcan_cgroups::Resources::default());
}

#[test]
fn id_mappings_need_a_new_user_namespace() {
    let mut v = default_spec(None);
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    assert!(err_of(&v).starts_with("config.json linux.uidMappings: "));
    let mut v = default_spec(Some((1, 1)));
    v["linux"]["gidMappings"] = json!([]);
    assert!(err_of(&v).starts_with("config.json linux.uidMappings: "));
}

#[test]
fn namespaces_joined_by_path_are_kept() {
    let mut v = default_spec(None);
    v["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/42/ns/net"});
    let p = plan_of(&v).unwrap();
    assert_eq!(
        p.namespace(NsKind::Net).unwrap().path.as_deref(),
        Some(Path::new("/proc/42/ns/net"))
    );
    assert!(!p.creates(NsKind::Net));
    assert!(p.creates(NsKind::Pid));
}

#[test]
fn seccomp_profiles_are_read_and_their_errors_name_the_path() {
    let mut v = default_spec(None);
    v["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
    });
    let p = plan_of(&v).unwrap();
    let Seccomp::Profile(prof) = &p.seccomp else {
        panic!("no profile")
    };
    assert_eq!(prof.architectures.len(), 3);
    v["linux"]["seccomp"]["syscalls"][0]["args"] =
        json!([{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]);
    let e = err_of(&v);
    assert!(
        e.starts_with("config.json linux.seccomp.syscalls[0].args[0]"),
        "{e}"
    );
    // An unknown word is named by its path and its value.
    v["linux"]["seccomp"]["syscalls"][0]["args"] =
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]);
    let e = err_of(&v);
    assert!(
        e.starts_with("config.json linux.seccomp.syscalls[0].args[0].op: ")
            && e.contains("\"SCMP_CMP_FOO\""),
        "{e}"
    );
}

#[test]
fn sysctls_outside_the_containers_namespaces_are_refused() {
    let mut v = default_spec(None);
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"});
    let p = plan_of(&v).unwrap();
    assert_eq!(
        p.sysctl,
        [
            ("kernel/shmmax".into(), "4096".to_string()),
            ("net/ipv4/ip_forward".into(), "1".to_string())
        ]
    );
    for (key, why) in [
        ("vm.swappiness", "not a namespaced sysctl"),
        ("kernel.hostname", "hostname"),
        ("net..x", "invalid key"),
    ] {
        let mut v = default_spec(None);
        v["linux"]["sysctl"] = json!({ key: "1" });
        let e = err_of(&v);
        assert!(
            e.starts_with(&format!("config.json linux.sysctl.{key}: ")),
            "{e}"
        );
        assert!(e.contains(why), "{e}");
    }
    let mut v = default_spec(None);
    v["linux"]["namespaces"] = json!([{"type": "mount"}]);
    v["hostname"] = json!("");
    v["linux"]["sysctl"] = json!({"net.core.somaxconn": "1"});
    assert!(err_of(&v).contains("needs a network namespace"));
}

#[test]
fn lsm_labels_are_skipped_with_a_warning_only_without_the_lsm() {
    let mut v = default_spec(None);
    v["process"]["apparmorProfile"] = json!("docker-default");
    v["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    let b = bundle(&v).unwrap();
    let mut warnings = Vec::new();
    translate(&b, Host::default(), &mut |w| warnings.push(w)).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("process.apparmorProfile"));
    let host = Host {
        apparmor: true,
        selinux: false,
    };
    let e = translate(&b, host, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.starts_with("config.json process.apparmorProfile: "),
        "{e}"
    );
}

#[test]
fn hooks_keep_order_args_and_timeouts() {
    let mut v = default_spec(None);
    v["hooks"] = json!({
        "prestart": [{"path": "/bin/a"}],
        "createRuntime": [{"path": "/bin/b", "args": ["b", "x"], "env": ["A=1"], "timeout": 3}],
        "poststop": [{"path": "/bin/c"}, {"path": "/bin/d"}]
    });
    let p = plan_of(&v).unwrap();
    assert_eq!(p.hooks.prestart[0].args, ["/bin/a"]);
    assert_eq!(p.hooks.create_runtime[0].args, ["b", "x"]);
    assert_eq!(
        p.hooks.create_runtime[0].timeout,
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(p.hooks.poststop.len(), 2);
    v["hooks"]["poststop"][1]["timeout"] = json!(0);
    assert!(err_of(&v).starts_with("config.json hooks.poststop[1].timeout: "));
}

#[test]
fn malformed_configs_are_one_line_errors() {
    for text in [
        "",
        "{",
        "[]",
        "{\"ociVersion\": 3}",
        "{\"process\": {\"args\": 1}}",
    ] {
        let e = parse("/b".into(), text).unwrap_err().to_string();
        assert!(e.starts_with("config.json"), "{text}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = parse("/b".into(), "{\"process\": {\"args\": 1}}")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config.json process.args: invalid type"),
        "{e}"
    );
}

/// Fields that must be refused, with the path the error must name.
fn refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("/linux/intelRdt", json!({"closID": "x"}), "linux.intelRdt"),
        (
            "/linux/timeOffsets",
            json!({"monotonic": {"secs": 1}}),
            "linux.timeOffsets",
        ),
        (
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0"}),
            "linux.memoryPolicy",
        ),
        ("/linux/netDevices", json!({"eth0": {}}), "linux.netDevices"),
        (
            "/linux/personality",
            json!({"domain": "LINUX", "flags": ["x"]}),
            "linux.personality.flags",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_IDLE", "priority": 1}),
            "process.ioPriority",
        ),
        (
            "/process/scheduler",
            json!({"policy": "SCHED_OTHER"}),
            "process.scheduler",
        ),
        (
            "/process/user/username",
            json!("bob"),
            "process.user.username",
        ),
        ("/process/cwd", json!("rel"), "process.cwd"),
        ("/process/args", json!([]), "process.args"),
        ("/process/env", json!(["NOEQ"]), "process.env[0]"),
        ("/process/oomScoreAdj", json!(5000), "process.oomScoreAdj"),
        (
            "/process/rlimits",
            json!([{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]),
            "process.rlimits[0]",
        ),
        ("/hostname", json!("x".repeat(65)), "hostname"),
        (
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 0, "size": 0}]),
            "linux.uidMappings[0]",
        ),
        (
            "/linux/rootfsPropagation",
            json!("sideways"),
            "linux.rootfsPropagation",
        ),
        (
            "/linux/maskedPaths",
            json!(["relative"]),
            "linux.maskedPaths[0]",
        ),
        (
            "/linux/readonlyPaths",
            json!(["/a/../b"]),
            "linux.readonlyPaths[0]",
        ),
        (
            "/linux/devices",
            json!([{"path": "/etc/x", "type": "c", "major": 1, "minor": 3}]),
            "linux.devices[0].path",
        ),
        (
            "/linux/namespaces",
            json!([{"type": "time"}]),
            "linux.namespaces[0].type",
        ),
        (
            "/linux/namespaces",
            json!([{"type": "pid"}, {"type": "pid"}]),
            "linux.namespaces[1].type",
        ),
        (
            "/linux/namespaces",
            json!([{"type": "user"}, {"type": "network", "path": "/proc/1/ns/net"}]),
            "linux.namespaces[0]",
        ),
        (
            "/linux/resources/rdma",
            json!({"mlx": {"hcaHandles": 1}}),
            "linux.resources.rdma",
        ),
        (
            "/mounts",
            json!([{"destination": "rel", "type": "tmpfs"}]),
            "mounts[0].destination",
        ),
        (
            "/mounts",
            json!([{"destination": "/x", "options": ["ro"]}]),
            "mounts[0].type",
        ),
        (
            "/mounts",
            json!([{"destination": "/x", "type": "bind", "source": "rel", "options": ["bind"]}]),
            "mounts[0].source",
        ),
        (
            "/mounts",
            json!([{"destination": "/x", "type": "bind", "source": "/a", "options": ["bind"], "uidMappings": [{"containerID": 0, "hostID": 0, "size": 1}]}]),
            "mounts[0].uidMappings",
        ),
        (
            "/hooks",
            json!({"prestart": [{"path": "rel"}]}),
            "hooks.prestart[0].path",
        ),
        ("/windows", json!({"layerFolders": []}), "windows"),
        ("/solaris", json!({"milestone": "x"}), "solaris"),
        ("/vm", json!({"kernel": {"path": "/k"}}), "vm"),
        ("/zos", json!({}), "zos"),
        (
            "/linux/resources/memory/useHierarchy",
            json!(true),
            "linux.resources.memory.useHierarchy",
        ),
        (
            "/linux/resources/memory/checkBeforeUpdate",
            json!(true),
            "linux.resources.memory.checkBeforeUpdate",
        ),
        (
            "/linux/resources/cpu/idle",
            json!(1),
            "linux.resources.cpu.idle",
        ),
        (
            "/linux/resources/cpu/burst",
            json!(1),
            "linux.resources.cpu.burst",
        ),
        (
            "/linux/resources/blockIO/leafWeight",
            json!(10),
            "linux.resources.blockIO.leafWeight",
        ),
        (
            "/linux/resources/blockIO/weightDevice",
            json!([{"major": 8, "minor": 0, "weight": 10, "leafWeight": 10}]),
            "linux.resources.blockIO.weightDevice[0].leafWeight",
        ),
        (
            "/uidMappings",
            json!([{"containerID": 0, "hostID": 0, "size": 1}]),
            "uidMappings",
        ),
        ("/process/commandLine", json!("a b"), "process.commandLine"),
        (
            "/process/execCPUAffinity",
            json!({"initial": "0-1"}),
            "process.execCPUAffinity",
        ),
        // A refused field is refused whatever its value's type.
        ("/linux/intelRdt", json!(5), "linux.intelRdt"),
        (
            "/process/rlimits",
            json!([{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
            "process.rlimits[0].type",
        ),
        (
            "/process/capabilities/ambient",
            json!(["CAP_KILL", "CAP_NOT_ONE"]),
            "process.capabilities.ambient[1]",
        ),
        ("/ociVersion", json!("0.9"), "ociVersion"),
    ]
}

#[test]
fn a_value_of_the_wrong_type_or_word_is_named_by_its_path() {
    for (ptr, val, path, why) in [
        (
            "/linux/namespaces",
            json!([{"type": "pidx"}]),
            "linux.namespaces[0].type",
            "unknown variant `pidx`",
        ),
        (
            "/linux/devices",
            json!([{"path": "/dev/x", "type": "q"}]),
            "linux.devices[0].type",
            "unknown variant `q`",
        ),
        (
            "/linux/personality",
            json!({"domain": "LINUX64"}),
            "linux.personality.domain",
            "unknown variant",
        ),
        (
            "/process/user/uid",
            json!(-1),
            "process.user.uid",
            "invalid value",
        ),
        (
            "/linux/resources/memory/limit",
            json!("1g"),
            "linux.resources.memory.limit",
            "invalid type",
        ),
        (
            "/linux/resources/blockIO/throttleReadIOPSDevice",
            json!([{"major": "8"}]),
            "linux.resources.blockIO.throttleReadIOPSDevice[0].major",
            "invalid type",
        ),
        (
            "/mounts",
            json!([{"type": "tmpfs"}]),
            "mounts[0]",
            "missing field `destination`",
        ),
        (
            "/process/cwd",
            Value::Null,
            "process.cwd",
            "invalid type: null",
        ),
    ] {
        let mut v = default_spec(None);
        set(&mut v, ptr, val);
        let e = err_of(&v);
        assert!(
            e.starts_with(&format!("config.json {path}: ")) && e.contains(why),
            "{ptr}: expected {path}: …{why}…, got: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn what_engines_leave_out_reads_as_zero_or_none() {
    let mut v = default_spec(None);
    v["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "pids": {},
        "blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
        "hugepageLimits": [{"pageSize": "2MB"}],
        "network": {"priorities": [{"name": "eth0"}]}
    });
    v["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
    // Unknown fields anywhere are ignored, as the spec asks.
    v["linux"]["someFutureField"] = json!({"x": 1});
    v["process"]["user"]["someFutureField"] = json!(1);
    let p = plan_of(&v).unwrap();
    assert_eq!(p.resources.pids, None, "a pids limit of 0 is none");
    let io = p.resources.block_io.as_ref().unwrap();
    assert_eq!(
        (
            io.throttle_write_iops[0].major,
            io.throttle_write_iops[0].rate
        ),
        (8, 40)
    );
    let huge = p.resources.hugepage_limits.as_ref().unwrap();
    assert_eq!((huge[0].page_size.as_str(), huge[0].limit), ("2MB", 0));
    assert_eq!(
        p.resources.network.as_ref().unwrap().priorities,
        [("eth0".to_string(), 0)]
    );
    let fuse = &p.devices[0];
    assert_eq!(
        (fuse.major, fuse.minor, fuse.file_mode, fuse.uid),
        (10, 229, 0o666, 0)
    );
}

/// Every field read, set to a value no default gives, comes through under its JSON
/// spelling: a misspelt or unnamed field would be read as absent.
#[test]
fn every_field_is_read_by_its_spelling() {
    let mut v = default_spec(Some((1000, 1000)));
    let map = json!([{"containerID": 0, "hostID": 1000, "size": 1},
                     {"containerID": 1, "hostID": 100000, "size": 65536}]);
    v["linux"]["uidMappings"] = map.clone();
    v["linux"]["gidMappings"] = map;
    v["domainname"] = json!("example.org");
    v["annotations"] = json!({"org.example/a": "b"});
    v["root"]["readonly"] = json!(false);
    let p = &mut v["process"];
    p["user"] = json!({"uid": 7, "gid": 8, "umask": 18, "additionalGids": [5, 6]});
    p["consoleSize"] = json!({"height": 24, "width": 80});
    p["terminal"] = json!(true);
    p["oomScoreAdj"] = json!(100);
    p["noNewPrivileges"] = json!(false);
    p["capabilities"]["inheritable"] = json!(["CAP_CHOWN"]);
    let l = &mut v["linux"];
    l["personality"] = json!({"domain": "LINUX32"});
    l["rootfsPropagation"] = json!("rslave");
    l["cgroupsPath"] = json!("/a/b");
    l["devices"] = json!([{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200,
                           "fileMode": 384, "uid": 5, "gid": 6}]);
    l["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "b", "major": 7, "minor": 3, "access": "rw"}],
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "kernelTCP": 8388608, "swappiness": 10, "disableOOMKiller": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 950,
                "realtimePeriod": 1000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300,
                    "weightDevice": [{"major": 8, "minor": 1, "weight": 400}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 2, "rate": 1000}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 3, "rate": 2000}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 4, "rate": 30}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 5, "rate": 40}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "unified": {"memory.high": "max"}
    });
    let p = plan_of(&v).unwrap();
    assert_eq!(
        (
            p.uid_mappings[1].inside,
            p.uid_mappings[1].outside,
            p.uid_mappings[1].count
        ),
        (1, 100000, 65536)
    );
    assert_eq!(p.gid_mappings.len(), 2);
    assert_eq!(p.domainname.as_deref(), Some("example.org"));
    assert_eq!(p.annotations["org.example/a"], "b");
    assert!(!p.root_readonly);
    let pr = &p.process;
    assert_eq!((pr.uid, pr.gid, pr.umask), (7, 8, Some(18)));
    assert_eq!(pr.additional_gids, [5, 6]);
    assert_eq!(pr.console_size, Some((24, 80)));
    assert!(pr.terminal && !pr.no_new_privs);
    assert_eq!(pr.oom_score_adj, Some(100));
    assert!(pr.caps.inheritable.contains(Capability::Chown));
    assert_eq!(p.personality, Some(0x0008));
    assert_eq!(
        p.rootfs_propagation,
        crabcan_mounts::Propagation::parse("rslave")
    );
    assert_eq!(p.cgroups_path.as_ref().unwrap().to_string(), "/a/b");
    let d = &p.devices[0];
    assert_eq!(
        (d.major, d.minor, d.file_mode, d.uid, d.gid),
        (10, 200, 0o600, 5, 6)
    );
    let r = &p.resources;
    let rules = r.devices.as_ref().unwrap();
    assert!(!rules[0].allow && rules[0].kind == crabcan_cgroups::DeviceKind::All);
    assert!(rules.iter().any(|x| x.allow
        && x.kind == crabcan_cgroups::DeviceKind::Block
        && (x.major, x.minor) == (Some(7), Some(3))
        && x.access.read
        && !x.access.mknod));
    let m = r.memory.as_ref().unwrap();
    assert_eq!(
        (
            m.limit,
            m.reservation,
            m.swap,
            m.kernel_tcp,
            m.swappiness,
            m.disable_oom_killer
        ),
        (
            Some(67108864),
            Some(33554432),
            Some(134217728),
            Some(8388608),
            Some(10),
            Some(true)
        )
    );
    let c = r.cpu.as_ref().unwrap();
    assert_eq!(
        (
            c.shares,
            c.quota,
            c.period,
            c.realtime_runtime,
            c.realtime_period
        ),
        (Some(512), Some(50000), Some(100000), Some(950), Some(1000))
    );
    assert_eq!(
        (c.cpus.as_deref(), c.mems.as_deref()),
        (Some("0"), Some("0"))
    );
    assert_eq!(r.pids.map(|p| p.limit), Some(100));
    let io = r.block_io.as_ref().unwrap();
    assert_eq!(io.weight, Some(300));
    assert_eq!(
        (io.weight_device[0].minor, io.weight_device[0].weight),
        (1, 400)
    );
    let rate = |v: &[crabcan_cgroups::ThrottleDevice]| (v[0].minor, v[0].rate);
    assert_eq!(rate(&io.throttle_read_bps), (2, 1000));
    assert_eq!(rate(&io.throttle_write_bps), (3, 2000));
    assert_eq!(rate(&io.throttle_read_iops), (4, 30));
    assert_eq!(rate(&io.throttle_write_iops), (5, 40));
    let huge = &r.hugepage_limits.as_ref().unwrap()[0];
    assert_eq!((huge.page_size.as_str(), huge.limit), ("2MB", 2097152));
    let net = r.network.as_ref().unwrap();
    assert_eq!(net.class_id, Some(1048577));
    assert_eq!(net.priorities, [("eth0".to_string(), 5)]);
    assert_eq!(r.unified.as_ref().unwrap()["memory.high"], "max");
}

#[test]
fn a_key_given_twice_is_refused_by_its_path() {
    // The seccomp profile is read from the JSON itself: a repeated key there must not be
    // read as its last value (a checker reading the first would see another profile).
    let dup = r#"{"ociVersion": "1.2.0", "root": {"path": "r"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"},
        "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "action": "SCMP_ACT_LOG"}]}}}"#;
    let e = parse("/b".into(), dup).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"config.json linux.seccomp.syscalls[0]: the key "action" is given twice"#),
        "{e}"
    );
    let e = parse(
        "/b".into(),
        r#"{"ociVersion": "1.2.0", "ociVersion": "1.0.0"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with(r#"config.json: the key "ociVersion""#), "{e}");
    let e = parse("/b".into(), "{\"ociVersion\": ")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config.json: invalid JSON: "), "{e}");
}

#[test]
fn every_refusal_names_its_path() {
    for (ptr, val, path) in refusals() {
        let mut v = default_spec(None);
        set(&mut v, ptr, val);
        let e = err_of(&v);
        assert!(
            e.starts_with(&format!("config.json {path}: ")),
            "{ptr}: expected the path {path}, got: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}

proptest! {
    /// Any one refused field, put into any valid config from the ones crabcan writes, is
    /// refused by its own path, whatever else the config holds.
    #[test]
    fn a_refused_field_is_named_in_any_config(
        which in 0..200usize,
        rootless in any::<bool>(),
        extra_env in proptest::collection::vec("[A-Z]{1,5}=[a-z]{0,5}", 0..4),
        terminal in any::<bool>(),
    ) {
        let cases = refusals();
        let (ptr, val, path) = &cases[which % cases.len()];
        let mut v = default_spec(rootless.then_some((1000, 1000)));
        v["process"]["terminal"] = json!(terminal);
        for e in &extra_env {
            v["process"]["env"].as_array_mut().unwrap().push(json!(e));
        }
        prop_assert!(plan_of(&v).is_ok());
        set(&mut v, ptr, val.clone());
        let e = err_of(&v);
        prop_assert!(e.starts_with(&format!("config.json {path}: ")), "{}", e);
    }

    /// Arbitrary JSON never panics the loader or the translation.
    #[test]
    fn arbitrary_json_never_panics(text in ".{0,200}") {
        if let Ok(b) = parse("/b".into(), &text) {
            let _ = translate(&b, Host::default(), &mut |_| {});
        }
    }
}

#[test]
fn rlimit_numbers_are_the_kernels() {
    let all = [
        ("RLIMIT_CPU", i64::from(libc::RLIMIT_CPU)),
        ("RLIMIT_FSIZE", i64::from(libc::RLIMIT_FSIZE)),
        ("RLIMIT_DATA", i64::from(libc::RLIMIT_DATA)),
        ("RLIMIT_STACK", i64::from(libc::RLIMIT_STACK)),
        ("RLIMIT_CORE", i64::from(libc::RLIMIT_CORE)),
        ("RLIMIT_RSS", i64::from(libc::RLIMIT_RSS)),
        ("RLIMIT_NPROC", i64::from(libc::RLIMIT_NPROC)),
        ("RLIMIT_NOFILE", i64::from(libc::RLIMIT_NOFILE)),
        ("RLIMIT_MEMLOCK", i64::from(libc::RLIMIT_MEMLOCK)),
        ("RLIMIT_AS", i64::from(libc::RLIMIT_AS)),
        ("RLIMIT_LOCKS", i64::from(libc::RLIMIT_LOCKS)),
        ("RLIMIT_SIGPENDING", i64::from(libc::RLIMIT_SIGPENDING)),
        ("RLIMIT_MSGQUEUE", i64::from(libc::RLIMIT_MSGQUEUE)),
        ("RLIMIT_NICE", i64::from(libc::RLIMIT_NICE)),
        ("RLIMIT_RTPRIO", i64::from(libc::RLIMIT_RTPRIO)),
        ("RLIMIT_RTTIME", i64::from(libc::RLIMIT_RTTIME)),
    ];
    let mut v = default_spec(None);
    v["process"]["rlimits"] = all
        .iter()
        .map(|(n, _)| json!({"type": n, "soft": 1, "hard": 2}))
        .collect();
    let p = plan_of(&v).unwrap();
    assert_eq!(p.process.rlimits.len(), all.len());
    for (r, (name, num)) in p.process.rlimits.iter().zip(all) {
        assert_eq!((r.name, i64::from(r.resource)), (name, num));
    }
}
