//! A private dockerd (its data root, exec root, pid file and socket under the scope's
//! directory) on a private containerd, with the runtime under test added as `crabcan`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::bounded::{self, Out};
use crate::containerd::Containerd;
use crate::daemon::{self, Daemon};
use crate::scope::{self, Scope};

/// The image's name once loaded from the docker archive.
pub const IMAGE: &str = "localhost/crabcan-test:latest";

/// The name the runtime is added under (`--add-runtime crabcan=PATH`).
pub const RUNTIME_NAME: &str = "crabcan";

/// The client from Debian's docker.io, which matches the daemon (a newer client elsewhere on
/// PATH may refuse an older API).
const CLIENT: &str = "/usr/bin/docker";

/// dockerd's containerd namespace.
const NAMESPACE: &str = "moby";

/// A dockerd and the containerd under it.
pub struct Docker {
    /// The test's scope.
    pub scope: Scope,
    containerd: Containerd,
    dockerd: Daemon,
    socket: PathBuf,
    names: std::cell::Cell<u32>,
}

impl Docker {
    /// Starts containerd and dockerd for the test `name` (no bridge, no iptables, cgroup
    /// parent named after the scope) and loads the test image.
    pub fn start(name: &str) -> Docker {
        let scope = Scope::new(name);
        let runtime = scope::runtime();
        let images = crate::image::images();
        let containerd = Containerd::start(&scope);
        let dir = scope.path("docker");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let socket = dir.join("docker.sock");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--containerd")
            .arg(&containerd.address)
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver", "overlay2"])
            .arg("--cgroup-parent")
            .arg(format!("/{}", scope.tag))
            .arg("--add-runtime")
            .arg(format!("{RUNTIME_NAME}={}", runtime.display()))
            .env_remove("DOCKER_HOST");
        let probe = socket.clone();
        let dockerd = Daemon::start(
            "dockerd",
            &mut cmd,
            &dir.join("dockerd.log"),
            &scope,
            || {
                daemon::is_socket(&probe)
                    && bounded::output(client(&probe).arg("version")).code == Some(0)
            },
        );
        let d = Docker {
            scope,
            containerd,
            dockerd,
            socket,
            names: std::cell::Cell::new(0),
        };
        let mut load = d.docker(&["load", "--quiet", "--input"]);
        load.arg(&images.docker_archive);
        bounded::output(&mut load).ok();
        d
    }

    /// `docker -H unix://SOCK ARGS…`.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = client(&self.socket);
        c.args(args);
        c
    }

    /// Runs `docker ARGS…`, bounded.
    pub fn run_cmd(&self, args: &[&str]) -> Out {
        bounded::output(&mut self.docker(args))
    }

    /// A container name unique to this test.
    pub fn name(&self) -> String {
        let n = self.names.get() + 1;
        self.names.set(n);
        format!("{}-{n}", self.scope.tag)
    }

    /// `docker run --runtime crabcan OPTIONS… IMAGE COMMAND…`, bounded; the container's id and
    /// its shim socket are recorded for the leftover check.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Out {
        let n = self.names.get() + 1;
        let cidfile = self.scope.path(&format!("cid-{n}"));
        let mut c = self.docker(&["run", "--runtime", RUNTIME_NAME, "--cidfile"]);
        c.arg(&cidfile).args(options).arg(IMAGE).args(command);
        let out = bounded::output(&mut c);
        self.names.set(n);
        if let Ok(id) = fs::read_to_string(&cidfile) {
            self.scope.track_id(&id);
            self.scope.track_socket(scope::shim_socket(
                &self.containerd.address,
                NAMESPACE,
                id.trim(),
            ));
        }
        out
    }

    /// The host pid of a running container's first process.
    pub fn pid(&self, name: &str) -> u32 {
        let out = self.run_cmd(&["inspect", "--format", "{{.State.Pid}}", name]);
        let pid: u32 = out.ok().trim().parse().unwrap_or(0);
        assert!(pid > 0, "docker inspect {name}: no pid ({:?})", out.stdout);
        pid
    }

    /// Removes every container (bounded), stops dockerd then containerd, checks that nothing
    /// is left and cleans up.
    #[track_caller]
    pub fn finish(self) {
        let all = self.run_cmd(&["ps", "--all", "--quiet", "--no-trunc"]);
        for id in all.ok().split_whitespace() {
            self.run_cmd(&["rm", "--force", id]).ok();
        }
        let left = self.run_cmd(&["ps", "--all", "--quiet"]);
        assert_eq!(
            left.ok().trim(),
            "",
            "{}: docker still lists containers",
            self.scope.name
        );
        self.dockerd.stop();
        self.containerd.stop();
        self.scope.conclude();
    }
}

fn client(socket: &std::path::Path) -> Command {
    let mut c = Command::new(CLIENT);
    c.arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT");
    // The client keeps its own configuration (~/.docker) in the scope too.
    if let Some(dir) = socket.parent() {
        c.env("DOCKER_CONFIG", dir.join("client"));
    }
    c
}
