//! The detached container process of OCI `create`: cloned into exactly the namespaces the
//! config lists (joining some by path), set up completely, then blocked on the state
//! directory's `exec.fifo` until `start`, with no crabcan process left to hold it.
//!
//! The parent's side, in order: [`spawn_detached`] (after a `setns` into a pid namespace to
//! join, which only affects children), [`Detached::write_id_maps`] when a user namespace
//! is created, [`Detached::release`] with the mount
//! descriptors, [`Detached::at_hooks`] to run the runtime-namespace hooks while the child
//! waits, then [`Detached::wait_ready`]. The child never gets a parent-death signal: the
//! container outlives `create`.
//!
//! The child enters its cgroups itself, first thing, through descriptors the parent opened
//! ([`crabcan_cgroups::Entry`]): cloned into the v2 directory and writing itself into each
//! v1 one, which spares the grace-period wait of moving it by pid.

use crate::{IdMap, exec, net};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Sent by the child once its namespaces exist, before its mounts: the point of the
/// prestart and createRuntime hooks.
const AT_HOOKS: &[u8] = b"hooks";
/// Sent by the child when it waits for `start`: everything is set up.
const READY: &[u8] = b"ready";
/// The parent's word to go on after the hooks.
const GO_ON: &[u8] = b"on";

/// A hook run by the container's process itself (createContainer, startContainer).
#[derive(Debug, Clone)]
pub struct ChildHook {
    /// Executable path.
    pub path: CString,
    /// argv.
    pub args: Vec<CString>,
    /// Environment.
    pub env: Vec<CString>,
    /// Killed after this long.
    pub timeout: Option<std::time::Duration>,
}

/// A pty for the process: where its master goes, and its size.
#[derive(Debug)]
pub struct Console {
    /// A connected unix socket (the engine's `--console-socket`).
    pub socket: OwnedFd,
    /// Rows and columns.
    pub size: Option<(u16, u16)>,
}

/// Everything the detached child needs, decided before the clone.
#[derive(Debug)]
pub struct DetachedSpec {
    /// Namespaces to create (`CLONE_NEW*`), the user namespace only when listed.
    pub new_namespaces: CloneFlags,
    /// Namespaces to join, in this order, by descriptors opened before any join. The pid
    /// namespace is not among them: the parent joins it before the clone.
    pub join: Vec<(CloneFlags, OwnedFd)>,
    /// Id maps, only with a new user namespace (written by the parent).
    pub idmap: Option<IdMap>,
    /// Hostname to set.
    pub hostname: Option<String>,
    /// NIS domain name to set.
    pub domainname: Option<String>,
    /// The mount plan; `None` keeps the mount namespace as it is (a joined one).
    pub mounts: Option<crabcan_mounts::MountPlan>,
    /// Bring loopback up (a new network namespace).
    pub loopback: bool,
    /// `/proc/sys` relative paths and values.
    pub sysctl: Vec<(PathBuf, String)>,
    /// rlimits: resource, soft, hard.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Written to `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// `personality(2)` domain.
    pub personality: Option<u64>,
    /// Join a new session keyring (unless `--no-new-keyring`).
    pub new_keyring: bool,
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// umask.
    pub umask: Option<u32>,
    /// Working directory inside.
    pub cwd: PathBuf,
    /// The command.
    pub argv: Vec<CString>,
    /// Its environment.
    pub env: Vec<CString>,
    /// Capabilities, no_new_privs and seccomp.
    pub security: crabcan_security::SecurityPlan,
    /// The seccomp program is not in `security` but comes from the parent while the
    /// process sets up ([`Detached::send_filter`]): the process waits for it just before
    /// it needs it, after its mounts.
    pub seccomp_later: bool,
    /// A pty for the process.
    pub console: Option<Console>,
    /// The state directory's `exec.fifo`, opened `O_PATH`: the only thing of the host's
    /// this process holds until `start` (see `wait_for_start`).
    pub fifo: OwnedFd,
    /// Inherited descriptors 3..3+N passed to the process.
    pub preserve_fds: u32,
    /// The container's cgroup, entered by the process itself before anything else.
    pub cgroup: Option<crabcan_cgroups::Entry>,
    /// `cgroup` is the v2 directory of a cgroup made in two steps
    /// ([`crabcan_cgroups::ContainerCgroup::create_v2_first`]): the process waits for the
    /// v1 hierarchies, which [`Detached::join_cgroup`] hands it once they are made (while
    /// it makes its network namespace).
    pub cgroup_later: bool,
    /// The parent runs hooks of its own (createRuntime, prestart) once the namespaces
    /// exist: the process waits for them before its mounts.
    pub runtime_hooks: bool,
    /// Run in the container before the mounts (createContainer).
    pub create_container_hooks: Vec<ChildHook>,
    /// Run in the container after `start`, before the command (startContainer).
    pub start_container_hooks: Vec<ChildHook>,
}

