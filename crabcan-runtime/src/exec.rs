//! `exec`: a new process in an existing container, with the container's own config (the
//! copy create kept) as the defaults, overridden as runc overrides them.

use crate::state::{Locked, State, Status, start_time};
use crabcan_child::{Console, ExecSpec, JoinNs};
use crabcan_errors::{Errcode, Result};
use nix::sched::CloneFlags;
use serde_json::{Value, json};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The copy of the config create keeps in the state directory: what exec starts from
/// even when the bundle's file changes later.
pub const CONFIG_COPY: &str = "config.json";

/// How the exec'd process differs from the container's own (runc's exec flags).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Container id.
    pub id: String,
    /// A whole OCI `process` object; when given, the flags that shape the process are
    /// ignored (as runc ignores them).
    pub process: Option<Value>,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Environment entries added to the container's.
    pub env: Vec<String>,
    /// uid and optional gid.
    pub user: Option<(u32, Option<u32>)>,
    /// Supplementary groups added.
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the bounding, effective and permitted sets.
    pub caps: Vec<String>,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Allocate a pty.
    pub tty: bool,
    /// AppArmor profile.
    pub apparmor: Option<String>,
    /// SELinux process label.
    pub process_label: Option<String>,
    /// Return once the process runs.
    pub detach: bool,
    /// Where to write the process's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// Inherited descriptors 3..3+N passed on.
    pub preserve_fds: u32,
    /// Exec into a paused container too.
    pub ignore_paused: bool,
}

