//! `crabcan features`: the runtime-spec features document, read off the code that decides:
//! each seccomp word is listed when the profile reader accepts it, each namespace and
//! capability from the tables the translation uses.

use serde_json::{Value, json};

/// Every action, operator and architecture word libseccomp knows; the ones crabcan's
/// profile reader accepts are reported.
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
const SECCOMP_ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

fn accepted(words: &[&str], profile: impl Fn(&str) -> Value) -> Vec<String> {
    words
        .iter()
        .filter(|w| crabcan_security::profile::from_value(&profile(w)).is_ok())
        .map(|w| (*w).to_string())
        .collect()
}

/// The features document.
pub fn features() -> Value {
    let actions = accepted(SECCOMP_ACTIONS, |w| json!({"defaultAction": w}));
    let operators = accepted(SECCOMP_OPERATORS, |w| {
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
               "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": w}]}]})
    });
    let archs = accepted(
        SECCOMP_ARCHS,
        |w| json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [w]}),
    );
    let namespaces: Vec<&str> = crabcan_oci::NsKind::JOIN_ORDER
        .iter()
        .map(|k| k.oci_name())
        .collect();
    let caps: Vec<String> = crabcan_security::KNOWN_CAPS
        .iter()
        .map(|c| c.name())
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crabcan_oci::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "linux": {
            "namespaces": namespaces,
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": actions,
                "operators": operators,
                "archs": archs
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runtime-spec.features.version": crabcan_oci::OCI_VERSION}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_code() {
        let f = features();
        let acts = f["linux"]["seccomp"]["actions"].as_array().unwrap();
        assert!(acts.contains(&json!("SCMP_ACT_ERRNO")));
        // No agent can be attached, so the reader refuses NOTIFY and it is not listed.
        assert!(!acts.contains(&json!("SCMP_ACT_NOTIFY")));
        let archs = f["linux"]["seccomp"]["archs"].as_array().unwrap();
        assert!(archs.contains(&json!("SCMP_ARCH_X32")));
        assert!(!archs.contains(&json!("SCMP_ARCH_AARCH64")));
        assert_eq!(
            f["linux"]["seccomp"]["operators"].as_array().unwrap().len(),
            7
        );
        let ns = f["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!("network")) && !ns.contains(&json!("time")));
    }
}