/// The container's state as its own hooks get it (OCI state JSON): createContainer's
/// ("creating"), and startContainer's ("created", as runc passes it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookStates {
    /// For the createContainer hooks.
    pub creating: Vec<u8>,
    /// For the startContainer hooks.
    pub created: Vec<u8>,
}

/// The parent's handle on the detached child during `create`.
pub struct Detached {
    pid: Pid,
    chan: OwnedFd,
    done: bool,
    /// The process stops for hooks (see [`Detached::at_hooks`]).
    stops_for_hooks: bool,
    /// The process waits for its seccomp program ([`DetachedSpec::seccomp_later`]).
    seccomp_later: bool,
    /// [`Detached::send_filter`] was called.
    filter_sent: bool,
    /// The process waits for its v1 cgroups ([`DetachedSpec::cgroup_later`]).
    cgroup_later: bool,
}

/// Clones the detached child. Refuses a multi-threaded caller.
pub fn spawn_detached(spec: &DetachedSpec) -> Result<Detached> {
    crate::ensure_single_threaded("create the container's process")?;
    // Read once here: the process has it from this one's memory (see crate::spawn).
    let _ = crabcan_security::kernel_last_cap();
    let (parent_end, child_end) = crate::channel()?;
    let parent_raw = parent_end.as_raw_fd();
    let child_raw = child_end.as_raw_fd();
    if born_undumpable(spec) {
        // The clone inherits it: the process is never dumpable, not even before its first
        // instruction. It matters from the clone on: cloned into a new user namespace, the
        // process counts as the namespace's (host root's) own, and until it takes the
        // container's ids and pivots, any uid-0 process that sees its pid (a sibling in a
        // pid namespace the config joins, a host-pid workload) could otherwise reach the
        // host's root through /proc/PID/root with no capability at all. This process is
        // done with anything a dump would matter for: it only creates the container.
        nix::sys::prctl::set_dumpable(false)
            .sys_ctx(|| "make the runtime non-dumpable before the clone")?;
    }
    // The cgroup namespace is made once the process is in its cgroups, so that it is
    // rooted there; the network namespace by the process itself, its first step, while
    // this one goes on (see crate::spawn).
    let flags = spec.new_namespaces - CloneFlags::CLONE_NEWCGROUP - CloneFlags::CLONE_NEWNET;
    let child = |in_v2: bool| -> isize { child_main(spec, parent_raw, child_raw, in_v2) };
    // SAFETY: the caller is single-threaded (documented); the child only runs
    // `child_main`, which ends in exec or _exit.
    let pid = unsafe {
        crate::fork::start_child(
            flags,
            spec.cgroup.as_ref().and_then(|c| c.v2_dir()),
            &child,
            |e| Errcode::sys("create the container's namespaces (clone)", e),
        )
    }?;
    drop(child_end);
    Ok(Detached {
        pid,
        chan: parent_end,
        done: false,
        stops_for_hooks: stops_for_hooks(spec),
        seccomp_later: spec.seccomp_later,
        filter_sent: false,
        cgroup_later: spec.cgroup.is_some() && spec.cgroup_later,
    })
}

impl Detached {
    /// The container's pid on the host.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Writes the id maps of a new user namespace.
    pub fn write_id_maps(&self, map: &IdMap) -> Result<()> {
        crate::write_maps(self.pid, map)
    }

    /// Hands a process spawned with [`DetachedSpec::cgroup_later`] the rest of its cgroup,
    /// `entry` of the completed cgroup: it writes itself into each v1 hierarchy (its v2
    /// directory, if any, it was cloned into).
    pub fn join_cgroup(&mut self, entry: crabcan_cgroups::Entry) -> Result<()> {
        crate::hand_cgroup(self.chan.as_raw_fd(), &mut self.cgroup_later, entry)
    }

