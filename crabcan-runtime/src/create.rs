//! `create`: the bundle's config translated, the container's process cloned into its
//! namespaces and set up completely, left blocked on `exec.fifo`; the state recorded.

use crate::hooks;
use crate::state::{FIFO, HookRecord, Locked, State, Status, now_rfc3339, start_time};
use crabcan_child::{ChildHook, Console, DetachedSpec, IdMap, Range};
use crabcan_errors::{Errcode, Result, SysContext};
use crabcan_oci::{NsKind, Plan};
use nix::sched::CloneFlags;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What `create` (and `run`) are given besides the root.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the container's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds N`.
    pub preserve_fds: u32,
}

/// Creates the container; returns its pid. On any failure nothing is left: no process,
/// no state directory, no mount point, no cgroup.
pub fn create(root: &Path, o: &CreateOptions) -> Result<nix::unistd::Pid> {
    create_with(root, o, None)
}

/// [`create`], the pty master of a `process.terminal` container going to `own_console`
/// (one end of a socket pair whose other end crabcan relays) when the caller gives one
/// instead of a `console_socket` path.
pub(crate) fn create_with(
    root: &Path,
    o: &CreateOptions,
    own_console: Option<std::os::unix::net::UnixStream>,
) -> Result<nix::unistd::Pid> {
    let bundle = crabcan_oci::load(&o.bundle)?;
    let plan = crabcan_oci::translate(&bundle, crabcan_oci::Host::detect(), &mut |w| {
        log::warn!("{w}")
    })?;
    if !plan.root.is_dir() {
        return Err(Errcode::usage(format!(
            "{} root.path: {} is not a directory",
            crabcan_oci::CONFIG_FILE,
            plan.root.display()
        )));
    }
    match (plan.process.terminal, &o.console_socket, &own_console) {
        (true, None, None) => {
            return Err(Errcode::usage(
                "cannot allocate tty if crabcan will detach without setting console socket: \
                 process.terminal needs --console-socket",
            ));
        }
        (false, Some(_), _) => {
            return Err(Errcode::usage(
                "--console-socket given but process.terminal is false",
            ));
        }
        (false, None, Some(_)) => {
            return Err(Errcode::setup(
                "a console was made for a container whose process.terminal is false",
            ));
        }
        (true, Some(_), Some(_)) => {
            return Err(Errcode::setup(
                "a console was made for a container given --console-socket",
            ));
        }
        _ => {}
    }
    let locked = Locked::create(root, &o.id)?;
    let r = keep_config(&locked, &bundle)
        .and_then(|()| create_locked(&locked, &bundle.dir, &plan, o, own_console));
    if r.is_err() {
        let _ = locked.remove();
    }
    r
}

/// Keeps the config as it is now: exec starts from it, whatever becomes of the bundle.
fn keep_config(locked: &Locked, bundle: &crabcan_oci::Bundle) -> Result<()> {
    let path = locked.dir().join(crate::exec::CONFIG_COPY);
    let text = serde_json::to_vec(&bundle.raw)
        .map_err(|e| Errcode::setup(format!("cannot encode the config: {e}")))?;
    locked
        .write_file(crate::exec::CONFIG_COPY, &text)
        .map_err(|e| Errcode::setup(format!("cannot write {}: {e}", path.display())))
}

