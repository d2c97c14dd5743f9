//! The profile an engine writes into a container's config from the one it ships.

use serde_json::{Value, json};

/// Capabilities an engine gives a container by default.
const ENGINE_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The profile an engine writes into config.json from its shipped default on x86_64 with
/// the default capabilities: rules filtered by includes and excludes, the architecture map
/// turned into the list.
pub fn engine_profile(shipped: &Value) -> Value {
    let has_cap = |c: &Value| ENGINE_CAPS.contains(&c.as_str().unwrap_or(""));
    let has_arch = |a: &Value| a.as_str() == Some("amd64");
    let list = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for s in shipped["syscalls"].as_array().expect("syscalls") {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let inc_arches = list(inc, "arches");
        let keep = (inc_arches.is_empty() || inc_arches.iter().any(has_arch))
            && list(inc, "caps").iter().all(has_cap)
            && !list(exc, "arches").iter().any(has_arch)
            && !list(exc, "caps").iter().any(has_cap);
        if keep {
            let mut r = serde_json::Map::new();
            for k in ["names", "action", "errnoRet", "args"] {
                if let Some(v) = s.get(k) {
                    r.insert(k.into(), v.clone());
                }
            }
            syscalls.push(Value::Object(r));
        }
    }
    let mut arches = vec![json!("SCMP_ARCH_X86_64")];
    for m in shipped["archMap"].as_array().expect("archMap") {
        if m["architecture"] == "SCMP_ARCH_X86_64" {
            arches.extend(list(m, "subArchitectures"));
        }
    }
    json!({
        "defaultAction": shipped["defaultAction"],
        "defaultErrnoRet": shipped["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": syscalls,
    })
}