    /// Lets the child set up, handing it the mount descriptors.
    pub fn release(&mut self, mounts: Vec<OwnedFd>) -> Result<()> {
        if self.cgroup_later {
            return Err(Errcode::setup(
                "the container's process still waits for its cgroup (join_cgroup)",
            ));
        }
        crate::send_go(self.chan.as_raw_fd(), &mounts)
    }

    /// Sends a [`DetachedSpec::seccomp_later`] process its seccomp program, once, after
    /// [`Detached::release`] (and [`Detached::at_hooks`]).
    pub fn send_filter(&mut self, program: &crabcan_security::Compiled) -> Result<()> {
        if !self.seccomp_later || self.filter_sent {
            return Err(Errcode::setup(
                "the container's process waits for no seccomp program from crabcan",
            ));
        }
        self.filter_sent = true;
        crate::send_filter(self.chan.as_raw_fd(), program)
    }

    fn expect(&mut self, word: &[u8]) -> Result<()> {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match nix::sys::socket::recv(self.chan.as_raw_fd(), &mut buf, MsgFlags::empty())
            {
                Err(Errno::EINTR) => continue,
                // A process that ended with its seccomp program unread: the kernel says so
                // once, before what the process sent (its setup error), still queued.
                Err(Errno::ECONNRESET) if self.filter_sent => continue,
                r => r.sys_ctx(|| "read the container's setup result")?,
            };
            return match &buf[..n] {
                m if m == word => Ok(()),
                [] => Err(self.died()),
                m => Err(Errcode::decode(m).unwrap_or_else(|| {
                    Errcode::setup("the container's process reported an unreadable setup error")
                })),
            };
        }
    }

    fn died(&mut self) -> Errcode {
        let how = match nix::sys::wait::waitpid(self.pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exited with {c}"),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => format!("was killed by {s}"),
            Ok(other) => format!("stopped ({other:?})"),
            Err(e) => format!("vanished ({})", e.desc()),
        };
        self.done = true;
        Errcode::setup(format!("the container's process {how} during setup"))
    }

    /// Waits until the child's namespaces exist, runs `hooks` (the runtime-namespace
    /// hooks), then lets the child go on, giving it the states `hooks` returned (the JSON
    /// its own hooks get). Without hooks on either side the child does not stop: nothing
    /// runs.
    pub fn at_hooks(&mut self, hooks: impl FnOnce() -> Result<HookStates>) -> Result<()> {
        if !self.stops_for_hooks {
            return Ok(());
        }
        self.expect(AT_HOOKS)?;
        let states = hooks()?;
        let mut msg = GO_ON.to_vec();
        let len = u32::try_from(states.creating.len())
            .map_err(|_| Errcode::setup("the container's state is too long for its hooks"))?;
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&states.creating);
        msg.extend_from_slice(&states.created);
        nix::sys::socket::send(self.chan.as_raw_fd(), &msg, MsgFlags::empty())
            .sys_ctx(|| "let the container's process go on")?;
        Ok(())
    }

    /// Waits until the child is set up and blocked on the fifo; from then on it is on its
    /// own (the handle no longer kills it when dropped).
    pub fn wait_ready(mut self) -> Result<Pid> {
        // A process waiting for a program that never comes would hang create.
        if self.seccomp_later && !self.filter_sent {
            return Err(Errcode::setup(
                "the container's process waits for a seccomp program crabcan did not send",
            ));
        }
        self.expect(READY)?;
        self.done = true;
        Ok(self.pid)
    }
}

impl Drop for Detached {
    /// A child that did not reach the fifo is killed and reaped: a failed create leaves
    /// no process behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

fn child_main(spec: &DetachedSpec, parent_end: RawFd, chan: RawFd, in_v2: bool) -> ! {
    let code = match setup(spec, parent_end, chan, in_v2) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = nix::sys::socket::send(chan, &e.encode(), MsgFlags::empty());
            e.exit_code()
        }
    };
    // SAFETY: _exit is always safe; it skips the parent's atexit handlers and buffers.
    unsafe { libc::_exit(code) }
}

