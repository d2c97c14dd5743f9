//! podman (through conmon) with a private store, driving the runtime under test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bounded::{self, Out};
use crate::scope::{self, Scope};

/// The image every podman test runs: the test rootfs, imported.
pub const IMAGE: &str = "localhost/crabcan-test:latest";

/// The rlimits podman must be given here: its defaults exceed this kind of host's hard limits,
/// and root without CAP_SYS_RESOURCE cannot raise them (runc fails the same way without these).
pub const ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The environment and configuration of a podman confined to `dir`.
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store under `dir` with runroot `run` (see [`write_store`]).
    pub(crate) fn new(dir: &Path, run: &Path) -> Store {
        write_store(dir, run).unwrap_or_else(|e| panic!("{e}"));
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// `podman` with this store's configuration and temporary directory.
    pub(crate) fn cmd(&self) -> Command {
        command(&self.dir)
    }
}

/// `containers.conf` and `storage.conf` for a store under `dir`: file locks (not /dev/shm),
/// events and network configuration in the directory, the vfs driver (no mounts to leave
/// behind) and the cgroupfs manager (there is no systemd). `run` is the runroot, which must be
/// short (conmon's exit command refuses more than 50 characters).
pub fn config_files(dir: &Path, run: &Path) -> [(&'static str, String); 2] {
    let d = dir.display();
    let r = run.display();
    let conf = format!(
        "[engine]\nlock_type = \"file\"\nevents_logger = \"file\"\n\
         events_logfile_path = \"{d}/events.log\"\ncgroup_manager = \"cgroupfs\"\n\
         tmp_dir = \"{d}/tmp\"\nvolume_path = \"{d}/root/volumes\"\n\
         static_dir = \"{d}/root/libpod\"\nnum_locks = 64\n\
         [network]\nnetwork_config_dir = \"{d}/net\"\n\
         [containers]\nlog_driver = \"k8s-file\"\n"
    );
    let storage =
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{r}\"\n");
    [("containers.conf", conf), ("storage.conf", storage)]
}

/// Makes a podman store under `dir` with runroot `run`: its directories and the
/// [`config_files`]. The error names the path that failed.
pub fn write_store(dir: &Path, run: &Path) -> Result<(), String> {
    for sub in [
        dir.join("root"),
        dir.join("tmp"),
        dir.join("net"),
        run.to_path_buf(),
    ] {
        fs::create_dir_all(&sub).map_err(|e| format!("cannot create {}: {e}", sub.display()))?;
    }
    for (name, text) in config_files(dir, run) {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `podman` confined to the store [`write_store`] made under `dir`: its configuration and
/// temporary directory, and no remote service or user session to reach for.
pub fn command(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("TMPDIR", dir.join("tmp"))
        .env_remove("CONTAINER_HOST")
        .env_remove("XDG_RUNTIME_DIR");
    c
}

/// A private podman whose `--runtime` is the runtime under test.
pub struct Podman {
    /// The test's scope: private directory, cgroup parent, leftovers.
    pub scope: Scope,
    store: Store,
    runtime: PathBuf,
    names: std::cell::Cell<u32>,
}

impl Podman {
    /// A podman for the test `name`, with [`IMAGE`] imported.
    pub fn start(name: &str) -> Podman {
        let scope = Scope::new(name);
        let runtime = scope::runtime();
        let store = Store::new(&scope.path("podman"), &scope.run.join("podman"));
        let images = crate::image::images();
        let p = Podman {
            scope,
            store,
            runtime,
            names: std::cell::Cell::new(0),
        };
        let mut c = p.podman(&["import", "-q"]);
        c.arg(&images.rootfs_tar).arg(IMAGE);
        bounded::output(&mut c).ok();
        p
    }

    /// `podman --runtime RUNTIME ARGS…` on the private store.
    pub fn podman(&self, args: &[&str]) -> Command {
        let mut c = self.store.cmd();
        c.arg("--runtime").arg(&self.runtime).args(args);
        c
    }

    /// Runs `podman ARGS…`, bounded.
    pub fn run_cmd(&self, args: &[&str]) -> Out {
        bounded::output(&mut self.podman(args))
    }

    /// A container name unique to this test.
    pub fn name(&self) -> String {
        let n = self.names.get() + 1;
        self.names.set(n);
        format!("{}-{n}", self.scope.tag)
    }

    /// The `podman run` options every test container gets: the scope's cgroup parent, no
    /// network, the rlimits this host allows, and a file the container id is written to.
    fn run_options(&self, cidfile: &Path) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--cgroup-parent".into(),
            format!("/{}", self.scope.tag),
            "--network".into(),
            "none".into(),
            "--cidfile".into(),
            cidfile.to_string_lossy().into_owned(),
        ];
        v.extend(ULIMITS.iter().map(|s| s.to_string()));
        v
    }

    /// `podman run OPTIONS… IMAGE COMMAND…` with the test's standard options; the container's
    /// id is recorded for the leftover check.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Out {
        let n = self.names.get() + 1;
        let cidfile = self.scope.path(&format!("cid-{n}"));
        let mut c = self.podman(&["run"]);
        c.args(self.run_options(&cidfile))
            .args(options)
            .arg(IMAGE)
            .args(command);
        let out = bounded::output(&mut c);
        self.names.set(n);
        if let Ok(id) = fs::read_to_string(&cidfile) {
            self.scope.track_id(&id);
        }
        out
    }

    /// The host pid of a running container's first process.
    pub fn pid(&self, name: &str) -> u32 {
        let out = self.run_cmd(&["inspect", "--format", "{{.State.Pid}}", name]);
        let pid: u32 = out.ok().trim().parse().unwrap_or(0);
        assert!(pid > 0, "podman inspect {name}: no pid ({:?})", out.stdout);
        pid
    }

    /// Removes every container (bounded), then checks that nothing is left and cleans up.
    #[track_caller]
    pub fn finish(self) {
        self.run_cmd(&["rm", "--all", "--force", "--time", "0"])
            .ok();
        let left = self.run_cmd(&["ps", "--all", "--quiet"]);
        assert_eq!(
            left.ok().trim(),
            "",
            "{}: podman still lists containers",
            self.scope.name
        );
        self.scope.conclude();
    }
}
