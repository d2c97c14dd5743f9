//! The config `crabcan spec` writes: runc's defaults, with crabcan's hostname.

use serde_json::{Value, json};

/// The default config; `rootless` maps the caller's `uid`/`gid` to root in a user namespace
/// and leaves out what an ordinary user cannot have (a network namespace of its own with
/// no way to configure it, cgroup limits, a fresh sysfs).
pub fn default_spec(rootless: Option<(u32, u32)>) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut devpts = json!([
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5"
    ]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        Value::Null,
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
    ];
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let mut linux = json!({
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi"
        ],
        "readonlyPaths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
        ]
    });
    match rootless {
        None => {
            mounts.push(
                json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                               "options": ["nosuid", "noexec", "nodev", "ro"]}),
            );
            mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup",
                               "source": "cgroup",
                               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
            linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
        }
        Some((uid, gid)) => {
            if let Some(a) = devpts.as_array_mut() {
                a.retain(|o| o != "gid=5");
            }
            mounts.push(
                json!({"destination": "/sys", "type": "none", "source": "/sys",
                               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
            );
            namespaces.retain(|n| n["type"] != "network");
            namespaces.push(json!({"type": "user"}));
            linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
            linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        }
    }
    mounts[2] = json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                       "options": devpts});
    linux["namespaces"] = Value::Array(namespaces);
    json!({
        "ociVersion": crate::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps.clone(),
                "effective": caps.clone(),
                "permitted": caps.clone(),
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "crabcan",
        "mounts": mounts,
        "linux": linux
    })
}