/// Whether the container's process is cloned non-dumpable: always, but where an ordinary
/// user writes the maps of a new user namespace itself (the kernel lets it write them only
/// into a dumpable process's /proc files, which it then owns).
fn born_undumpable(spec: &DetachedSpec) -> bool {
    spec.idmap.is_none() || nix::unistd::geteuid().is_root()
}

/// Whether the process stops once its namespaces exist, for the parent's hooks or to get
/// the state its own hooks read: without hooks, a round trip saved.
fn stops_for_hooks(spec: &DetachedSpec) -> bool {
    spec.runtime_hooks
        || !spec.create_container_hooks.is_empty()
        || !spec.start_container_hooks.is_empty()
}

/// Either the command runs (never returns) or an error comes back.
enum Never {}

fn send(chan: RawFd, word: &[u8]) -> Result<()> {
    nix::sys::socket::send(chan, word, MsgFlags::empty())
        .sys_ctx(|| "talk to the parent")
        .map(drop)
}

/// Receives the parent's go-on word and what follows it, whatever its length: the states
/// carry the config's annotations, which have no size limit of their own.
fn recv_go_on(chan: RawFd) -> Result<HookStates> {
    let msg = crate::recv_whole(chan, "wait for the parent")?;
    if msg.is_empty() {
        // The parent went away: create failed, nothing to report to.
        // SAFETY: see child_main.
        unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) }
    }
    let rest = msg
        .strip_prefix(GO_ON)
        .ok_or_else(|| Errcode::setup("unexpected message from the parent"))?;
    let bad = || Errcode::setup("malformed hook states from the parent");
    let (len, states) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| bad())?;
    if len > states.len() {
        return Err(bad());
    }
    let (creating, created) = states.split_at(len);
    Ok(HookStates {
        creating: creating.to_vec(),
        created: created.to_vec(),
    })
}

