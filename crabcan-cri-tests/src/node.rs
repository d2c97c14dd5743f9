//! A node without kubelet: a private containerd with its CRI plugin on, two runtime handlers
//! (`crabcan`, running the runtime under test, and `runc`), the loopback CNI plugin and the
//! test images, and a CRI client that makes kubelet's calls.
//!
//! Everything lives under the test's scope directory (under `target/`), except what containerd
//! 1.6 puts elsewhere whatever it is told: shim sockets under `/run/containerd/s` and the pods'
//! cgroups. [`Node::finish`] removes those, as kubelet would, and then checks that nothing of
//! the test's pods is left on the host.

use std::cell::RefCell;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crabcan_engine_tests::daemon::{self, Daemon};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerStatus, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ImageStatusRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxConfig, PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::Status;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::bounded;
use crate::image;
use crate::pod::{self, PodSpec};
use crate::scope::{self, Scope};
use crate::timer::Timer;

/// The containerd namespace the CRI plugin uses.
pub const NS: &str = "k8s.io";
/// How long one CRI call may take.
pub const CALL_LIMIT: Duration = Duration::from_secs(90);
/// The handler that runs the runtime under test.
pub const HANDLER: &str = "crabcan";
/// The reference handler, runc, for the speed comparison.
pub const RUNC_HANDLER: &str = "runc";
/// The reference runtime.
pub const RUNC: &str = "/usr/sbin/runc";

/// The runtime binary under test: `CRABCAN_CRI_RUNTIME`, or the workspace's static release
/// build (`cargo build --release --target x86_64-unknown-linux-musl -p crabcan-cli`; these
/// tests build nothing), the binary users run and the speed test must time.
pub fn runtime() -> PathBuf {
    let (path, whence) = match std::env::var_os("CRABCAN_CRI_RUNTIME") {
        Some(p) => (PathBuf::from(p), "CRABCAN_CRI_RUNTIME"),
        None => (
            scope::target_dir().join("x86_64-unknown-linux-musl/release/crabcan"),
            "the default",
        ),
    };
    let path = path.canonicalize().unwrap_or(path);
    assert!(
        path.is_file(),
        "runtime {} ({whence}) does not exist: run `cargo build --release --target \
         x86_64-unknown-linux-musl -p crabcan-cli` first, or set \
         CRABCAN_CRI_RUNTIME (cargo xtask cri does both)",
        path.display()
    );
    path
}

/// A binary of this crate's test kit (`crabcan-cri-loopback`, `crabcan-cri-timer`), which cargo
/// builds beside the test binaries' `deps/` directory.
pub fn kit_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo builds it with the crate's tests",
        path.display()
    );
    path
}

/// Pids of the processes whose command line contains every one of `needles`.
pub fn pids_with(needles: &[&str]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(d) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .filter(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            needles.iter().all(|n| cmd.contains(n))
        })
        .collect()
}

/// One pod the test ran: its sandbox id and the name of its pod-level cgroup.
#[derive(Debug, Clone)]
struct PodRecord {
    id: String,
    cgroup: String,
}

/// A private containerd with the CRI plugin, and a CRI client on it.
pub struct Node {
    /// The test's scope: its directory, cgroup tag and leftovers check.
    pub scope: Scope,
    containerd: RefCell<Option<Daemon>>,
    /// containerd's gRPC socket.
    pub address: PathBuf,
    config: PathBuf,
    rt: tokio::runtime::Runtime,
    channel: RefCell<Channel>,
    /// The `crabcan` handler's timing wrapper.
    pub crabcan: Timer,
    /// The `runc` handler's timing wrapper.
    pub runc: Timer,
    /// The pods' log directories' parent.
    pub log_root: PathBuf,
    pods: RefCell<Vec<PodRecord>>,
}

fn connect(rt: &tokio::runtime::Runtime, address: &Path) -> Channel {
    let path = address.to_path_buf();
    // The URI is a placeholder: every connection goes to the unix socket.
    let endpoint = Endpoint::from_static("http://[::]:50051").connect_timeout(CALL_LIMIT);
    rt.block_on(
        endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        })),
    )
    .unwrap_or_else(|e| panic!("cannot connect to containerd at {}: {e}", address.display()))
}

