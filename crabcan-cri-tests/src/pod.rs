//! The pod and container configurations kubelet would send, built as kubelet builds them for
//! a plain pod: pod network unless asked otherwise, a private PID namespace per container, the
//! runtime's default seccomp profile, and kubelet's default masked and read-only paths.

use std::collections::HashMap;

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
    security_profile::ProfileType,
};

use crate::image::BUSYBOX;

/// The paths kubelet masks in every unprivileged container (its default proc mount).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The paths kubelet makes read-only in every unprivileged container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What differs between the pods the tests run.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// The pod's name (unique within a test).
    pub name: String,
    /// `hostNetwork: true`: the pod shares the node's network and UTS namespaces.
    pub host_network: bool,
    /// Whether the pod may hold privileged containers.
    pub privileged: bool,
}

impl PodSpec {
    /// A pod on the pod network, unprivileged.
    pub fn new(name: &str) -> PodSpec {
        PodSpec {
            name: name.to_string(),
            host_network: false,
            privileged: false,
        }
    }
}

/// The hostname a pod on the pod network gets.
pub fn hostname(pod: &str) -> String {
    format!("{pod}-host")
}

/// The sandbox configuration for `spec`, with its logs under `log_dir` and its cgroups under
/// `cgroup_parent`.
pub fn sandbox_config(spec: &PodSpec, log_dir: &str, cgroup_parent: &str) -> PodSandboxConfig {
    let network = if spec.host_network {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: spec.name.clone(),
            uid: format!("uid-{}", spec.name),
            namespace: "default".into(),
            attempt: 0,
        }),
        // kubelet sets no hostname for a host-network pod: it has no UTS namespace of its own.
        hostname: if spec.host_network {
            String::new()
        } else {
            hostname(&spec.name)
        },
        log_directory: log_dir.to_string(),
        labels: HashMap::from([("crabcan-cri-test".into(), spec.name.clone())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                privileged: spec.privileged,
                seccomp: Some(runtime_default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The runtime's default seccomp profile (what `seccompProfile: RuntimeDefault` sends).
pub fn runtime_default() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    }
}

/// A container of the busybox image running `command`, logging to `<name>.log` in the pod's
/// log directory, with kubelet's defaults for an unprivileged container.
pub fn container(name: &str, command: &[&str], spec: &PodSpec) -> ContainerConfig {
    let network = if spec.host_network {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    };
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                seccomp: Some(runtime_default()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// The security context of `config`, to adjust.
pub fn security(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("container() sets a security context")
}

/// Makes `config` privileged as kubelet does: no masked or read-only paths, unconfined.
pub fn make_privileged(config: &mut ContainerConfig) {
    let sc = security(config);
    sc.privileged = true;
    sc.masked_paths.clear();
    sc.readonly_paths.clear();
    sc.seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
}