fn setup(spec: &DetachedSpec, parent_end: RawFd, chan: RawFd, in_v2: bool) -> Result<Never> {
    // SAFETY: the fd number came from the parent's socketpair and is not used here again.
    unsafe { libc::close(parent_end) };
    // Every other descriptor of crabcan's goes now: the state directory's lock (an flock
    // this process would otherwise hold for as long as the container lives), the root
    // crabcan opened, the caller's leftovers. Kept: stdio, the preserved ones, our own.
    let mut keep = vec![chan, spec.fifo.as_raw_fd()];
    keep.extend(spec.join.iter().map(|(_, fd)| fd.as_raw_fd()));
    keep.extend(spec.console.as_ref().map(|c| c.socket.as_raw_fd()));
    if let Some(c) = &spec.cgroup {
        keep.extend(c.fds().iter().map(AsRawFd::as_raw_fd));
    }
    close_others(3 + spec.preserve_fds as RawFd, &keep)?;
    // Made here rather than by the clone, while the parent goes on (see crate::spawn):
    // before any namespace is joined, so that it belongs to the same user namespace as
    // the clone's would.
    let net = if spec.new_namespaces.contains(CloneFlags::CLONE_NEWNET) {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .sys_ctx(|| "create the container's network namespace (unshare)")
    } else {
        Ok(())
    };
    // A failure here is held until the go, when the parent listens for it.
    let entered = match &spec.cgroup {
        // Its v2 directory now (unless cloned into it), its v1 ones once the parent made
        // them.
        // The message is read whatever came before, or the go would be taken for it.
        Some(c) if spec.cgroup_later => {
            let v2 = enter_cgroup(c, in_v2);
            let v1 = crate::recv_cgroup(chan).and_then(|v1| v1.enter_self(in_v2));
            v2.and(v1)
        }
        Some(c) => enter_cgroup(c, in_v2),
        None => Ok(()),
    };
    let count = spec
        .mounts
        .as_ref()
        .map_or(0, crabcan_mounts::handover_count);
    let trees = crate::wait_for_go(chan, count)?;
    net?;
    entered?;
    // Nothing of the container may inspect or ptrace this process, which runs crabcan's
    // code and holds its descriptors (host cgroup directories among them) until it execs.
    // Born so ([`born_undumpable`]), except where an ordinary user's runtime had to write
    // the id maps first: a non-dumpable process's /proc files belong to root. Only that
    // user's own processes on the host could reach it meanwhile, and they can reach the
    // runtime itself.
    nix::sys::prctl::set_dumpable(false).sys_ctx(|| "make the container's process non-dumpable")?;
    // Until create has recorded the container, its death must take this process along:
    // nothing would ever start or delete it. Cleared just before the container is handed
    // over (see below).
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).sys_ctx(|| "set the parent-death signal")?;
    if spec.idmap.is_some() {
        // SAFETY: the container's process has one thread (cloned without CLONE_THREAD,
        // and it starts none).
        unsafe { crate::ids::setresgid(0) }.sys_ctx(|| "take the container's root gid")?;
        // SAFETY: as above.
        unsafe { crate::ids::setresuid(0) }.sys_ctx(|| "take the container's root uid")?;
    }
    for (flag, fd) in &spec.join {
        nix::sched::setns(fd, *flag)
            .sys_ctx(|| format!("join the {} namespace (setns)", ns_name(*flag)))?;
    }
    // A session of its own, so the container cannot signal the caller's process group, and
    // a pty can become its controlling terminal.
    nix::unistd::setsid().sys_ctx(|| "start a new session (setsid)")?;
    if spec.new_namespaces.contains(CloneFlags::CLONE_NEWCGROUP) {
        // Cloned with it: the parent placed us in our cgroups after the clone, so the
        // namespace would be rooted at the parent's cgroup. Root it where we are now.
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .sys_ctx(|| "create the cgroup namespace")?;
    }
    if let Some(h) = &spec.hostname {
        crabcan_hostname::apply(h)?;
    }
    if let Some(d) = &spec.domainname {
        // SAFETY: setdomainname reads `len` bytes of a live buffer.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(Errcode::sys(
                format!("set the domain name {d}"),
                Errno::last(),
            ));
        }
    }
    let hook_states = if stops_for_hooks(spec) {
        send(chan, AT_HOOKS)?;
        recv_go_on(chan)?
    } else {
        HookStates::default()
    };
    for h in &spec.create_container_hooks {
        run_hook(h, &hook_states.creating, "createContainer")?;
    }
    // Before the mounts, through the /proc this process still sees: a sysctl is resolved
    // in the opener's namespaces (already the container's), and the container's own
    // /proc/sys is read-only once the mounts are done (runc writes them before it makes
    // the read-only paths, which crabcan's mount step does together with the rest).
    for (key, value) in &spec.sysctl {
        let path = PathBuf::from("/proc/sys").join(key);
        std::fs::write(&path, value.as_bytes()).map_err(|e| {
            Errcode::setup(format!(
                "cannot set sysctl {}: {e}",
                key.display().to_string().replace('/', ".")
            ))
        })?;
    }
    // Before the mounts too: through the /proc crabcan itself sees, not one the image's
    // symlinks could have redirected.
    if let Some(adj) = spec.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Errcode::setup(format!("cannot set oom_score_adj {adj}: {e}")))?;
    }
    if let Some(m) = &spec.mounts {
        crabcan_mounts::apply_with(m, trees)?;
    }
    if spec.loopback {
        net::loopback_up()?;
    }
    if let Some(p) = spec.personality {
        // SAFETY: personality takes an integer.
        if unsafe { libc::personality(p as libc::c_ulong) } < 0 {
            return Err(Errcode::sys(
                format!("set personality {p:#x}"),
                Errno::last(),
            ));
        }
    }
    if spec.new_keyring {
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a null name creates an anonymous keyring.
        let r = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                libc::KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            )
        };
        // A kernel without keyrings has nothing to share in the first place.
        if r < 0 && Errno::last() != Errno::ENOSYS {
            return Err(Errcode::sys("join a new session keyring", Errno::last()));
        }
    }
    for &(res, soft, hard) in &spec.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a valid pointer to an initialised struct.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            return Err(Errcode::sys(
                format!("set rlimit {res} to {soft}:{hard}"),
                Errno::last(),
            ));
        }
    }
    if let Some(c) = &spec.console {
        console(c)?;
    }
    // The program the parent made while this process set up, as late as it can come.
    let later;
    let security = if spec.seccomp_later {
        later = spec
            .security
            .clone()
            .with_seccomp(crate::recv_filter(chan)?);
        &later
    } else {
        &spec.security
    };
    // Without no_new_privs the filter needs CAP_SYS_ADMIN: it goes in now, before the
    // capabilities go (runc's order); with it, last, just before execve.
    crabcan_security::apply_seccomp_before_cap_drop(security)?;
    crabcan_security::apply_bounding(security)?;
    set_ids(spec)?;
    // Changing ids cleared it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).sys_ctx(|| "set the parent-death signal")?;
    if let Some(m) = spec.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m as libc::mode_t));
    }
    crate::exec::chdir_inside(&spec.cwd)?;
    let path = exec::resolve(&spec.argv, &spec.env)?;
    close_from(3 + spec.preserve_fds)?;
    // From here on nothing ties the container to create, which exits once it reads READY.
    nix::sys::prctl::set_pdeathsig(None).sys_ctx(|| "clear the parent-death signal")?;
    send(chan, READY)?;
    let go = wait_for_start(spec)?;
    for h in &spec.start_container_hooks {
        run_hook(h, &hook_states.created, "startContainer").inspect_err(|e| {
            eprintln!("crabcan: {e}");
        })?;
    }
    // Only now does start go on (to the poststart hooks): after the startContainer ones.
    nix::unistd::write(&go, b"0").sys_ctx(|| "tell start the container goes on")?;
    drop(go);
    SigSet::empty()
        .thread_set_mask()
        .sys_ctx(|| "restore the signal mask")?;
    // Whatever the runtime's caller ignored (nohup, a shell's background job): a command
    // that starts with SIGHUP or SIGINT ignored cannot even trap what its runtime passes on.
    crate::default_dispositions()?;
    crabcan_security::apply_final(security)?;
    let e = match nix::unistd::execve(&path, &spec.argv, &spec.env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    // Nobody listens on the channel any more: the container's stderr is where it shows.
    let err = Errcode::sys(format!("exec {}", path.to_string_lossy()), e);
    eprintln!("crabcan: {err}");
    Err(err)
}