impl Node {
    /// Starts a node for the test `name`: writes containerd's config, starts it, imports the
    /// images into the CRI namespace and connects the client.
    pub fn start(name: &str) -> Node {
        // Before the scope notes which shared host paths exist: a killed run's are removed first.
        sweep_killed_runs();
        let scope = Scope::new(name);
        let dir = scope.dir.clone();
        let runtime = runtime();
        let timer = kit_binary("crabcan-cri-timer");
        let crabcan = Timer::install(&timer, &runtime, &dir.join("rt/crabcan"));
        let runc = Timer::install(&timer, Path::new(RUNC), &dir.join("rt/runc"));
        // The shim gives the runtime `--root <Root>/<namespace>`.
        for t in [&crabcan, &runc] {
            scope.track_state_root(t.dir.join("root").join(NS));
        }
        let cni_bin = dir.join("cni/bin");
        let cni_conf = dir.join("cni/conf");
        for d in [&cni_bin, &cni_conf] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        // containerd 1.6 always adds a network of its own for `lo`, run by a plugin named
        // `loopback`: the same binary serves it.
        for name in ["crabcan-cri-loopback", "loopback"] {
            fs::copy(kit_binary("crabcan-cri-loopback"), cni_bin.join(name))
                .expect("copy the CNI plugin into its bin_dir");
        }
        fs::write(
            cni_conf.join("10-loopback.conflist"),
            r#"{"cniVersion":"0.4.0","name":"crabcan-cri-lo","plugins":[{"type":"crabcan-cri-loopback"}]}"#,
        )
        .expect("write the CNI configuration");
        let log_root = dir.join("pods");
        fs::create_dir_all(&log_root).expect("create the pod log directory");
        // Short names: the gRPC socket's path must fit a sockaddr_un.
        let address = dir.join("c.sock");
        let config = dir.join("containerd.toml");
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let mut text = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             [grpc]\n  address = \"{a}\"\n\
             [ttrpc]\n  address = \"{a}.ttrpc\"\n\
             [{cri}]\n\
             \x20 sandbox_image = \"{pause}\"\n\
             \x20 systemd_cgroup = false\n\
             \x20 disable_tcp_service = true\n\
             \x20 stream_server_address = \"127.0.0.1\"\n\
             \x20 stream_server_port = \"0\"\n\
             \x20 disable_apparmor = true\n\
             \x20 disable_hugetlb_controller = true\n\
             \x20 netns_mounts_under_state_dir = true\n\
             \x20 restrict_oom_score_adj = true\n\
             [{cri}.cni]\n  bin_dir = \"{cb}\"\n  conf_dir = \"{cc}\"\n\
             [{cri}.containerd]\n  default_runtime_name = \"{HANDLER}\"\n",
            d = dir.display(),
            a = address.display(),
            pause = image::PAUSE,
            cb = cni_bin.display(),
            cc = cni_conf.display(),
        );
        for (handler, t) in [(HANDLER, &crabcan), (RUNC_HANDLER, &runc)] {
            text.push_str(&format!(
                "[{cri}.containerd.runtimes.{handler}]\n  runtime_type = \"io.containerd.runc.v2\"\n\
                 [{cri}.containerd.runtimes.{handler}.options]\n  BinaryName = \"{b}\"\n  \
                 Root = \"{r}\"\n  SystemdCgroup = false\n",
                b = t.binary().display(),
                r = t.dir.join("root").display(),
            ));
        }
        fs::write(&config, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let containerd = start_containerd(&scope, &config, &address);
        let channel = connect(&rt, &address);
        let node = Node {
            scope,
            containerd: RefCell::new(Some(containerd)),
            address,
            config,
            rt,
            channel: RefCell::new(channel),
            crabcan,
            runc,
            log_root,
            pods: RefCell::new(Vec::new()),
        };
        let archive = image::archive(&crate::scope::rootfs(), &dir);
        let mut import = node.ctr(&["image", "import"]);
        import.arg(&archive);
        bounded::output(&mut import).ok();
        // The CRI plugin learns of imported images from containerd's events: wait for both.
        for img in [image::BUSYBOX, image::PAUSE] {
            bounded::until(Duration::from_secs(30), &format!("CRI sees {img}"), || {
                let req = ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: img.to_string(),
                        ..Default::default()
                    }),
                    verbose: false,
                };
                let ch = node.channel.borrow().clone();
                let st = node.block("ImageStatus", ImageServiceClient::new(ch).image_status(req));
                st.ok().and_then(|r| r.into_inner().image).map(|_| ())
            });
        }
        node
    }

    /// `ctr --address SOCK -n k8s.io ARGS…`.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.address)
            .args(["--namespace", NS])
            .args(args);
        c
    }

    fn block<F: Future>(&self, what: &str, f: F) -> F::Output {
        self.rt
            .block_on(async { tokio::time::timeout(CALL_LIMIT, f).await })
            .unwrap_or_else(|_| panic!("CRI {what} did not answer within {CALL_LIMIT:?}"))
    }

    /// Makes one RuntimeService call (bounded): `f` gets a client and returns the call.
    pub fn rpc<T, Fut>(
        &self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> Fut,
    ) -> Result<T, Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let client = RuntimeServiceClient::new(self.channel.borrow().clone());
        self.block(what, f(client)).map(tonic::Response::into_inner)
    }

    /// Like [`Node::rpc`], failing the test with containerd's answer on an error.
    #[track_caller]
    pub fn must<T, Fut>(
        &self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> Fut,
    ) -> T
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.rpc(what, f).unwrap_or_else(|s| {
            panic!(
                "CRI {what} failed: {:?}: {}\ncontainerd's log ends:\n{}",
                s.code(),
                s.message(),
                self.log_tail()
            )
        })
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        self.containerd
            .borrow()
            .as_ref()
            .map(Daemon::log_tail)
            .unwrap_or_default()
    }

    /// The pod-level cgroup parent for the pod `name` (kubelet's `/kubepods/.../pod<uid>`).
    pub fn cgroup_name(&self, name: &str) -> String {
        format!("{}-{name}", self.scope.tag)
    }

    /// The sandbox configuration for `spec`, as kubelet would send it.
    pub fn sandbox_config(&self, spec: &PodSpec) -> PodSandboxConfig {
        let logs = self.log_root.join(&spec.name);
        let parent = format!("/{}/{}", self.scope.tag, self.cgroup_name(&spec.name));
        pod::sandbox_config(spec, &logs.to_string_lossy(), &parent)
    }

    /// RunPodSandbox with `handler`; the sandbox id is recorded for the leftovers check.
    pub fn try_run_pod(&self, config: &PodSandboxConfig, handler: &str) -> Result<String, Status> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        // Recorded before the call: a failed call must leave nothing named after the pod either.
        self.scope.track_id(&self.cgroup_name(&name));
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let id = match self.rpc("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(req).await
        }) {
            Ok(r) => r.pod_sandbox_id,
            Err(s) => {
                // containerd names the sandbox it made and failed to start in its error (its
                // bundle path, its network setup); whatever its shim left must go too.
                for id in sandbox_ids_in(s.message()) {
                    self.track_pod(&id, &name);
                }
                return Err(s);
            }
        };
        self.track_pod(&id, &name);
        Ok(id)
    }

    fn track_pod(&self, id: &str, name: &str) {
        self.scope.track_id(id);
        self.scope
            .track_socket(scope::shim_socket(&self.address, NS, id));
        self.pods.borrow_mut().push(PodRecord {
            id: id.to_string(),
            cgroup: self.cgroup_name(name),
        });
    }

    /// RunPodSandbox with `handler`, failing the test on an error.
    #[track_caller]
    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> String {
        self.try_run_pod(config, handler).unwrap_or_else(|s| {
            panic!(
                "CRI RunPodSandbox ({handler}) failed: {:?}: {}\ncontainerd's log ends:\n{}",
                s.code(),
                s.message(),
                self.log_tail()
            )
        })
    }

    /// CreateContainer in pod `pod`; the id is recorded for the leftovers check.
    #[track_caller]
    pub fn create(
        &self,
        pod: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> String {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox.clone()),
        };
        let id = self
            .must("CreateContainer", |mut c| async move {
                c.create_container(req).await
            })
            .container_id;
        self.scope.track_id(&id);
        id
    }

    /// StartContainer.
    pub fn try_start(&self, id: &str) -> Result<(), Status> {
        let req = StartContainerRequest {
            container_id: id.to_string(),
        };
        self.rpc("StartContainer", |mut c| async move {
            c.start_container(req).await
        })
        .map(drop)
    }

    /// StartContainer, failing the test on an error.
    #[track_caller]
    pub fn start_container(&self, id: &str) {
        if let Err(s) = self.try_start(id) {
            panic!(
                "CRI StartContainer {id} failed: {:?}: {}\ncontainerd's log ends:\n{}",
                s.code(),
                s.message(),
                self.log_tail()
            );
        }
    }

    /// CreateContainer + StartContainer; returns the id.
    #[track_caller]
    pub fn run(&self, pod: &str, config: &ContainerConfig, sandbox: &PodSandboxConfig) -> String {
        let id = self.create(pod, config, sandbox);
        self.start_container(&id);
        id
    }

    /// ExecSync: stdout, stderr and exit code.
    #[track_caller]
    pub fn exec(&self, id: &str, cmd: &[&str]) -> (String, String, i32) {
        let req = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 60,
        };
        let r = self.must("ExecSync", |mut c| async move { c.exec_sync(req).await });
        (
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
        )
    }

    /// ExecSync of a shell command that must succeed; returns its stdout, trimmed.
    #[track_caller]
    pub fn sh(&self, id: &str, script: &str) -> String {
        let (out, err, code) = self.exec(id, &["sh", "-c", script]);
        assert_eq!(
            code, 0,
            "`{script}` in {id} exited {code}; stderr: {err}; stdout: {out}"
        );
        out.trim().to_string()
    }

    /// ContainerStatus, verbose; the status and containerd's info (which holds the pid).
    #[track_caller]
    pub fn container_status(&self, id: &str) -> (ContainerStatus, serde_json::Value) {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        let r = self.must("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        });
        let info = r
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        (r.status.expect("ContainerStatus without a status"), info)
    }

    /// The host pid of container `id`'s first process.
    #[track_caller]
    pub fn container_pid(&self, id: &str) -> u32 {
        let (_, info) = self.container_status(id);
        let pid = info["pid"].as_u64().unwrap_or(0) as u32;
        assert!(pid > 0, "ContainerStatus of {id} reports no pid: {info}");
        pid
    }

    /// The host pid of sandbox `id`'s first process (the pause process).
    #[track_caller]
    pub fn pod_pid(&self, id: &str) -> u32 {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let r = self.must("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(req).await
        });
        let info: serde_json::Value = r
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        let pid = info["pid"].as_u64().unwrap_or(0) as u32;
        assert!(pid > 0, "PodSandboxStatus of {id} reports no pid: {info}");
        pid
    }

    /// StopPodSandbox then RemovePodSandbox (which removes its containers), as kubelet does.
    #[track_caller]
    pub fn remove_pod(&self, id: &str) {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.must("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(req).await
        });
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.must("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(req).await
        });
    }

    /// The sandbox ids containerd lists.
    #[track_caller]
    pub fn pod_ids(&self) -> Vec<String> {
        let r = self.must("ListPodSandbox", |mut c| async move {
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
        });
        r.items.into_iter().map(|p| p.id).collect()
    }

    /// The container ids containerd lists.
    #[track_caller]
    pub fn container_ids(&self) -> Vec<String> {
        let r = self.must("ListContainers", |mut c| async move {
            c.list_containers(ListContainersRequest { filter: None })
                .await
        });
        r.containers.into_iter().map(|c| c.id).collect()
    }

    /// The pid of containerd itself.
    pub fn containerd_pid(&self) -> Option<u32> {
        let config = self.config.to_string_lossy().into_owned();
        pids_with(&["containerd", "--config", &config])
            .into_iter()
            .find(|p| {
                fs::read_link(format!("/proc/{p}/exe"))
                    .is_ok_and(|e| e.file_name().is_some_and(|n| n == "containerd"))
            })
    }

    /// The pids of this node's shims (they name the node's socket in their arguments).
    pub fn shim_pids(&self) -> Vec<u32> {
        let address = self.address.to_string_lossy().into_owned();
        pids_with(&["containerd-shim", &address])
    }

    /// The pid of the shim serving pod `id`.
    pub fn shim_pid(&self, pod: &str) -> Option<u32> {
        let address = self.address.to_string_lossy().into_owned();
        let id = format!("-id {pod}");
        pids_with(&["containerd-shim", &address, &id])
            .into_iter()
            .next()
    }

    /// SIGKILLs containerd (a crash), reaping it.
    pub fn kill_containerd(&self) {
        let pid = self.containerd_pid().expect("containerd is running");
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL containerd");
        // The daemon's stop reaps the dead process without having to kill it again.
        if let Some(d) = self.containerd.borrow_mut().take() {
            d.stop();
        }
    }

    /// Stops containerd (SIGTERM, bounded); its shims and pods go on.
    pub fn stop_containerd(&self) {
        if let Some(d) = self.containerd.borrow_mut().take() {
            d.stop();
        }
    }

    /// Starts containerd again on the same config and state, and reconnects.
    pub fn restart_containerd(&self) {
        assert!(
            self.containerd.borrow().is_none(),
            "containerd is still running"
        );
        let d = start_containerd(&self.scope, &self.config, &self.address);
        *self.containerd.borrow_mut() = Some(d);
        *self.channel.borrow_mut() = connect(&self.rt, &self.address);
    }

    /// kubelet's part at the end, then the leftovers check: every pod still listed is stopped
    /// and removed, containerd stops, the shims it started are waited for (and stopped by pid
    /// if they linger, which fails the test), their dead sockets and the pods' cgroups are
    /// removed, and nothing of the test's pods may remain.
    #[track_caller]
    pub fn finish(self) {
        for id in self.pod_ids() {
            self.remove_pod(&id);
        }
        let pods = self.pod_ids();
        let containers = self.container_ids();
        assert!(
            pods.is_empty() && containers.is_empty(),
            "{}: containerd still lists pods {pods:?} or containers {containers:?}",
            self.scope.name
        );
        if let Some(d) = self.containerd.borrow_mut().take() {
            d.stop();
        }
        let mut problems = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.shim_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in self.shim_pids() {
            problems.push(format!("shim {pid} outlived its pods: stopped by pid"));
            stop_pid(pid);
        }
        self.remove_host_leftovers();
        // An error here is a failed test, after the scope's own check has cleaned up.
        let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.scope.conclude();
        }));
        assert!(
            problems.is_empty(),
            "{}: {}",
            self.scope.name,
            problems.join("; ")
        );
        if let Err(e) = left {
            std::panic::resume_unwind(e);
        }
    }

    /// Removes what containerd leaves outside its directories for the test's pods: the shim
    /// sockets under `/run/containerd/s` (dead files once the shims are gone) and the
    /// pod-level cgroups (kubelet's job); only entries named after this test's pods.
    fn remove_host_leftovers(&self) {
        for rec in self.pods.borrow().iter() {
            let sock = scope::shim_socket(&self.address, NS, &rec.id);
            if daemon::is_socket(&sock) {
                let _ = fs::remove_file(&sock);
            }
            for m in scope::cgroup_mounts() {
                let dir = m.join(&self.scope.tag).join(&rec.cgroup);
                for _ in 0..50 {
                    if !dir.exists() || fs::remove_dir(&dir).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for Node {
    /// A test that failed midway: containerd and this node's shims are killed by pid; the
    /// scope's drop then kills the pods' processes and removes the rest.
    fn drop(&mut self) {
        if let Some(pid) = self.containerd_pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for pid in self.shim_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if let Some(d) = self.containerd.get_mut().take() {
            // Already dead: this only reaps it. A panic here would abort the test process.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.stop()));
        }
        self.remove_host_leftovers();
    }
}

fn start_containerd(scope: &Scope, config: &Path, address: &Path) -> Daemon {
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(config);
    let probe = address.to_path_buf();
    Daemon::start(
        "containerd",
        &mut cmd,
        &scope.path("containerd.log"),
        scope,
        || {
            daemon::is_socket(&probe)
                && bounded::output(
                    Command::new("ctr")
                        .arg("--address")
                        .arg(&probe)
                        .arg("version"),
                )
                .code
                    == Some(0)
        },
    )
}

/// Whether `pid` is a live test process of this crate (`deps/pod-…`, `deps/speed-…`).
fn live_test_process(pid: u32) -> bool {
    let argv0 = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let first = b.split(|c| *c == 0).next().unwrap_or_default().to_vec();
            String::from_utf8_lossy(&first).into_owned()
        })
        .unwrap_or_default();
    Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("pod-") || n.starts_with("speed-"))
}

/// Removes what an earlier run of these tests left when it was killed (SIGKILL runs no
/// cleanup): for every `cri-*-<pid>` scope directory whose test process is gone, its processes
/// (containerd, shims, the pods' processes in its cgroups) are killed, its mounts detached,
/// its shim sockets, cgroups and directory removed. Only what such a directory names is
/// touched.
fn sweep_killed_runs() {
    let top = scope::target_dir().join("engine-tests");
    let Ok(entries) = fs::read_dir(&top) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cri-")
            .and_then(|r| r.rsplit('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if live_test_process(pid) {
            continue;
        }
        let dir = e.path().canonicalize().unwrap_or_else(|_| e.path());
        let dir_s = dir.to_string_lossy().into_owned();
        let tag = format!("crabcan-et-{name}");
        let in_tag = |p: u32| {
            fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|cg| {
                cg.lines().any(|l| {
                    l.split(':')
                        .nth(2)
                        .is_some_and(|path| path.split('/').any(|c| c == tag))
                })
            })
        };
        for _ in 0..5 {
            let mut strays = pids_with(&[&dir_s]);
            if let Ok(d) = fs::read_dir("/proc") {
                strays.extend(
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                        .filter(|p| *p != std::process::id() && in_tag(*p)),
                );
            }
            if strays.is_empty() {
                break;
            }
            for p in strays {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        scope::detach_mounts_under(&[&dir_s]);
        let address = dir.join("c.sock");
        let tasks = dir.join("state/io.containerd.runtime.v2.task").join(NS);
        if let Ok(ids) = fs::read_dir(&tasks) {
            for id in ids.flatten() {
                let sock = scope::shim_socket(&address, NS, &id.file_name().to_string_lossy());
                if daemon::is_socket(&sock) {
                    let _ = fs::remove_file(&sock);
                }
            }
        }
        for d in scope::cgroup_trees(&tag) {
            let _ = fs::remove_dir(&d);
        }
        let _ = fs::remove_dir_all(&dir);
        // The scope's short directory, named after the same dead pid.
        let _ = fs::remove_dir_all(format!("/run/cet-{pid}"));
        // Empty, these directories serve no one (containerd makes them again for each shim).
        for d in ["/run/containerd/s", "/run/containerd"] {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The 64-digit hex ids in `text` that are not image digests (`sha256:…`).
fn sandbox_ids_in(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut ids: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if run == 0 {
            i += 1;
            continue;
        }
        let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if run == 64 && word_start && !text[..i].ends_with("sha256:") {
            let id = text[i..i + 64].to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        i += run;
    }
    ids
}

/// SIGTERM, a bounded wait, then SIGKILL.
pub fn stop_pid(pid: u32) {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
}
