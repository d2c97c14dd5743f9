//! A one-shot container of `crabcan run --name` in the state directory, so that the OCI
//! commands (exec, state, list, ps, kill, delete) reach it while it runs.
//!
//! The foreground crabcan owns the record, through the steps of its one-shot container
//! ([`crate::oneshot`]): create takes the name before it changes the host
//! ([`Registration::reserve`]), start records the container once its command runs
//! ([`Registration::record`]: the state, the owner, and a config copy from which an exec
//! takes the confinement of the run's own command), and delete removes the record, on
//! every path ([`Registration::finish`], or drop). After a SIGKILL its guardian removes it
//! ([`remove_if_owned`]). `delete` of the OCI commands leaves the cleanup to a live owner.

use crate::exec::CONFIG_COPY;
use crate::state::{Locked, State, now_rfc3339, start_time};
use crabcan_errors::{Errcode, Result};
use crabcan_oci::{IdRange, NsKind, Process};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The file naming the foreground crabcan that owns a container's record.
pub const OWNER_FILE: &str = "foreground.json";

/// The process that owns a record: a `crabcan run` in the foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its pid on the host.
    pub pid: i32,
    /// Its start time, so that a reused pid is not taken for it.
    pub pid_start: u64,
}

impl Owner {
    /// The calling process.
    pub fn me() -> Result<Owner> {
        let pid = std::process::id() as i32;
        let pid_start = start_time(pid)
            .ok_or_else(|| Errcode::setup("cannot read this process's start time"))?;
        Ok(Owner { pid, pid_start })
    }

    /// Whether the owner still runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.pid_start)
    }
}