fn create_locked(
    locked: &Locked,
    bundle: &Path,
    plan: &Plan,
    o: &CreateOptions,
    own_console: Option<std::os::unix::net::UnixStream>,
) -> Result<nix::unistd::Pid> {
    let fifo = locked.dir().join(FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .sys_ctx(|| format!("create {}", fifo.display()))?;
    // Writable by the container's user whatever the umask, as its process opens it after
    // taking the container's ids.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Errcode::setup(format!("cannot chmod {}: {e}", fifo.display())))?;
    // The fifo alone, not its directory: the waiting process must hold no descriptor that
    // leads to a host directory (see crabcan_child's wait_for_start).
    let fifo_fd = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys_ctx(|| format!("open {}", fifo.display()))?;

    // Mounts: none to make when the mount namespace is joined.
    let mount_plan = if plan.creates(NsKind::Mount) {
        let cfg = crabcan_oci::mount_config(plan, o.no_pivot);
        Some(crabcan_mounts::plan(&cfg)?)
    } else if plan.namespace(NsKind::Mount).is_none() {
        return Err(Errcode::usage(format!(
            "{} linux.namespaces: a mount namespace is required",
            crabcan_oci::CONFIG_FILE
        )));
    } else {
        None
    };
    if let Some(m) = &mount_plan
        && log::log_enabled!(log::Level::Debug)
    {
        for line in m.describe() {
            log::debug!("mount plan: {line}");
        }
    }
    // Recorded before anything a kill would strand: a create killed from here on leaves
    // what `delete --force` undoes. Each mount point made in the root is announced by
    // prepare before it exists and appended to a journal (POINTS_FILE); the record itself
    // (creating.json) is written once, after the mount points, with what was made: with
    // the cgroup's directories before the first is made, or after the cgroup step when
    // none is. On ext4 a record written over itself (a rename onto the old one) starts its
    // writeback at once, and the removal of that file at the end of create then waits for
    // the disk: 0.25 ms of a create for each rewrite.
    let mut state = State {
        id: o.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.to_path_buf(),
        rootfs: plan.root.clone(),
        created: now_rfc3339(),
        owner_uid: nix::unistd::geteuid().as_raw(),
        cgroup_path: None,
        cgroup_paths: Vec::new(),
        created_mount_points: Vec::new(),
        rootfs_id: None,
        annotations: plan.annotations.clone(),
        poststart: plan.hooks.poststart.iter().map(HookRecord::from).collect(),
        poststop: plan.hooks.poststop.iter().map(HookRecord::from).collect(),
    };
    let mut journaled = false;
    let prepared = match &mount_plan {
        Some(m) => {
            let root = crabcan_mounts::open_root(m)?;
            let root_id = match &root {
                Some(r) => {
                    let st = nix::sys::stat::fstat(r).sys_ctx(|| {
                        format!("inspect the container's root {}", plan.root.display())
                    })?;
                    (st.st_dev, st.st_ino)
                }
                None => (0, 0),
            };
            let mut journal = None;
            let prepared = crabcan_mounts::prepare_in(m, root, &mut |point| {
                if journal.is_none() {
                    journal = Some(locked.points_journal(root_id, &plan.root)?);
                }
                journal.as_mut().map_or(Ok(()), |j| j.append(point))
            })?;
            journaled = journal.is_some();
            if !prepared.is_empty() {
                state.rootfs_id = Some(root_id);
            }
            Some(prepared)
        }
        None => None,
    };
    // What was made, of what was announced (a path announced and then made by someone
    // else, or a dangling symlink whose target was made instead, is not this create's).
    state.created_mount_points = prepared
        .iter()
        .flat_map(|p| p.created().map(Path::to_path_buf))
        .collect();
    // An engine gives every container a seccomp profile. It is compiled while the
    // container's process sets up (the process waits for it after its mounts), where the
    // compile (~0.4 ms in a fresh process for a typical engine's profile) mostly hides.
    let (security, profile) = crabcan_security::plan_deferred(crabcan_oci::security_config(plan))?;
    log::debug!("security: {}", {
        let described = crabcan_security::describe(&security);
        if profile.is_some() {
            described.replace(
                "seccomp unconfined",
                "seccomp the config's profile, compiled while the process sets up",
            )
        } else {
            described
        }
    });
    // Every directory it will have, recorded before the first is made (the v1 ones are
    // made after the clone).
    let mut cgroup = cgroup(plan, &o.id, |path, dirs| {
        state.cgroup_path = Some(path.to_string());
        state.cgroup_paths = dirs;
        locked.write_creating(&state)
    })?;
    if cgroup.0.is_none() {
        locked.write_creating(&state)?;
    }

    // Every namespace to join is opened before the first join.
    let mut joins: Vec<(NsKind, OwnedFd)> = Vec::new();
    for kind in NsKind::JOIN_ORDER {
        if let Some(path) = plan.namespace(kind).and_then(|n| n.path.as_ref()) {
            joins.push((kind, open_namespace(kind, path)?));
        }
    }
    refuse_host_sysctls(plan, &joins)?;
    let mut new_ns = CloneFlags::empty();
    for n in &plan.namespaces {
        if n.path.is_none() {
            new_ns |= CloneFlags::from_bits_truncate(n.kind.clone_flag());
        }
    }
    // A pid namespace is joined by the parent: it only applies to children. Only to the
    // container's: the hooks this process runs afterwards are host processes with every
    // capability, which the container's neighbours must not see (ptrace, kill), so the
    // parent's own pid namespace is restored right after the clone.
    let own_pid_ns = if joins.iter().any(|(k, _)| *k == NsKind::Pid) {
        Some(
            nix::fcntl::open(
                "/proc/self/ns/pid",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .sys_ctx(|| "open the runtime's own pid namespace")?,
        )
    } else {
        None
    };
    let mut child_joins = Vec::new();
    for (kind, fd) in joins {
        if kind == NsKind::Pid {
            nix::sched::setns(&fd, CloneFlags::CLONE_NEWPID)
                .sys_ctx(|| "join the pid namespace (setns)")?;
        } else {
            child_joins.push((CloneFlags::from_bits_truncate(kind.clone_flag()), fd));
        }
    }
    let console = match (&o.console_socket, own_console) {
        // Sized as the terminal the pty is relayed to, as exec's.
        (_, Some(s)) => Some(Console {
            socket: OwnedFd::from(s),
            size: crate::exec_tty::size_of_stdin().or(plan.process.console_size),
        }),
        (Some(path), None) => {
            let s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
                Errcode::setup(format!(
                    "cannot connect to the console socket {}: {e}",
                    path.display()
                ))
            })?;
            Some(Console {
                socket: OwnedFd::from(s),
                size: plan.process.console_size,
            })
        }
        (None, None) => None,
    };
    let idmap = plan.creates(NsKind::User).then(|| IdMap {
        uids: ranges(&plan.uid_mappings),
        gids: ranges(&plan.gid_mappings),
        // Without CAP_SETGID over the parent namespace the kernel takes a gid map only
        // once setgroups is denied (user_namespaces(7)); root keeps setgroups for the
        // config's additional gids.
        deny_setgroups: !nix::unistd::geteuid().is_root(),
        use_helpers: false,
    });
    let child_hooks = |hs: &[crabcan_oci::Hook]| -> Result<Vec<ChildHook>> {
        hs.iter()
            .map(|h| {
                Ok(ChildHook {
                    path: CString::new(h.path.as_os_str().as_encoded_bytes())
                        .map_err(|_| Errcode::usage("a hook path contains a NUL byte"))?,
                    args: crate::cstrings(&h.args, "a hook argument")?,
                    env: crate::cstrings(&h.env, "a hook environment entry")?,
                    timeout: h.timeout,
                })
            })
            .collect()
    };
    let spec = DetachedSpec {
        new_namespaces: new_ns,
        join: child_joins,
        idmap: idmap.clone(),
        hostname: plan.hostname.clone(),
        domainname: plan.domainname.clone(),
        mounts: mount_plan.clone(),
        loopback: plan.creates(NsKind::Net),
        sysctl: plan.sysctl.clone(),
        rlimits: plan
            .process
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect(),
        oom_score_adj: plan.process.oom_score_adj,
        personality: plan.personality,
        new_keyring: !o.no_new_keyring,
        uid: plan.process.uid,
        gid: plan.process.gid,
        additional_gids: plan.process.additional_gids.clone(),
        umask: plan.process.umask,
        cwd: plan.process.cwd.clone(),
        argv: crate::cstrings(&plan.process.args, "process.args")?,
        env: crate::cstrings(&plan.process.env, "process.env")?,
        security,
        seccomp_later: profile.is_some(),
        console,
        fifo: fifo_fd,
        preserve_fds: o.preserve_fds,
        cgroup: cgroup.as_ref().map(|c| c.entry()).transpose()?,
        cgroup_later: true,
        runtime_hooks: !plan.hooks.prestart.is_empty() || !plan.hooks.create_runtime.is_empty(),
        create_container_hooks: child_hooks(&plan.hooks.create_container)?,
        start_container_hooks: child_hooks(&plan.hooks.start_container)?,
    };
    let child = crabcan_child::spawn_detached(&spec);
    if let Some(own) = &own_pid_ns {
        nix::sched::setns(own, CloneFlags::CLONE_NEWPID)
            .sys_ctx(|| "return to the runtime's own pid namespace (setns)")?;
    }
    let mut child = child?;
    let pid = child.pid();
    log::debug!("container process {pid} cloned");
    // The rest of the cgroup, while the process makes its network namespace; then it
    // enters, while its ids are mapped here.
    if let Some(c) = cgroup.0.as_mut() {
        c.complete()
            .map_err(|e| e.context(format!("cgroup {}", c.cgroup_path())))?;
        child.join_cgroup(c.v1_entry()?)?;
    }
    if let Some(m) = &idmap {
        child.write_id_maps(m)?;
    }
    let handed = match (&mount_plan, &prepared) {
        (Some(m), Some(p)) => {
            let userns = if crabcan_mounts::needs_idmap(m) {
                Some(
                    nix::fcntl::open(
                        format!("/proc/{pid}/ns/user").as_str(),
                        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .sys_ctx(|| "open the container's user namespace")?,
                )
            } else {
                None
            };
            crabcan_mounts::handover(m, p.root(), userns.as_ref().map(std::os::fd::AsFd::as_fd))?
        }
        _ => Vec::new(),
    };
    child.release(handed)?;
    state.pid = pid.as_raw();
    state.pid_start = start_time(pid.as_raw()).unwrap_or(0);
    // Compiled before the runtime's hooks: a profile that cannot be compiled fails create
    // before any hook runs for a container that is never made. Sent after them: the
    // process reads the hook states first.
    let program = match &profile {
        Some(p) => Some(crabcan_security::profile::compile(p).map_err(|e| {
            Errcode::usage(e.describe_in(crabcan_oci::CONFIG_FILE, "linux.seccomp"))
        })?),
        None => None,
    };
    child.at_hooks(|| {
        let creating = crate::state_json_as(&state, Status::Creating);
        let recs: Vec<HookRecord> = plan.hooks.prestart.iter().map(HookRecord::from).collect();
        hooks::run_all("prestart", &recs, &creating)?;
        let recs: Vec<HookRecord> = plan
            .hooks
            .create_runtime
            .iter()
            .map(HookRecord::from)
            .collect();
        hooks::run_all("createRuntime", &recs, &creating)?;
        Ok(crabcan_child::HookStates {
            creating,
            created: crate::state_json_as(&state, Status::Created),
        })
    })?;
    if let Some(p) = &program {
        child.send_filter(p)?;
    }
    let pid = child_ready(child)?;
    let recorded = locked.write(&state).and_then(|()| match &o.pid_file {
        Some(p) => write_pid_file(p, pid.as_raw()),
        None => Ok(()),
    });
    if let Err(e) = recorded {
        // The process waits for a start that no caller would make, in a container no
        // delete would find: it goes (it is this process's child, so its pid is not
        // reused before the reaping), and with it the cgroup, the mount points and the
        // state directory, as after any other failure.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(e);
    }
    // Recorded: delete removes it from now on.
    std::mem::forget(cgroup);
    let _ = std::fs::remove_file(locked.dir().join(crate::state::CREATING_FILE));
    if journaled {
        let _ = std::fs::remove_file(locked.dir().join(crate::state::POINTS_FILE));
    }
    // The mount points stay until delete, which removes them from the record.
    std::mem::forget(prepared);
    Ok(pid)
}

/// Opens a namespace to join without blocking (a fifo named there must not hang create)
/// and refuses anything that is not a namespace file.
fn open_namespace(kind: NsKind, path: &Path) -> Result<OwnedFd> {
    /// `NSFS_MAGIC` of linux/magic.h.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let what = || format!("open the {} namespace {}", kind.oci_name(), path.display());
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    )
    .sys_ctx(what)?;
    let fs = nix::sys::statfs::fstatfs(&fd).sys_ctx(what)?;
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(Errcode::usage(format!(
            "{} linux.namespaces: the {} namespace path {} is not a namespace file",
            crabcan_oci::CONFIG_FILE,
            kind.oci_name(),
            path.display()
        )));
    }
    Ok(fd)
}