/// Enters the container's cgroups (single-threaded, before anything that forks) and lets go
/// of their host directories: the process must hold nothing that leads to the host's
/// filesystem (see [`wait_for_start`]).
pub(crate) fn enter_cgroup(c: &crabcan_cgroups::Entry, in_v2: bool) -> Result<()> {
    c.enter_self(in_v2)?;
    for fd in c.fds() {
        // SAFETY: this process's copies of the parent's descriptors; the spec that owns them
        // is the parent's and is never dropped here (the process ends in exec or _exit).
        unsafe { libc::close(fd.as_raw_fd()) };
    }
    Ok(())
}

pub(crate) fn ns_name(flag: CloneFlags) -> &'static str {
    match flag {
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWNS => "mount",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWNET => "network",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "unknown",
    }
}

fn set_ids(spec: &DetachedSpec) -> Result<()> {
    let deny = spec.idmap.as_ref().is_some_and(|m| m.deny_setgroups);
    set_ids_of(spec.uid, spec.gid, &spec.additional_gids, deny)
}

/// Takes the process's final uid, gid and groups, keeping the permitted capabilities for
/// the final capability step. Only in a process with one thread: the container's, or the
/// one an exec forks into it (see [`crate::ids`]).
pub(crate) fn set_ids_of(uid: u32, gid: u32, additional_gids: &[u32], deny: bool) -> Result<()> {
    let groups = additional_gids;
    if !deny {
        // SAFETY: the callers' processes have one thread (above).
        unsafe { crate::ids::setgroups(groups) }.sys_ctx(|| "set the supplementary groups")?;
    } else if !groups.is_empty() {
        return Err(Errcode::setup(
            "additional groups cannot be set: setgroups is denied in this user namespace",
        ));
    }
    // A config may give a non-root user capabilities: keep the permitted set across the
    // uid change, so the final step can make them effective (it sets every set anyway).
    nix::sys::prctl::set_keepcaps(true).sys_ctx(|| "keep capabilities across setuid")?;
    // SAFETY: as for setgroups above.
    unsafe { crate::ids::setresgid(gid) }.sys_ctx(|| format!("set gid {gid} (setresgid)"))?;
    // SAFETY: as for setgroups above.
    unsafe { crate::ids::setresuid(uid) }.sys_ctx(|| format!("set uid {uid} (setresuid)"))?;
    nix::sys::prctl::set_keepcaps(false).sys_ctx(|| "clear keep-capabilities")
}