/// The owner recorded in a container's directory, if it is a `crabcan run` container.
pub fn read_owner(dir: &Path) -> Option<Owner> {
    let text = std::fs::read(dir.join(OWNER_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// What `crabcan run` gave its container and command: the defaults of an exec into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The command's process: args, env, cwd, ids, umask, the five capability sets,
    /// no_new_privs and the rlimits it was given.
    pub process: Process,
    /// The seccomp profile applied (an OCI `linux.seccomp` object); `None`: no filter.
    pub seccomp: Option<Value>,
    /// The container's hostname.
    pub hostname: String,
    /// The root directory on the host; `None` for a root of the container's own (a
    /// tmpfs only its mount namespace has).
    pub rootfs: Option<PathBuf>,
    /// The root is mounted read-only.
    pub readonly_root: bool,
    /// The namespaces created for it.
    pub namespaces: Vec<NsKind>,
    /// Its uid map.
    pub uid_mappings: Vec<IdRange>,
    /// Its gid map.
    pub gid_mappings: Vec<IdRange>,
}

impl RunSpec {
    /// What a one-shot container gives its command (and an exec into it by default): the
    /// process as `spec` has it, with the caller's umask and the hard limits the rlimits
    /// end up with, the container's namespaces and id maps, the seccomp profile applied
    /// (config.json's `linux.seccomp`; `None`: no filter) and whether the root is
    /// read-only.
    pub fn of_child(
        spec: &crabcan_child::ChildSpec,
        seccomp: Option<Value>,
        readonly_root: bool,
    ) -> Result<RunSpec> {
        let text = |v: &[std::ffi::CString]| -> Vec<String> {
            v.iter().map(|c| c.to_string_lossy().into_owned()).collect()
        };
        // umask can only be read by setting it: put it straight back (single-threaded).
        let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        nix::sys::stat::umask(umask);
        let mut rlimits = Vec::with_capacity(spec.rlimits.len());
        for r in &spec.rlimits {
            let resource = r.resource as u32;
            let name = rlimit_name(resource)
                .ok_or_else(|| Errcode::setup(format!("rlimit {} has no name", r.name)))?;
            let (_, cur_hard) = nix::sys::resource::getrlimit(r.resource).map_err(|e| {
                Errcode::sys(format!("read the current {} limit (getrlimit)", r.name), e)
            })?;
            rlimits.push(crabcan_oci::Rlimit {
                name,
                resource,
                soft: r.soft,
                hard: crabcan_security::target_hard(r, cur_hard),
            });
        }
        let mut namespaces = vec![
            NsKind::User,
            NsKind::Mount,
            NsKind::Uts,
            NsKind::Ipc,
            NsKind::Pid,
            NsKind::Cgroup,
        ];
        if spec.net == crabcan_child::Net::None {
            namespaces.push(NsKind::Net);
        }
        let ranges = |v: &[crabcan_child::Range]| -> Vec<IdRange> {
            v.iter()
                .map(|r| IdRange {
                    inside: r.inside,
                    outside: r.outside,
                    count: r.count,
                })
                .collect()
        };
        Ok(RunSpec {
            process: Process {
                args: text(&spec.argv),
                env: text(&spec.env),
                cwd: spec.workdir.clone(),
                uid: spec.uid,
                gid: spec.uid,
                additional_gids: Vec::new(),
                umask: Some(umask.bits() as u32),
                caps: spec.security.capabilities(),
                no_new_privs: spec.security.no_new_privs(),
                rlimits,
                oom_score_adj: None,
                terminal: false,
                console_size: None,
            },
            seccomp,
            hostname: spec.hostname.clone(),
            rootfs: match &spec.mounts.root {
                crabcan_mounts::Root::Dir(d) => Some(d.clone()),
                _ => None,
            },
            readonly_root,
            namespaces,
            uid_mappings: ranges(&spec.idmap.uids),
            gid_mappings: ranges(&spec.idmap.gids),
        })
    }
}

/// The kernel's name of an rlimit by its number (the generic Linux numbering, x86's).
pub fn rlimit_name(resource: u32) -> Option<&'static str> {
    crabcan_security::KERNEL_RLIMIT_NAMES
        .get(resource as usize)
        .copied()
}

fn cap_names(set: crabcan_security::CapSet) -> Vec<String> {
    set.known().map(|c| c.name()).collect()
}

fn mappings(v: &[IdRange]) -> Value {
    v.iter()
        .map(|r| json!({"containerID": r.inside, "hostID": r.outside, "size": r.count}))
        .collect()
}

/// The config.json an exec reads for a run container: `spec`, with the container's init
/// `pid` (its root for a root of its own) and its cgroup path.
pub fn config_json(spec: &RunSpec, pid: i32, cgroup: Option<&str>) -> Value {
    let p = &spec.process;
    let caps = &p.caps;
    let mut user = json!({"uid": p.uid, "gid": p.gid});
    if let Some(m) = p.umask {
        user["umask"] = json!(m);
    }
    if !p.additional_gids.is_empty() {
        user["additionalGids"] = json!(p.additional_gids);
    }
    let rlimits: Vec<Value> = p
        .rlimits
        .iter()
        .map(|r| json!({"type": r.name, "soft": r.soft, "hard": r.hard}))
        .collect();
    let root = spec
        .rootfs
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/root")));
    let mut linux = json!({
        "namespaces": spec.namespaces.iter().map(|n| json!({"type": n.oci_name()})).collect::<Vec<_>>(),
    });
    if spec.namespaces.contains(&NsKind::User) {
        linux["uidMappings"] = mappings(&spec.uid_mappings);
        linux["gidMappings"] = mappings(&spec.gid_mappings);
    }
    if let Some(s) = &spec.seccomp {
        linux["seccomp"] = s.clone();
    }
    if let Some(c) = cgroup {
        linux["cgroupsPath"] = json!(c);
    }
    json!({
        "ociVersion": crabcan_oci::OCI_VERSION,
        "process": {
            "terminal": false,
            "user": user,
            "args": p.args,
            "env": p.env,
            "cwd": p.cwd,
            "capabilities": {
                "bounding": cap_names(caps.bounding),
                "effective": cap_names(caps.effective),
                "permitted": cap_names(caps.permitted),
                "inheritable": cap_names(caps.inheritable),
                "ambient": cap_names(caps.ambient),
            },
            "rlimits": rlimits,
            "noNewPrivileges": p.no_new_privs,
        },
        "root": {"path": root, "readonly": spec.readonly_root},
        "hostname": spec.hostname,
        "linux": linux,
    })
}

/// Checks that an exec would take `spec` as the container's config (a seccomp profile
/// the run compiled must also parse as config.json's `linux.seccomp`).
pub fn check_run_spec(spec: &RunSpec) -> Result<()> {
    let text = config_json(spec, 1, None).to_string();
    let bundle = crabcan_oci::parse(PathBuf::from("/"), &text)?;
    crabcan_oci::translate(&bundle, crabcan_oci::Host::default(), &mut |_| {})?;
    Ok(())
}

/// A run container's record, from its reservation to its removal.
///
/// The directory's lock is taken only for a moment at each step, never across a fork: the
/// container's init and the guardian inherit crabcan's descriptors, and neither may keep
/// one of a host directory. Between the reservation and the record, the owner file alone
/// says the directory is in use (`delete` leaves it to a live owner).
pub struct Registration {
    root: PathBuf,
    id: String,
    dir: PathBuf,
    owner: Owner,
    created: String,
    finished: bool,
}

impl Registration {
    /// Takes `id` under `root` for the calling process, atomically: while it is taken,
    /// another run or create with the same id fails ("container with id ID already
    /// exists").
    pub fn reserve(root: &Path, id: &str) -> Result<Registration> {
        let owner = Owner::me()?;
        let text = serde_json::to_vec(&json!(owner))
            .map_err(|e| Errcode::setup(format!("cannot encode {OWNER_FILE}: {e}")))?;
        // The owner goes in before the record is visible: a run killed at any point leaves
        // no record without one (that would block the name until a forced delete).
        let lock = Locked::create_with(root, id, &[(OWNER_FILE, &text)])?;
        let r = Registration {
            root: root.to_path_buf(),
            id: id.to_string(),
            dir: lock.dir().to_path_buf(),
            owner,
            created: now_rfc3339(),
            finished: false,
        };
        drop(lock);
        Ok(r)
    }

    /// The container's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process that owns the record.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// The directory, locked, if it is still this registration's.
    fn lock(&self) -> Option<Locked> {
        let l = Locked::open_any(&self.root, &self.id).ok()?;
        (read_owner(l.dir()) == Some(self.owner)).then_some(l)
    }

    /// Records the container whose init is `pid` (set up completely: its command runs)
    /// as running, with its config copy.
    pub fn record(
        &mut self,
        pid: i32,
        spec: &RunSpec,
        cgroup: Option<&crabcan_cgroups::ContainerCgroup>,
    ) -> Result<()> {
        let l = self.lock().ok_or_else(|| {
            Errcode::setup(format!(
                "container {} was deleted while it was set up",
                self.id
            ))
        })?;
        let cgroup_path = cgroup.map(|c| c.cgroup_path().to_string());
        let config = config_json(spec, pid, cgroup_path.as_deref());
        write(&l, CONFIG_COPY, &config)?;
        let rootfs = config
            .pointer("/root/path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_default();
        let state = State {
            id: self.id.clone(),
            pid,
            // A command that ended at once leaves a dead init: recorded as stopped.
            pid_start: start_time(pid).unwrap_or(0),
            // The directory holds the config.json of the container, as a bundle does.
            bundle: self.dir.clone(),
            rootfs,
            created: self.created.clone(),
            owner_uid: nix::unistd::geteuid().as_raw(),
            cgroup_path,
            cgroup_paths: cgroup.map(|c| c.paths()).unwrap_or_default(),
            created_mount_points: Vec::new(),
            rootfs_id: None,
            annotations: Default::default(),
            poststart: Vec::new(),
            poststop: Vec::new(),
        };
        l.write(&state)
    }

    /// Removes the record: the container has ended.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.remove()
    }

    fn remove(&mut self) -> Result<()> {
        // `delete --force` may have removed it, and another run taken the id since.
        match self.lock() {
            Some(l) => l.remove(),
            None => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.remove();
        }
    }
}

/// Writes `v` as the file `name` of the locked directory.
fn write(l: &Locked, name: &str, v: &Value) -> Result<()> {
    let text =
        serde_json::to_vec(v).map_err(|e| Errcode::setup(format!("cannot encode {name}: {e}")))?;
    l.write_file(name, &text).map_err(|e| {
        Errcode::setup(format!(
            "cannot write {}: {e}",
            l.dir().join(name).display()
        ))
    })
}

/// Removes the record in `dir` if `owner` (a crabcan that died) still owns it: for the
/// guardian of a SIGKILLed run. Takes no lock: the dead owner's may still be held by the
/// caller's inherited copy of its descriptor.
///
/// The record is first moved aside (atomically: no one else can take it meanwhile), then
/// its owner read there: a record that was replaced between a check and a removal would
/// otherwise go in the owner's place. One that is not `owner`'s is moved back.
pub fn remove_if_owned(dir: &Path, owner: Owner) {
    let Some(name) = dir.file_name() else {
        return;
    };
    let aside = dir.with_file_name(format!(
        "#gone#{}#{}",
        std::process::id(),
        name.to_string_lossy()
    ));
    if std::fs::rename(dir, &aside).is_err() {
        return;
    }
    if read_owner(&aside) == Some(owner) {
        let _ = std::fs::remove_dir_all(&aside);
        return;
    }
    let back = crate::state::rename_noreplace(&aside, dir);
    if let Err(e) = back {
        // Only if the id was taken again within these few calls: the record moved aside
        // stays under its removal name, which a later sweep takes once this process is gone.
        log::warn!(
            "cannot put back the record {} (not the dead run's): {e}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crabcan_security::{CapSet, Capabilities, Capability};

    fn spec() -> RunSpec {
        let kept = CapSet::of(&[Capability::Chown, Capability::Kill]);
        RunSpec {
            process: Process {
                args: vec!["/bin/sh".into(), "-c".into(), "sleep 1".into()],
                env: vec!["PATH=/bin".into(), "HOSTNAME=box".into()],
                cwd: "/srv".into(),
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                umask: Some(0o022),
                caps: Capabilities::for_uid(kept, 0),
                no_new_privs: true,
                rlimits: vec![crabcan_oci::Rlimit {
                    name: "RLIMIT_NOFILE",
                    resource: 7,
                    soft: 100,
                    hard: 200,
                }],
                oom_score_adj: None,
                terminal: false,
                console_size: None,
            },
            seccomp: Some(
                serde_json::from_str(crabcan_security::profile::CRABCAN_DEFAULT_JSON).unwrap(),
            ),
            hostname: "box".into(),
            rootfs: None,
            readonly_root: true,
            namespaces: vec![
                NsKind::User,
                NsKind::Mount,
                NsKind::Uts,
                NsKind::Pid,
                NsKind::Ipc,
                NsKind::Net,
                NsKind::Cgroup,
            ],
            uid_mappings: vec![IdRange {
                inside: 0,
                outside: 3_221_225_472,
                count: 65536,
            }],
            gid_mappings: vec![IdRange {
                inside: 0,
                outside: 3_221_225_472,
                count: 65536,
            }],
        }
    }

    /// The config copy, read back as exec reads it, gives the run's process exactly.
    #[test]
    fn the_config_copy_translates_back_to_the_runs_process() {
        let s = spec();
        check_run_spec(&s).unwrap();
        let text = config_json(&s, 42, Some("crabcan/crabcan-box-1")).to_string();
        let b = crabcan_oci::parse("/".into(), &text).unwrap();
        let plan = crabcan_oci::translate(&b, crabcan_oci::Host::default(), &mut |_| {}).unwrap();
        assert_eq!(plan.process, s.process);
        assert_eq!(plan.root, Path::new("/proc/42/root"));
        assert!(plan.root_readonly);
        assert_eq!(plan.hostname.as_deref(), Some("box"));
        assert_eq!(
            plan.seccomp,
            crabcan_security::Seccomp::Profile(crabcan_security::Profile::crabcan_default())
        );
        let kinds: Vec<NsKind> = plan.namespaces.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, s.namespaces);
        assert_eq!(plan.uid_mappings, s.uid_mappings);
        assert_eq!(plan.gid_mappings, s.gid_mappings);
        assert_eq!(
            plan.cgroups_path.map(|c| c.to_string()).as_deref(),
            Some("crabcan/crabcan-box-1")
        );
    }

    #[test]
    fn no_filter_and_a_root_directory() {
        let mut s = spec();
        s.seccomp = None;
        s.rootfs = Some("/srv/rootfs".into());
        s.namespaces.retain(|n| *n != NsKind::Net);
        let text = config_json(&s, 42, None).to_string();
        let b = crabcan_oci::parse("/".into(), &text).unwrap();
        let plan = crabcan_oci::translate(&b, crabcan_oci::Host::default(), &mut |_| {}).unwrap();
        assert_eq!(plan.seccomp, crabcan_security::Seccomp::Unconfined);
        assert_eq!(plan.root, Path::new("/srv/rootfs"));
        assert!(plan.cgroups_path.is_none());
        assert!(!plan.namespaces.iter().any(|n| n.kind == NsKind::Net));
    }

    #[test]
    fn a_profile_config_json_refuses_is_refused_before_the_run() {
        let mut s = spec();
        s.seccomp = Some(json!({"defaultAction": "SCMP_ACT_NOPE"}));
        assert!(check_run_spec(&s).is_err());
    }

    #[test]
    fn rlimit_names_follow_the_kernels_numbers() {
        assert_eq!(rlimit_name(7), Some("RLIMIT_NOFILE"));
        assert_eq!(rlimit_name(6), Some("RLIMIT_NPROC"));
        assert_eq!(rlimit_name(15), Some("RLIMIT_RTTIME"));
        assert_eq!(rlimit_name(16), None);
    }

    fn scratch(name: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/unit-foreground")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_name_is_taken_once_and_given_back_on_every_path() {
        let root = scratch("names");
        let r = Registration::reserve(&root, "web").unwrap();
        let e = Registration::reserve(&root, "web").err().unwrap();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(read_owner(r.dir()), Some(Owner::me().unwrap()));
        // Dropped before it was recorded (a setup failure): gone.
        drop(r);
        assert!(!root.join("web").exists());
        // Recorded, then finished.
        let mut r = Registration::reserve(&root, "web").unwrap();
        let me = std::process::id() as i32;
        r.record(me, &spec(), None).unwrap();
        let st = crate::state(&root, "web").unwrap();
        assert_eq!(st.status, crate::Status::Running);
        assert_eq!(st.pid, me);
        assert!(root.join("web").join(CONFIG_COPY).is_file());
        // Not locked once recorded: the other commands get the lock.
        drop(Locked::open(&root, "web").unwrap());
        r.finish().unwrap();
        assert!(!root.join("web").exists());
        // A record another owner took after ours was deleted is not ours to remove.
        let r = Registration::reserve(&root, "web").unwrap();
        let other = Owner {
            pid: 1,
            pid_start: start_time(1).unwrap_or(1),
        };
        remove_if_owned(r.dir(), other);
        assert_eq!(read_owner(&root.join("web")), Some(r.owner()));
        let aside: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("#gone#"))
            .collect();
        assert!(aside.is_empty(), "a record was left aside: {aside:?}");
        remove_if_owned(r.dir(), r.owner());
        assert!(!root.join("web").exists());
        drop(r);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
