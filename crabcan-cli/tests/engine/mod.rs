//! The test as an engine drives the OCI commands: a child subreaper (as conmon and
//! containerd's shim are), so a container whose `create` has exited becomes its child, with a
//! private state root and bundles under target/, and every container it made deleted at the
//! end whatever the test's outcome.
#![allow(dead_code)]

use crate::bounded;
use crate::common::*;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const LIMIT: Duration = Duration::from_secs(60);

/// Orphaned containers come to this process, which reaps them by pid.
pub fn subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(r, 0, "cannot become a child subreaper");
    });
}

/// One test's state root and bundles.
pub struct Engine {
    pub dir: Scratch,
    /// Containers created, deleted with --force at the end if they are still there.
    ids: RefCell<Vec<String>>,
}

impl Engine {
    /// A scratch directory named after `name`; needs root and the test root filesystem.
    pub fn new(name: &str) -> Engine {
        require_root();
        subreaper();
        let _ = rootfs();
        Engine {
            dir: Scratch::new(name),
            ids: RefCell::default(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = crabcan();
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// Runs crabcan. A command that leaves a container behind (`create`, `run -d`, `exec
    /// -d`) hands it its stdio: then stdout goes nowhere and stderr to a file read at exit.
    pub fn cc(&self, args: &[&str]) -> Output {
        if matches!(args.first(), Some(&"create" | &"run"))
            && let Some(id) = args.last()
        {
            self.ids.borrow_mut().push(id.to_string());
        }
        let mut c = self.cmd(args);
        if args.contains(&"create") || args.contains(&"-d") {
            detached_output(&mut c)
        } else {
            bounded::output_within(&mut c, LIMIT)
        }
    }

    /// A bundle `name` from `crabcan spec` over the test root filesystem, running `args`
    /// without a terminal, adjusted by `tweak`.
    pub fn bundle(&self, name: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.dir.path().join(name);
        std::fs::create_dir_all(&b).unwrap();
        assert_ok(&bounded::output_within(
            crabcan().arg("spec").arg("-b").arg(&b),
            LIMIT,
        ));
        let mut c: Value =
            serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
        c["root"]["path"] = json!(rootfs());
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(args);
        tweak(&mut c);
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        b
    }

    /// Creates `id` from `bundle`; returns the pid its pid file names.
    pub fn create(&self, id: &str, bundle: &Path) -> i32 {
        let pid_file = bundle.join("pid");
        let o = self.cc(&[
            "create",
            "--bundle",
            &bundle.to_string_lossy(),
            "--pid-file",
            &pid_file.to_string_lossy(),
            id,
        ]);
        assert_ok(&o);
        std::fs::read_to_string(pid_file).unwrap().parse().unwrap()
    }

    /// Creates and starts `id`; returns its pid.
    pub fn started(&self, id: &str, bundle: &Path) -> i32 {
        let pid = self.create(id, bundle);
        assert_ok(&self.cc(&["start", id]));
        pid
    }

    /// The status `state` reports, or `unknown (why)` when it fails.
    pub fn status(&self, id: &str) -> String {
        let o = self.cc(&["state", id]);
        if !o.status.success() {
            return format!("unknown ({})", stderr(&o).trim());
        }
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["status"].as_str().unwrap_or("?").to_string()
    }

    /// The runtime's own record of `id`.
    pub fn state_file(&self, id: &str) -> Value {
        self.record(id, "state.json")
    }

    /// The record `file` (state.json, or creating.json while it is made) of `id`.
    pub fn record(&self, id: &str, file: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.root().join(id).join(file)).unwrap())
            .unwrap()
    }

    /// The cgroup directories `id` was placed in.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        Self::cgroups_of(&self.state_file(id))
    }

    /// The cgroup directories a record names.
    pub fn cgroups_of(record: &Value) -> Vec<PathBuf> {
        record["cgroup_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| PathBuf::from(p.as_str().unwrap()))
            .collect()
    }

    /// Remembers `id`, made by a command run outside [`Engine::cc`], for the cleanup.
    pub fn made(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// `delete --force` of every container this test made that is still there.
    pub fn delete_all(&self) {
        for id in self.ids.borrow().iter().rev() {
            if self.root().join(id).exists() {
                let _ = bounded::output_within(&mut self.cmd(&["delete", "--force", id]), LIMIT);
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.delete_all();
    }
}

/// Declares a test's environment: a struct holding the [`Engine`] in a field `e`, then the
/// test's own fields, which derefs to the engine so that the engine's helpers are its own.
// Not every test binary that has this module declares one (as for `dead_code` above).
#[allow(unused_macros)]
macro_rules! engine_env {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        struct $name {
            e: $crate::engine::Engine,
            $($(#[$fmeta])* $field: $ty,)*
        }

        impl std::ops::Deref for $name {
            type Target = $crate::engine::Engine;
            fn deref(&self) -> &$crate::engine::Engine {
                &self.e
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use engine_env;

/// One line on stderr holding `needle`, and no panic.
pub fn assert_one_line(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
    assert!(e.contains(needle), "{needle:?} not in {e:?}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Like `output_within` for a command whose container keeps its stdio: stdout to
/// /dev/null, stderr through a file.
pub fn detached_output(c: &mut Command) -> Output {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("detached-stderr-{}-{n}", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    let status = bounded::wait_within(&mut child, LIMIT, "crabcan");
    let stderr = std::fs::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// Reaps `pid` (our child, or adopted once its create exited) and returns its wait status
/// as an exit code (128+N when killed by N).
pub fn reap(pid: i32) -> i32 {
    let deadline = Instant::now() + LIMIT;
    loop {
        match nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => return c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => {}
            Err(e) => panic!("cannot reap {pid}: {e}"),
        }
        assert!(Instant::now() < deadline, "{pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Retries `f` until it gives a value or `LIMIT` passes (then fails, naming `what`).
pub fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