/// The `process` object of the exec: the container's, overridden by `o`.
pub fn process_json(config: &Value, o: &ExecOptions) -> Result<Value> {
    let base = config.get("process").cloned().unwrap_or_else(|| json!({}));
    if let Some(p) = &o.process {
        let Value::Object(mut p) = p.clone() else {
            return Err(Errcode::usage("--process: expected a JSON object"));
        };
        // runc's rule: what the process leaves out, the container's config gives.
        for key in [
            "capabilities",
            "noNewPrivileges",
            "apparmorProfile",
            "selinuxLabel",
        ] {
            if !p.contains_key(key)
                && let Some(v) = base.get(key)
            {
                p.insert(key.into(), v.clone());
            }
        }
        let no_rlimits = p
            .get("rlimits")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_rlimits && let Some(v) = base.get("rlimits") {
            p.insert("rlimits".into(), v.clone());
        }
        if !p.contains_key("cwd") {
            p.insert("cwd".into(), json!("/"));
        }
        if o.tty {
            p.insert("terminal".into(), json!(true));
        }
        // The init's own oom_score_adj stays the container's: an exec does not change it.
        p.remove("oomScoreAdj");
        return Ok(Value::Object(p));
    }
    if o.args.is_empty() {
        return Err(Errcode::usage(
            "exec needs a command (or --process FILE): exec [flags] ID COMMAND [ARGS...]",
        ));
    }
    let mut p = match base {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    p.insert("args".into(), json!(o.args));
    p.insert("terminal".into(), json!(o.tty));
    p.remove("oomScoreAdj");
    p.remove("consoleSize");
    if let Some(c) = &o.cwd {
        p.insert("cwd".into(), json!(c));
    }
    if !o.env.is_empty() {
        let mut env: Vec<Value> = p
            .get("env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        env.extend(o.env.iter().map(|e| json!(e)));
        p.insert("env".into(), Value::Array(env));
    }
    let user = object(
        p.entry("user")
            .or_insert_with(|| json!({"uid": 0, "gid": 0})),
    );
    if let Some((uid, gid)) = o.user {
        user.insert("uid".into(), json!(uid));
        if let Some(g) = gid {
            user.insert("gid".into(), json!(g));
        }
    }
    if !o.additional_gids.is_empty() {
        let mut g: Vec<Value> = user
            .get("additionalGids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        g.extend(o.additional_gids.iter().map(|x| json!(x)));
        user.insert("additionalGids".into(), Value::Array(g));
    }
    if !o.caps.is_empty() {
        let caps = object(p.entry("capabilities").or_insert_with(|| json!({})));
        for set in ["bounding", "effective", "permitted"] {
            let mut v: Vec<Value> = caps
                .get(set)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in &o.caps {
                let c = json!(c);
                if !v.contains(&c) {
                    v.push(c);
                }
            }
            caps.insert(set.into(), Value::Array(v));
        }
    }
    if o.no_new_privs {
        p.insert("noNewPrivileges".into(), json!(true));
    }
    if let Some(a) = &o.apparmor {
        p.insert("apparmorProfile".into(), json!(a));
    }
    if let Some(l) = &o.process_label {
        p.insert("selinuxLabel".into(), json!(l));
    }
    Ok(Value::Object(p))
}

/// `v` as an object, made one if it is something else (translate then judges the result).
fn object(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Reads the container's config: the copy create kept, or (a container created before
/// copies were kept) the bundle's.
fn container_config(dir: &Path, s: &State) -> Result<Value> {
    let copy = dir.join(CONFIG_COPY);
    let path = if copy.exists() {
        copy
    } else {
        s.bundle.join(crabcan_oci::CONFIG_FILE)
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Errcode::setup(format!("cannot read {}: {e}", path.display())))?;
    crabcan_security::json::parse_strict(&text)
        .map_err(|e| Errcode::setup(format!("{}: invalid JSON: {e}", path.display())))
}

/// `exec ID`: runs a process in the container. Returns its exit status (foreground) or 0
/// once it runs (`detach`). The caller must be single-threaded.
pub fn exec(root: &Path, o: &ExecOptions) -> Result<i32> {
    let (pid, pty_end) = launch(root, o, o.detach)?;
    if o.detach {
        return Ok(0);
    }
    match pty_end {
        Some(sock) => crate::exec_tty::relay(pid, sock),
        None => crabcan_child::wait_forwarding(pid),
    }
}

/// `exec ID` as `--detach` runs it, whatever `o.detach` says: returns the process's pid
/// once it runs its command (it is the caller's child). For a caller that waits for the
/// process elsewhere (a subreaper that adopts it). The caller must be single-threaded.
pub fn exec_detached(root: &Path, o: &ExecOptions) -> Result<nix::unistd::Pid> {
    launch(root, o, true).map(|(pid, _)| pid)
}

/// Starts the exec'd process; with the pty's host end when crabcan relays it itself.
fn launch(
    root: &Path,
    o: &ExecOptions,
    detach: bool,
) -> Result<(nix::unistd::Pid, Option<std::os::unix::net::UnixStream>)> {
    // Held only while the record is read: a foreground exec must not keep kill and
    // delete waiting.
    let (dir, s) = {
        let l = Locked::open(root, &o.id)?;
        let s = l.read()?;
        (l.dir().to_path_buf(), s)
    };
    check_status(crate::status_of(&dir, &s), o.ignore_paused)?;
    let mut config = container_config(&dir, &s)?;
    let process = process_json(&config, o)?;
    config["process"] = process;
    let text = serde_json::to_string(&config)
        .map_err(|e| Errcode::setup(format!("cannot encode the exec's config: {e}")))?;
    let bundle = crabcan_oci::parse(s.bundle.clone(), &text)?;
    let plan = crabcan_oci::translate(&bundle, crabcan_oci::Host::detect(), &mut |w| {
        log::warn!("{w}")
    })
    .map_err(|e| e.context("exec process"))?;
    let own_pty = plan.process.terminal && o.console_socket.is_none();
    if own_pty && detach {
        return Err(Errcode::usage(
            "cannot allocate tty if crabcan will detach without setting console socket",
        ));
    }
    if !plan.process.terminal && o.console_socket.is_some() {
        return Err(Errcode::usage(
            "--console-socket given but the process has no terminal (--tty)",
        ));
    }
    let namespaces = open_namespaces(s.pid)?;
    // The descriptors are the container's only if its process is still the one recorded.
    if start_time(s.pid) != Some(s.pid_start) {
        return Err(Errcode::usage("cannot exec in a stopped container"));
    }
    let deny_setgroups = std::fs::read_to_string(format!("/proc/{}/setgroups", s.pid))
        .is_ok_and(|t| t.trim() == "deny");
    let security = crabcan_security::plan(&crabcan_oci::security_config(&plan))?;
    let (console, pty_end) = match (&o.console_socket, own_pty) {
        (Some(path), _) => {
            let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
                Errcode::setup(format!(
                    "cannot connect to the console socket {}: {e}",
                    path.display()
                ))
            })?;
            (Some(console_of(sock, &plan)), None)
        }
        (None, true) => {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| Errcode::setup(format!("cannot create a socket pair: {e}")))?;
            let mut c = console_of(theirs, &plan);
            c.size = crate::exec_tty::size_of_stdin().or(c.size);
            (Some(c), Some(ours))
        }
        (None, false) => (None, None),
    };
    // A container with a cgroup whose cgroup cannot be opened would get an exec'd process
    // outside every limit: refuse instead.
    let cgroup = match crate::open_cgroup(&s) {
        Some(cg) => Some(cg),
        None if s.cgroup_path.is_some() => {
            return Err(Errcode::setup(format!(
                "container {}: its cgroup {} cannot be opened; the process would run outside \
                 its limits",
                s.id,
                s.cgroup_path.as_deref().unwrap_or_default()
            )));
        }
        None => None,
    };
    let spec = ExecSpec {
        namespaces,
        cgroup,
        deny_setgroups,
        rlimits: plan
            .process
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect(),
        uid: plan.process.uid,
        gid: plan.process.gid,
        additional_gids: plan.process.additional_gids.clone(),
        umask: plan.process.umask,
        cwd: plan.process.cwd.clone(),
        argv: crate::cstrings(&plan.process.args, "process.args")?,
        env: crate::cstrings(&plan.process.env, "process.env")?,
        security,
        console,
        preserve_fds: o.preserve_fds,
    };
    if !detach {
        // Blocked before the process exists, so no signal meant for it is lost; the
        // process restores its own mask before exec.
        crabcan_child::block_signals()?;
    }
    let pid = crabcan_child::exec_in(&spec)?;
    drop(spec);
    log::debug!("exec'd process {pid} runs in {}", o.id);
    if let Some(p) = &o.pid_file
        && let Err(e) = crate::create::write_pid_file(p, pid.as_raw())
    {
        // A process its caller cannot know of must not run on (not this process's child:
        // the joiner that forked it has exited; pinned by its start time, read at once).
        if let Some(start) = start_time(pid.as_raw()) {
            let _ = crate::signal_pid(pid.as_raw(), start, nix::sys::signal::Signal::SIGKILL);
        }
        return Err(e);
    }
    Ok((pid, pty_end))
}

fn console_of(sock: std::os::unix::net::UnixStream, plan: &crabcan_oci::Plan) -> Console {
    Console {
        socket: OwnedFd::from(sock),
        size: plan.process.console_size,
    }
}

/// runc's refusals by status.
fn check_status(st: Status, ignore_paused: bool) -> Result<()> {
    match st {
        Status::Stopped => Err(Errcode::usage("cannot exec in a stopped container")),
        Status::Paused if !ignore_paused => Err(Errcode::usage(
            "cannot exec in a paused container (use --ignore-paused to override)",
        )),
        Status::Creating => Err(Errcode::usage("cannot exec in a container being created")),
        _ => Ok(()),
    }
}

/// The kinds of namespace a process has, by `/proc/PID/ns` name, with their flags.
const KINDS: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

/// `ioctl(NS_GET_USERNS)`: the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// Opens every namespace of `pid` that differs from ours, all before any is joined (once
/// the mount namespace is joined, the host's /proc is gone).
fn open_namespaces(pid: i32) -> Result<Vec<JoinNs>> {
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut out = Vec::new();
    let mut userns = None;
    for (name, flag) in KINDS {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let their_id = match std::fs::metadata(&theirs) {
            Ok(m) => (m.dev(), m.ino()),
            // A kind this kernel lacks (time) or a process that is gone (checked later).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Never skipped: the process would run in the caller's namespace instead.
            Err(e) => return Err(ns_denied(&theirs, &e)),
        };
        if Some(their_id) == id(&format!("/proc/self/ns/{name}")) {
            continue;
        }
        let fd = nix::fcntl::open(
            theirs.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| {
            if e == nix::errno::Errno::ENOENT || e == nix::errno::Errno::ESRCH {
                Errcode::usage("cannot exec in a stopped container")
            } else {
                Errcode::sys(format!("open the container's namespace {theirs}"), e)
            }
        })?;
        if flag == libc::CLONE_NEWUSER {
            userns = Some(their_id);
        }
        out.push(JoinNs {
            flag: CloneFlags::from_bits_retain(flag),
            fd,
            outside_userns: false,
        });
    }
    if let Some(u) = userns {
        for n in out.iter_mut() {
            if n.flag != CloneFlags::CLONE_NEWUSER {
                n.outside_userns = owner(&n.fd).is_some_and(|o| o != u);
            }
        }
    }
    Ok(out)
}

/// A namespace of the container that the caller may not open: the container's processes
/// are not dumpable, so only a caller privileged over them (root, the creator's
/// privileges) can join them.
fn ns_denied(path: &str, e: &std::io::Error) -> Errcode {
    let base = Errcode::setup(format!("cannot open the container's namespace {path}: {e}"));
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        base.with_hint(
            "the container's processes are not dumpable: exec into it needs CAP_SYS_PTRACE \
             on the host (run it as root)",
        )
    } else {
        base
    }
}