/// A sysctl applies to the namespace the container is in: in one joined by path that is
/// the runtime's own, it would change the host. Refused, as runc does.
fn refuse_host_sysctls(plan: &Plan, joins: &[(NsKind, OwnedFd)]) -> Result<()> {
    for (kind, own) in [
        (NsKind::Net, "/proc/self/ns/net"),
        (NsKind::Ipc, "/proc/self/ns/ipc"),
    ] {
        let Some((_, fd)) = joins.iter().find(|(k, _)| *k == kind) else {
            continue;
        };
        // translate admits net.* keys for the network namespace, the rest for the IPC one.
        let Some((key, _)) = plan
            .sysctl
            .iter()
            .find(|(k, _)| k.starts_with("net") == (kind == NsKind::Net))
        else {
            continue;
        };
        let own = nix::sys::stat::stat(own).sys_ctx(|| format!("stat {own}"))?;
        let joined = nix::sys::stat::fstat(fd)
            .sys_ctx(|| format!("stat the joined {} namespace", kind.oci_name()))?;
        if (own.st_dev, own.st_ino) == (joined.st_dev, joined.st_ino) {
            return Err(Errcode::usage(format!(
                "{} linux.sysctl.{}: not allowed in the host's {} namespace (joined by path)",
                crabcan_oci::CONFIG_FILE,
                key.display().to_string().replace('/', "."),
                kind.oci_name()
            )));
        }
    }
    Ok(())
}