/// Closes every descriptor from `first` on except those in `keep`.
pub(crate) fn close_others(first: RawFd, keep: &[RawFd]) -> Result<()> {
    let mut fds = Vec::new();
    for e in
        std::fs::read_dir("/proc/self/fd").sys_ctx(|| "list open descriptors (/proc/self/fd)")?
    {
        let Ok(e) = e else { continue };
        if let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) {
            fds.push(fd);
        }
    }
    for fd in fds {
        if fd >= first && !keep.contains(&fd) {
            // SAFETY: closing a descriptor no Rust object of this process uses afterwards
            // (the listing's own one is gone already, the kept ones are skipped).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Marks every descriptor from `first` on close-on-exec.
pub(crate) fn close_from(first: u32) -> Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags here.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 {
        return Err(Errcode::sys(
            "mark inherited file descriptors close-on-exec (close_range)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// Blocks until `start` opens the fifo for reading; returns the fifo, on which one byte
/// tells start that the command is about to run.
///
/// The process waits in the container's pid namespace, where a neighbour with
/// CAP_SYS_PTRACE may open its descriptors through /proc/PID/fd: a descriptor of a host
/// directory (the state directory) would let it walk the host's filesystem and rewrite
/// crabcan's records. So the process holds only an `O_PATH` descriptor of the fifo itself,
/// which leads nowhere else (a fifo has no `..`), and reopens it for writing through its
/// own /proc/self/fd. Opening the fifo for writing before the root switch is no option:
/// that open blocks until `start`, and the setup must be done by then.
fn wait_for_start(spec: &DetachedSpec) -> Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", spec.fifo.as_raw_fd());
    loop {
        match nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOENT) => {
                return Err(Errcode::setup(
                    "wait for start: exec.fifo cannot be reopened through /proc/self/fd \
                     (no /proc of the container's pid namespace in its root)",
                ));
            }
            r => return r.sys_ctx(|| "wait for start (open exec.fifo)"),
        }
    }
}

/// Opens a pty in the container, sends its master over the console socket, and makes its
/// slave the process's controlling terminal and stdio.
pub(crate) fn console(c: &Console) -> Result<()> {
    let pty = crate::tty::open(c.size)?;
    crate::tty::send_master(
        c.socket.as_raw_fd(),
        &pty.master,
        None,
        pty.name.as_bytes(),
        "over the console socket",
    )?;
    drop(pty.master);
    crate::tty::attach(pty.slave)
}

/// Runs a hook the container's process runs itself: fork, exec with the state on stdin,
/// wait within its timeout.
fn run_hook(h: &ChildHook, state: &[u8], kind: &str) -> Result<()> {
    let fail = |why: String| {
        Errcode::setup(format!(
            "{kind} hook {} failed: {why}",
            h.path.to_string_lossy()
        ))
    };
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_ctx(|| "create a pipe for a hook")?;
    // SAFETY: single-threaded; the child only dup2s, execs or _exits.
    match unsafe { nix::unistd::fork() }.sys_ctx(|| "fork a hook")? {
        nix::unistd::ForkResult::Child => {
            // A group of its own, so that a timeout kills whatever the hook started too.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            // SAFETY: dup2 onto stdin of this fresh process.
            unsafe { libc::dup2(rd.as_raw_fd(), 0) };
            let _ = nix::unistd::execve(&h.path, &h.args, &h.env);
            // SAFETY: see child_main.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(rd);
            // A hook that does not read its stdin must not block us: the state is small
            // and fits the pipe's buffer.
            let _ = nix::unistd::write(&wr, state);
            drop(wr);
            let deadline = h.timeout.map(|t| std::time::Instant::now() + t);
            loop {
                match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => return Ok(()),
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => {
                        return Err(fail(format!("exit status {c}")));
                    }
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => {
                        return Err(fail(format!("killed by {s}")));
                    }
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(Errcode::sys("wait for a hook", e)),
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    let _ = nix::sys::signal::killpg(child, Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(fail("timed out".into()));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