/// The (device, inode) of the user namespace owning the namespace `fd`.
fn owner(fd: &OwnedFd) -> Option<(u64, u64)> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), NS_GET_USERNS as _) };
    if r < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r) };
    let st = nix::sys::stat::fstat(&owned).ok()?;
    Some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({"process": {
            "args": ["init"], "env": ["PATH=/bin", "A=1"], "cwd": "/home",
            "user": {"uid": 1, "gid": 2, "additionalGids": [3]},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 10}],
            "noNewPrivileges": true, "oomScoreAdj": 5, "terminal": true
        }})
    }

    #[test]
    fn flags_override_the_containers_process() {
        let o = ExecOptions {
            args: vec!["sh".into()],
            cwd: Some("/tmp".into()),
            env: vec!["B=2".into()],
            user: Some((7, Some(8))),
            additional_gids: vec![9],
            caps: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            ..Default::default()
        };
        let p = process_json(&config(), &o).unwrap();
        assert_eq!(p["args"], json!(["sh"]));
        assert_eq!(p["cwd"], json!("/tmp"));
        assert_eq!(p["env"], json!(["PATH=/bin", "A=1", "B=2"]));
        assert_eq!(
            p["user"],
            json!({"uid": 7, "gid": 8, "additionalGids": [3, 9]})
        );
        assert_eq!(
            p["capabilities"]["bounding"],
            json!(["CAP_KILL", "CAP_CHOWN"])
        );
        assert_eq!(p["terminal"], json!(false));
        assert_eq!(p["rlimits"], config()["process"]["rlimits"]);
        assert!(p.get("oomScoreAdj").is_none());
        let o = ExecOptions {
            args: vec!["sh".into()],
            user: Some((7, None)),
            tty: true,
            ..Default::default()
        };
        let p = process_json(&config(), &o).unwrap();
        assert_eq!(p["user"]["gid"], json!(2));
        assert_eq!(p["terminal"], json!(true));
        assert_eq!(p["cwd"], json!("/home"));
    }

    #[test]
    fn a_process_file_replaces_it_but_inherits_what_it_leaves_out() {
        let given = json!({"args": ["id"], "cwd": "/tmp", "user": {"uid": 65534, "gid": 65534},
                           "env": ["X=1"], "noNewPrivileges": false, "rlimits": []});
        let o = ExecOptions {
            process: Some(given),
            args: vec!["ignored".into()],
            ..Default::default()
        };
        let p = process_json(&config(), &o).unwrap();
        assert_eq!(p["args"], json!(["id"]));
        assert_eq!(p["env"], json!(["X=1"]));
        assert_eq!(p["noNewPrivileges"], json!(false));
        assert_eq!(p["capabilities"], config()["process"]["capabilities"]);
        assert_eq!(p["rlimits"], config()["process"]["rlimits"]);
        assert!(p.get("terminal").is_none());
        let o = ExecOptions {
            process: Some(json!([1])),
            ..Default::default()
        };
        assert!(process_json(&config(), &o).is_err());
        assert!(process_json(&config(), &ExecOptions::default()).is_err());
    }

    #[test]
    fn a_malformed_config_is_no_panic() {
        let bad = json!({"process": {"user": "x", "capabilities": 5, "env": 3}});
        let o = ExecOptions {
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            user: Some((1, Some(2))),
            additional_gids: vec![3],
            caps: vec!["CAP_KILL".into()],
            ..Default::default()
        };
        let p = process_json(&bad, &o).unwrap();
        assert_eq!(
            p["user"],
            json!({"uid": 1, "gid": 2, "additionalGids": [3]})
        );
        assert_eq!(p["env"], json!(["A=1"]));
        assert!(process_json(&json!({"process": 7}), &o).is_ok());
        assert!(process_json(&json!([]), &o).is_ok());
    }

    #[test]
    fn stopped_and_paused_containers_are_refused_in_runcs_words() {
        let e = check_status(Status::Stopped, false).unwrap_err();
        assert!(e.to_string().contains("cannot exec in a stopped container"));
        let e = check_status(Status::Paused, false).unwrap_err();
        assert!(e.to_string().contains("paused"));
        assert!(check_status(Status::Paused, true).is_ok());
        assert!(check_status(Status::Created, false).is_ok());
        assert!(check_status(Status::Running, false).is_ok());
    }
}