fn child_ready(child: crabcan_child::Detached) -> Result<nix::unistd::Pid> {
    child.wait_ready()
}

/// The container's cgroup, removed again when create fails before recording it.
struct Cgroup(Option<crabcan_cgroups::ContainerCgroup>);

impl std::ops::Deref for Cgroup {
    type Target = Option<crabcan_cgroups::ContainerCgroup>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take()
            && let Err(e) = cg.remove()
        {
            log::warn!("{e}");
        }
    }
}

/// Creates the container's cgroup: its v2 directory, which the process is cloned into;
/// the rest (v1 directories, limits and device rules) is made after the clone
/// ([`crabcan_cgroups::ContainerCgroup::complete`]). An ordinary user without limits to
/// set gets none (as runc rootless), having no cgroup of its own to write. `record` is
/// given its path and directories before any is made.
fn cgroup(
    plan: &Plan,
    id: &str,
    record: impl FnOnce(&crabcan_cgroups::CgroupPath, Vec<PathBuf>) -> Result<()>,
) -> Result<Cgroup> {
    if !nix::unistd::geteuid().is_root()
        && plan.resources == crabcan_cgroups::Resources::default()
        && plan.cgroups_path.is_none()
    {
        return Ok(Cgroup(None));
    }
    let layout = crabcan_cgroups::Layout::detect()?;
    let path = crabcan_oci::cgroup_path(plan, id)?;
    let cg = crabcan_cgroups::ContainerCgroup::create_v2_first(
        &layout,
        &path,
        &plan.resources,
        |dirs| record(&path, dirs),
    )
    .map_err(|e| e.context(format!("cgroup {path}")))?;
    Ok(Cgroup(Some(cg)))
}

fn ranges(v: &[crabcan_oci::IdRange]) -> Vec<Range> {
    v.iter()
        .map(|r| Range {
            inside: r.inside,
            outside: r.outside,
            count: r.count,
        })
        .collect()
}

/// Writes the pid file atomically: engines read it as soon as create returns.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path)
        .map_err(|e| Errcode::usage(format!("invalid --pid-file {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    crate::state::replace_file(&tmp, &path, 0o644, pid.to_string().as_bytes())
        .map_err(|e| Errcode::setup(format!("cannot write the pid file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_files_temporary_name_follows_no_symlink() {
        let dir = std::env::temp_dir().join(format!("crabcan-pidfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let tmp = dir.join(format!(".pid.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_pid_file(&dir.join("pid"), 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(dir.join("pid")).unwrap(), "4242");
        assert!(!dir.join("pid").is_symlink());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
