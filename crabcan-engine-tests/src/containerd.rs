//! A private containerd (its own config, root, state and sockets under the scope's directory),
//! and `ctr` on it with the runtime under test as the runc shim's binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bounded::{self, Out};
use crate::daemon::{self, Daemon};
use crate::scope::{self, Scope};

/// The image's name once imported from the docker archive.
pub const IMAGE: &str = "localhost/crabcan-test:latest";

/// A containerd serving on a socket under the scope's directory.
pub struct Containerd {
    daemon: Daemon,
    /// Its gRPC socket.
    pub address: PathBuf,
}

impl Containerd {
    /// Writes the config (CRI plugin off: the tests speak to containerd directly) and starts
    /// containerd, waiting until `ctr version` answers.
    pub fn start(scope: &Scope) -> Containerd {
        let dir = scope.path("containerd");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let address = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir, &address))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config);
        let probe_address = address.clone();
        let daemon = Daemon::start(
            "containerd",
            &mut cmd,
            &dir.join("containerd.log"),
            scope,
            || {
                daemon::is_socket(&probe_address)
                    && bounded::output(
                        Command::new("ctr")
                            .arg("--address")
                            .arg(&probe_address)
                            .arg("version"),
                    )
                    .code
                        == Some(0)
            },
        );
        Containerd { daemon, address }
    }

    /// `ctr --address SOCK -n NS ARGS…`.
    pub fn ctr(&self, ns: &str, args: &[&str]) -> Command {
        ctr_command(&self.address, ns, args)
    }

    /// Stops containerd by its pid (bounded).
    pub fn stop(self) {
        self.daemon.stop();
    }
}

/// The `config.toml` of a containerd whose root and state are under `dir` and whose gRPC
/// socket is `address` (its ttrpc socket beside it), with the CRI plugin off: its clients
/// speak to containerd directly.
pub fn config_toml(dir: &Path, address: &Path) -> String {
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{a}\"\n[ttrpc]\n  address = \"{a}.ttrpc\"\n",
        d = dir.display(),
        a = address.display()
    )
}

/// `ctr --address ADDRESS --namespace NS ARGS…`.
pub fn ctr_command(address: &Path, ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address")
        .arg(address)
        .args(["--namespace", ns])
        .args(args);
    c
}

/// `ctr` on a private containerd, in a namespace named after the scope, so its containers'
/// cgroups are `/<namespace>/<id>`.
pub struct Ctr {
    /// The test's scope.
    pub scope: Scope,
    containerd: Containerd,
    runtime: PathBuf,
}

impl Ctr {
    /// A containerd for the test `name`, with the test image imported into its namespace.
    pub fn start(name: &str) -> Ctr {
        let scope = Scope::new(name);
        let runtime = scope::runtime();
        let images = crate::image::images();
        let containerd = Containerd::start(&scope);
        let ctr = Ctr {
            scope,
            containerd,
            runtime,
        };
        // The shim gives the runtime `--root <runc-root>/<namespace>`.
        ctr.scope.track_state_root(ctr.runc_root().join(ctr.ns()));
        let mut import = ctr.ctr(&["image", "import"]);
        import.arg(&images.docker_archive);
        bounded::output(&mut import).ok();
        ctr
    }

    /// The containerd namespace of this test.
    pub fn ns(&self) -> &str {
        &self.scope.tag
    }

    /// A container id unique to this test (ids are checked for leftovers by name, so they
    /// must not be common words).
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.scope.tag)
    }

    fn runc_root(&self) -> PathBuf {
        self.scope.path("runc-root")
    }

    /// `ctr … ARGS…` in the test's namespace.
    pub fn ctr(&self, args: &[&str]) -> Command {
        self.containerd.ctr(self.ns(), args)
    }

    /// Runs `ctr ARGS…`, bounded.
    pub fn run_cmd(&self, args: &[&str]) -> Out {
        bounded::output(&mut self.ctr(args))
    }

    /// `ctr run --runc-binary RUNTIME OPTIONS… IMAGE ID COMMAND…`, bounded; the id and its shim
    /// socket are recorded for the leftover check. The runtime's state and the client's fifos
    /// go under the scope's directory, not /run/containerd.
    pub fn run(&self, options: &[&str], id: &str, command: &[&str]) -> Out {
        self.scope.track_id(id);
        self.scope
            .track_socket(scope::shim_socket(&self.containerd.address, self.ns(), id));
        let mut c = self.ctr(&["run"]);
        c.arg("--runc-binary")
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(self.runc_root())
            .arg("--fifo-dir")
            .arg(self.scope.path("fifo"))
            .args(options)
            .arg(IMAGE)
            .arg(id)
            .args(command);
        bounded::output(&mut c)
    }

    /// The host pid of task `id`'s first process, from `ctr task ls`.
    pub fn pid(&self, id: &str) -> u32 {
        let out = self.run_cmd(&["task", "ls"]);
        let pid = out
            .ok()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == id).then(|| f.next()?.parse::<u32>().ok())?
            })
            .next();
        pid.filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("ctr task ls has no pid for {id}:\n{}", out.stdout))
    }

    /// Removes every container the test made (bounded), stops containerd, checks that nothing
    /// is left and cleans up.
    #[track_caller]
    pub fn finish(self) {
        for id in self.scope.ids() {
            // Errors are fine here (a --rm container is gone already); the lists below say
            // whether anything survived.
            let _ = self.run_cmd(&["task", "rm", "--force", &id]);
            let _ = self.run_cmd(&["container", "rm", &id]);
        }
        let tasks = self.run_cmd(&["task", "ls", "--quiet"]);
        let containers = self.run_cmd(&["container", "ls", "--quiet"]);
        assert_eq!(
            (tasks.ok().trim(), containers.ok().trim()),
            ("", ""),
            "{}: containerd still lists tasks or containers",
            self.scope.name
        );
        self.containerd.stop();
        self.scope.conclude();
    }
}
