//! The container's process bootstrap: one `clone` into new namespaces, the parent/child
//! channel, the id maps, the ordered setup in the child, and `execve`.
//!
//! In the child, while the parent maps its ids: loopback up in its network namespace, its
//! hostname, its cgroup (one made whole before the clone); after the parent's go: container
//! root's ids, non-dumpable, mounts and `pivot_root`, the rest of a cgroup made in two steps
//! (before the mounts when one of them is a cgroup mount), the cgroup namespace; then (in
//! the command's process, started by the
//! child acting as the container's init unless [`ChildSpec::init`] is off: in the init's
//! memory until its exec, or forked when it takes other ids)
//! rlimits, capability bounding set, ids, working directory, fds marked close-on-exec,
//! signal mask, then capabilities, no_new_privs and seccomp last, and `execve`.
//!
//! The steps are separate so a front end can hold the child before exec:
//! [`spawn`] clones a child that enters its cgroup by itself and waits;
//! [`Container::write_id_maps`] maps its ids; [`Container::release`] lets it set up and exec
//! and reports a setup failure (a failure to enter the cgroup included);
//! [`Container::wait`] forwards signals and returns its status.

mod detached;
mod exec;
mod exec_join;
mod fork;
mod guardian;
mod idalloc;
mod idmap;
mod ids;
mod init;
mod net;
mod sealed;
mod tty;

pub use detached::{ChildHook, Console, Detached, DetachedSpec, HookStates, spawn_detached};
pub use exec::{DEFAULT_PATH, argv, candidates, environment, resolve};
pub use exec_join::{ExecSpec, JoinNs, exec_in};
pub use guardian::{Guardian, guardian};
pub use idalloc::{
    IdLease, LEASE_PREFIX, POOL_BASE, POOL_SLOTS, Pool, Slot, allocate_ids, host_pool,
};
pub use idmap::{HostRanges, IdMap, ROOT_RANGE, Range, SubIds, lookup_subids, parse_subids};
pub use init::INIT_FORWARDS;
pub use sealed::{ImageUse, ProtectedImage, exe_writable_by, protected_image, reexec_sealed};
pub use tty::{PtyEnds, Tty, set_window_size, window_size};

use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{Pid, Uid};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Signals sent to crabcan that are passed on to the container.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Leads the message that hands over a cgroup's v1 hierarchies ([`Meanwhile::cgroup`],
/// [`Detached::join_cgroup`]): the directories follow, NUL-separated, their `tasks` files
/// as descriptors.
const CGROUP_MESSAGE: &[u8] = b"c";

/// Sent by the child just before `execve`, so the parent can tell exec from a silent death.
const EXEC_MARKER: &[u8] = b"exec";
/// The parent's message with the seccomp program ([`ChildSpec::seccomp_later`]).
const FILTER_MESSAGE: &[u8] = b"filter:";

/// Stack for the cloned child; it runs setup code only, then execs.
pub(crate) const CHILD_STACK: usize = 1024 * 1024;

/// Network mode of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Its own network namespace with loopback up.
    None,
    /// The host's network.
    Host,
}

/// Everything the child needs, decided before the clone.
#[derive(Debug)]
pub struct ChildSpec {
    /// The command and its arguments.
    pub argv: Vec<CString>,
    /// The command's environment.
    pub env: Vec<CString>,
    /// Working directory inside the container.
    pub workdir: PathBuf,
    /// Hostname in the new UTS namespace.
    pub hostname: String,
    /// uid and gid the command runs as inside.
    pub uid: u32,
    /// The user namespace's id map.
    pub idmap: IdMap,
    /// The mount plan applied in the child.
    pub mounts: crabcan_mounts::MountPlan,
    /// Network mode.
    pub net: Net,
    /// Capabilities, no_new_privs and seccomp.
    pub security: crabcan_security::SecurityPlan,
    /// The seccomp program is not in `security` but comes from the parent after the
    /// release ([`Container::release_with`]), compiled while this process sets up.
    pub seccomp_later: bool,
    /// Resource limits set on the command's process.
    pub rlimits: Vec<crabcan_security::RlimitSpec>,
    /// A crabcan init is PID 1 and the command its child (otherwise the command is PID 1).
    pub init: bool,
    /// Give the command a pty of its own as controlling terminal and stdio.
    pub tty: Option<Tty>,
}

/// A cloned container process and crabcan's end of the channel to it.
pub struct Container {
    pid: Pid,
    chan: OwnedFd,
    reaped: Option<i32>,
    pty: Option<PtyEnds>,
    /// The process waits for its seccomp program ([`ChildSpec::seccomp_later`]).
    seccomp_later: bool,
    /// The process waits for its v1 cgroups ([`Joining::Later`]).
    cgroup_later: bool,
}

/// What crabcan makes while a released process sets up, and hands it then
/// ([`Container::release_with`]): its setup, the mounts above all, takes as long.
#[derive(Default)]
pub struct Meanwhile<'a> {
    /// Completes the cgroup of a process spawned with [`Joining::Later`] and gives its
    /// entry; the process enters the v1 hierarchies once its mounts are made (first, when
    /// one of them is a cgroup mount, which shows the cgroup namespace).
    pub cgroup: Option<Box<dyn FnOnce() -> Result<crabcan_cgroups::Entry> + 'a>>,
    /// Makes the seccomp program of a [`ChildSpec::seccomp_later`] process.
    pub filter: Option<Box<dyn FnOnce() -> Result<crabcan_security::Compiled> + 'a>>,
    /// The caller's own work, done once the rest is sent, while the process still sets up.
    pub then: Option<Box<dyn FnOnce() + 'a>>,
}

/// The signals the parent takes with `sigwait`: the forwarded ones and SIGCHLD.
fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the signals crabcan forwards (and SIGCHLD) so the parent can take them with
/// `sigwait`; returns the previous mask, which the child restores before exec.
pub fn block_signals() -> Result<SigSet> {
    let set = waited_signals();
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .sys_ctx(|| "block signals")?;
    Ok(old)
}

/// Refuses to go on when this process has more than one thread: a fork or clone copies
/// only the calling thread, so a lock another thread held (the allocator's) stays locked in
/// the copy, and `setns` into a user or mount namespace refuses a threaded caller. The
/// functions that fork call it first, so that they are safe to call whatever the caller.
pub fn ensure_single_threaded(what: &str) -> Result<()> {
    // The kernel counts the threads in the link count of /proc/self/task (two, plus one per
    // thread): one stat. Where it says less than one thread, the tasks are listed instead.
    // Not the thread count in /proc/self/stat: the kernel builds the whole stat line
    // (times, memory) for that.
    let cannot =
        |e: std::io::Error| Errcode::setup(format!("{what}: cannot read /proc/self/task: {e}"));
    let links = std::os::unix::fs::MetadataExt::nlink(
        &std::fs::metadata("/proc/self/task").map_err(cannot)?,
    );
    let threads = match usize::try_from(links.saturating_sub(2)) {
        Ok(n) if n >= 1 => n,
        _ => {
            count_entries(std::fs::read_dir("/proc/self/task").map_err(cannot)?).map_err(cannot)?
        }
    };
    if threads == 0 {
        return Err(Errcode::setup(format!(
            "{what}: /proc/self/task lists no thread, so it cannot tell how many this process has"
        )));
    }
    if threads > 1 {
        return Err(Errcode::setup(format!(
            "{what}: the calling process has {threads} threads; it must have one (a fork \
             copies only the calling thread)"
        )));
    }
    Ok(())
}

/// How many entries a directory listing holds. An error part-way is an error, not the end
/// of the listing: a listing cut short must not pass for a single thread.
fn count_entries<T>(listing: impl Iterator<Item = std::io::Result<T>>) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in listing {
        entry?;
        n += 1;
    }
    Ok(n)
}

/// How the container's process enters its cgroup (see [`crabcan_cgroups::Entry`]): cloned
/// into the v2 directory where `clone3` allows it, and writing itself into each v1
/// hierarchy. Its copies of the entry's descriptors are closed once it is in; a failure to
/// enter is its setup error, reported by [`Container::release`].
pub enum Joining<'a> {
    /// It has no cgroup.
    None,
    /// The cgroup is made: the process enters the v1 hierarchies first thing, while the
    /// caller writes its id maps.
    Now(&'a crabcan_cgroups::Entry),
    /// Only the v2 directory is made, this entry's
    /// ([`crabcan_cgroups::ContainerCgroup::create_v2_first`]): the process waits for the
    /// v1 hierarchies, which the caller makes once it has released the process and hands
    /// over while the process makes its mounts ([`Meanwhile::cgroup`]).
    Later(&'a crabcan_cgroups::Entry),
}

/// Clones the container's process into new namespaces. It waits for
/// [`Container::release`] before doing anything. Refuses a multi-threaded caller.
///
/// The network namespace (with [`Net::None`]) is the clone's, like the others: the
/// kernel takes about half a millisecond for it, the longest of the namespaces, and
/// nothing of the caller's is left to overlap it (the caller's id maps need the clone
/// done, and the cgroup is completed later, while the process makes its mounts:
/// [`Meanwhile::cgroup`]). Made by the process itself after the clone, it took longer in
/// all (paired runs, 2.5%).
pub fn spawn(spec: &ChildSpec, saved_mask: &SigSet, cgroup: Joining<'_>) -> Result<Container> {
    ensure_single_threaded("start the container's process")?;
    // Read here once, the process has it from this one's memory (a file read less in its
    // last steps before exec); an error is the process's own, where it needs the number.
    let _ = crabcan_security::kernel_last_cap();
    let (parent_end, child_end) = crate::channel()?;
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC;
    if matches!(spec.net, Net::None) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let parent_raw = parent_end.as_raw_fd();
    let child_raw = child_end.as_raw_fd();
    let child = |in_v2: bool| -> isize {
        child_main(spec, parent_raw, child_raw, saved_mask, &cgroup, in_v2)
    };
    let v2 = match &cgroup {
        Joining::Now(e) | Joining::Later(e) => e.v2_dir(),
        Joining::None => None,
    };
    // SAFETY: the caller is single-threaded (checked above); the child only runs
    // `child_main`, which ends in exec or _exit.
    let pid = unsafe { fork::start_child(flags, v2, &child, |e| userns_error(e, flags)) }?;
    drop(child_end);
    Ok(Container {
        pid,
        chan: parent_end,
        reaped: None,
        pty: None,
        seccomp_later: spec.seccomp_later,
        cgroup_later: matches!(cgroup, Joining::Later(_)),
    })
}

fn userns_error(e: Errno, flags: CloneFlags) -> Errcode {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let knobs = UsernsKnobs {
        max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        root: Uid::effective().is_root(),
    };
    let base = Errcode::sys("create the container's namespaces (clone)", e);
    match clone_hint(e, flags, &knobs) {
        Some(h) => base.with_hint(h),
        None => base,
    }
}

/// The kernel settings that decide whether a user namespace may be created.
#[derive(Debug, Default)]
struct UsernsKnobs {
    max_user_namespaces: Option<String>,
    unprivileged_userns_clone: Option<String>,
    apparmor_restrict: Option<String>,
    root: bool,
}

/// Names the setting that refused the clone, and how to allow it.
fn clone_hint(e: Errno, flags: CloneFlags, k: &UsernsKnobs) -> Option<&'static str> {
    if k.max_user_namespaces.as_deref() == Some("0") {
        return Some(
            "user namespaces are disabled by the sysctl user.max_user_namespaces=0; \
             allow them with: sysctl -w user.max_user_namespaces=15000",
        );
    }
    if !k.root {
        if k.unprivileged_userns_clone.as_deref() == Some("0") {
            return Some(
                "unprivileged user namespaces are disabled by the sysctl \
                 kernel.unprivileged_userns_clone=0; allow them with: \
                 sysctl -w kernel.unprivileged_userns_clone=1",
            );
        }
        if k.apparmor_restrict.as_deref() == Some("1") {
            return Some(
                "AppArmor restricts unprivileged user namespaces \
                 (kernel.apparmor_restrict_unprivileged_userns=1); allow them with: \
                 sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or run as root",
            );
        }
    }
    match e {
        Errno::ENOSPC => Some("a namespace limit in /proc/sys/user/ is reached"),
        Errno::EINVAL if flags.contains(CloneFlags::CLONE_NEWNET) => Some(
            "this kernel may lack user or network namespace support (CONFIG_USER_NS, \
             CONFIG_NET_NS)",
        ),
        Errno::EINVAL if flags.contains(CloneFlags::CLONE_NEWUSER) => {
            Some("this kernel may lack user namespace support (CONFIG_USER_NS)")
        }
        _ => None,
    }
}

impl Container {
    /// The container's pid on the host.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Writes the child's uid map, setgroups policy and gid map (through `newuidmap` and
    /// `newgidmap` when the map uses the caller's subordinate ids).
    pub fn write_id_maps(&self, map: &IdMap) -> Result<()> {
        write_maps(self.pid, map)
    }

    /// Opens the container's user namespace (for idmapped mounts made by the parent).
    pub fn userns(&self) -> Result<OwnedFd> {
        nix::fcntl::open(
            format!("/proc/{}/ns/user", self.pid).as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .sys_ctx(|| "open the container's user namespace")
    }

    /// Lets the child set up and exec, handing it `mounts` (the descriptors its mount plan
    /// needs from outside: `crabcan_mounts::handover`); returns once it has exec'd, or its
    /// setup error. With [`ChildSpec::tty`], the pty's master has arrived by then
    /// ([`Container::take_pty`]).
    pub fn release(&mut self, mounts: Vec<OwnedFd>) -> Result<()> {
        self.release_with(mounts, Meanwhile::default())
    }

    /// [`Container::release`], handing the process what `meanwhile` makes while it sets up:
    /// the rest of its cgroup, then its seccomp program. An error of either is this call's
    /// (the process, waiting for what never came, is killed on drop).
    pub fn release_with(&mut self, mounts: Vec<OwnedFd>, meanwhile: Meanwhile<'_>) -> Result<()> {
        let Meanwhile {
            cgroup,
            filter,
            then,
        } = meanwhile;
        // A process waiting for what never comes would hang the run; one that is sent what
        // it does not wait for would run without it.
        if filter.is_some() != self.seccomp_later {
            return Err(Errcode::setup(
                "the container's process and crabcan disagree on who makes its seccomp program",
            ));
        }
        if cgroup.is_some() != self.cgroup_later {
            return Err(Errcode::setup(
                "the container's process and crabcan disagree on who completes its cgroup",
            ));
        }
        let sent_late = self.cgroup_later || self.seccomp_later;
        send_go(self.chan.as_raw_fd(), &mounts)?;
        drop(mounts);
        if let Some(c) = cgroup {
            hand_cgroup_to_setup(self.chan.as_raw_fd(), &mut self.cgroup_later, c()?)?;
        }
        if let Some(f) = filter {
            send_filter(self.chan.as_raw_fd(), &f()?)?;
        }
        if let Some(t) = then {
            t();
        }
        // The child sends EXEC_MARKER right before execve; then either an error (exec
        // failed) or EOF (the channel is CLOEXEC: exec succeeded). EOF without the marker
        // means the child died during setup without a word (killed by a signal).
        let mut buf = vec![0u8; 8192];
        let mut marker = false;
        loop {
            let (n, mut fds) = match recv_with_fds(self.chan.as_raw_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                // A process that ended with its cgroup or seccomp program unread: the kernel
                // says so once, before what the process sent (its setup error), still queued.
                Err(Errno::ECONNRESET) if sent_late => continue,
                r => r.sys_ctx(|| "read the container's setup result")?,
            };
            match &buf[..n] {
                [] if marker => return Ok(()),
                [] => return Err(self.died_in_setup()),
                m if m == EXEC_MARKER => marker = true,
                m if m == tty::PTY_MESSAGE && fds.len() == 2 => {
                    let slave = fds.pop();
                    self.pty = fds
                        .pop()
                        .zip(slave)
                        .map(|(master, slave)| PtyEnds { master, slave });
                }
                m => {
                    return Err(Errcode::decode(m).unwrap_or_else(|| {
                        Errcode::setup("the container's process reported an unreadable setup error")
                    }));
                }
            }
        }
    }

    /// The command's pty ([`ChildSpec::tty`]), once [`Container::release`] has returned.
    pub fn take_pty(&mut self) -> Option<PtyEnds> {
        self.pty.take()
    }

    /// The container's exit code (128+N when killed by signal N) if it has ended; does not
    /// block.
    pub fn try_wait(&mut self) -> Result<Option<i32>> {
        if let Some(c) = self.reaped {
            return Ok(Some(c));
        }
        loop {
            return match nix::sys::wait::waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => Ok(Some(self.reap(c))),
                Ok(WaitStatus::Signaled(_, s, _)) => Ok(Some(self.reap(128 + s as i32))),
                Err(Errno::EINTR) => continue,
                Ok(_) => Ok(None),
                Err(e) => Err(Errcode::sys("wait for the container", e)),
            };
        }
    }

    /// Passes `sig` on to the container's first process, unless it has been reaped.
    pub fn forward(&self, sig: Signal) {
        if self.reaped.is_none() {
            log::debug!("forwarding {sig} to the container");
            let _ = nix::sys::signal::kill(self.pid, sig);
        }
    }

    fn died_in_setup(&mut self) -> Errcode {
        let how = match nix::sys::wait::waitpid(self.pid, None) {
            Ok(WaitStatus::Exited(_, c)) => {
                self.reaped = Some(c);
                format!("exited with {c}")
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                self.reaped = Some(128 + s as i32);
                format!("was killed by {s}")
            }
            Ok(other) => format!("stopped ({other:?})"),
            Err(e) => format!("vanished ({})", e.desc()),
        };
        Errcode::setup(format!("the container's process {how} during setup"))
    }

    /// Waits for the container to end, forwarding [`FORWARDED`] signals to it. Returns its
    /// exit code (128+N when killed by signal N). Signals must be blocked ([`block_signals`]).
    pub fn wait(&mut self) -> Result<i32> {
        if let Some(c) = self.reaped {
            return Ok(c);
        }
        let code = wait_pid(self.pid)?;
        Ok(self.reap(code))
    }

    fn reap(&mut self, code: i32) -> i32 {
        self.reaped = Some(code);
        code
    }

    /// Kills the container (if still running) and reaps it.
    pub fn kill(&mut self) {
        if self.reaped.is_none() {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
            self.reaped = Some(128 + Signal::SIGKILL as i32);
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Receives one message and the descriptors sent with it (close-on-exec; room for two).
fn recv_with_fds(chan: RawFd, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE(2 * size_of::<RawFd>() as u32) };
    let mut cbuf = vec![0u8; space as usize];
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        chan,
        &mut iov,
        Some(&mut cbuf),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
            // SAFETY: the kernel installed these descriptors in our table for us.
            fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((msg.bytes, fds))
}

/// Writes `pid`'s uid map, setgroups policy and gid map.
pub(crate) fn write_maps(pid: Pid, map: &IdMap) -> Result<()> {
    if map.use_helpers {
        run_helper("newuidmap", pid, &map.uids)?;
        return run_helper("newgidmap", pid, &map.gids);
    }
    let dir = format!("/proc/{}", pid);
    let write = |file: &str, text: &str| {
        std::fs::write(format!("{dir}/{file}"), text).sys_ctx(|| {
            format!(
                "write {file} of the container ({})",
                text.trim().replace('\n', "; ")
            )
        })
    };
    write("uid_map", &map.uid_map())?;
    if map.deny_setgroups {
        write("setgroups", "deny")?;
    }
    write("gid_map", &map.gid_map())
}

/// Waits for the child `pid` to end, forwarding [`FORWARDED`] signals to it; returns its
/// exit code (128+N when killed by signal N). Blocks those signals itself.
pub fn wait_forwarding(pid: Pid) -> Result<i32> {
    block_signals()?;
    wait_pid(pid)
}

fn wait_pid(pid: Pid) -> Result<i32> {
    let set = waited_signals();
    loop {
        match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Errcode::sys("wait for the container", e)),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(sig) => {
                log::debug!("forwarding {sig} to the container");
                let _ = nix::sys::signal::kill(pid, sig);
            }
            Err(e) => return Err(Errcode::sys("wait for signals", e)),
        }
    }
}

/// Runs the setuid helper `name` to write a multi-range id map for `pid`.
fn run_helper(name: &str, pid: Pid, ranges: &[Range]) -> Result<()> {
    let path = idmap::helper_path(name).ok_or_else(|| {
        Errcode::setup(format!("cannot write the id map: {name} is not installed"))
    })?;
    let out = std::process::Command::new(&path)
        .arg(pid.to_string())
        .args(IdMap::helper_args(ranges))
        .stdin(std::process::Stdio::null())
        .output()
        .sys_ctx(|| format!("run {}", path.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let why = why
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(Errcode::setup(format!(
        "{name} {pid} {} failed ({}): {why}",
        IdMap::helper_args(ranges).join(" "),
        out.status
    ))
    .with_hint("check the caller's ranges in /etc/subuid and /etc/subgid"))
}

/// The child's side. Never returns to the caller's code: it execs or `_exit`s. `in_v2`: it
/// was cloned into the cgroup v2 directory of `cgroup`.
fn child_main(
    spec: &ChildSpec,
    parent_end: i32,
    chan: i32,
    mask: &SigSet,
    cgroup: &Joining<'_>,
    in_v2: bool,
) -> ! {
    let code = match setup_and_exec(spec, parent_end, chan, mask, cgroup, in_v2) {
        Ok(()) => 0,
        Err(e) => {
            let _ = nix::sys::socket::send(chan, &e.encode(), MsgFlags::empty());
            e.exit_code()
        }
    };
    // SAFETY: _exit is always safe; it skips the parent's atexit handlers and buffers.
    unsafe { libc::_exit(code) }
}

/// The parent/child channel: a seqpacket pair, so that each message arrives whole (and
/// descriptors with it), both ends close-on-exec.
pub(crate) fn channel() -> Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .sys_ctx(|| "create the parent/child socket pair")
}

/// The parent's go ([`wait_for_go`]), with the descriptors the process's mounts need.
pub(crate) fn send_go(chan: RawFd, mounts: &[OwnedFd]) -> Result<()> {
    let fds: Vec<RawFd> = mounts.iter().map(AsRawFd::as_raw_fd).collect();
    let iov = [std::io::IoSlice::new(b"g")];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let cmsgs: &[nix::sys::socket::ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    nix::sys::socket::sendmsg::<()>(chan, &iov, cmsgs, MsgFlags::empty(), None)
        .sys_ctx(|| "release the container's process")?;
    Ok(())
}

/// Receives one message on the channel into `buf`, with up to `max_fds` descriptors
/// (close-on-exec): its length, whether it or its descriptors were cut short, and the
/// descriptors. `what` names the message in errors.
fn recv_fds(
    chan: RawFd,
    buf: &mut [u8],
    max_fds: usize,
    what: &str,
) -> Result<(usize, bool, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE((max_fds * size_of::<RawFd>()) as u32) };
    let mut cbuf = vec![0u8; space as usize];
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut *buf)];
        match nix::sys::socket::recvmsg::<()>(
            chan,
            &mut iov,
            Some(&mut cbuf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Errcode::sys(format!("wait for {what}"), e)),
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().sys_ctx(|| format!("read {what}"))? {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
                        // SAFETY: the kernel installed these fds in our table for us.
                        fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                return Ok((msg.bytes, truncated, fds));
            }
        }
    }
}

/// Waits for the parent's go; returns the fds that came with it.
pub(crate) fn wait_for_go(chan: i32, expected: usize) -> Result<Vec<OwnedFd>> {
    let mut go = [0u8; 1];
    // Room for `expected` fds, plus one to notice a surplus.
    let (n, _, fds) = recv_fds(chan, &mut go, expected + 1, "the parent's go")?;
    if n == 0 {
        // crabcan went away before releasing us: nothing to set up, nobody to tell.
        // SAFETY: see child_main.
        unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) };
    }
    if fds.len() != expected {
        return Err(Errcode::setup(format!(
            "the parent handed over {} mount descriptors, {expected} were expected",
            fds.len()
        )));
    }
    Ok(fds)
}

/// Sends the message [`recv_cgroup`] reads: the v1 hierarchies of `entry`.
pub(crate) fn send_cgroup(chan: RawFd, entry: crabcan_cgroups::Entry) -> Result<()> {
    let tasks = entry.into_v1();
    let mut msg = CGROUP_MESSAGE.to_vec();
    for (i, (dir, _)) in tasks.iter().enumerate() {
        if i > 0 {
            msg.push(0);
        }
        msg.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()));
    }
    let fds: Vec<RawFd> = tasks.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(&msg)];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let cmsgs: &[nix::sys::socket::ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    nix::sys::socket::sendmsg::<()>(chan, &iov, cmsgs, MsgFlags::empty(), None)
        .sys_ctx(|| "hand the container's process its cgroup")?;
    Ok(())
}

/// Closes this process's copies of the descriptors of the parent's `entry` (the spec that
/// owns them is the parent's and is never dropped here: the process ends in exec or _exit).
fn close_copies(entry: &crabcan_cgroups::Entry) {
    for fd in entry.fds() {
        // SAFETY: see above; the numbers are not used here again.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
}

/// Receives the message of [`send_cgroup`]: the v1 hierarchies to enter.
pub(crate) fn recv_cgroup(chan: i32) -> Result<crabcan_cgroups::Entry> {
    /// More than any host mounts hierarchies.
    const MAX_FDS: usize = 64;
    // The directories are under the caller's cgroups, whose paths may be kilobytes long:
    // the message's length comes first (a seqpacket message not read whole is cut short).
    // A peek with no room for descriptors installs none.
    let size = loop {
        match nix::sys::socket::recv(chan, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Err(Errno::EINTR) => continue,
            r => break r.sys_ctx(|| "wait for the container's cgroup")?,
        }
    };
    let mut buf = vec![0u8; size.max(1)];
    let (n, truncated, fds) = recv_fds(chan, &mut buf, MAX_FDS, "the container's cgroup")?;
    if n == 0 {
        // crabcan went away before handing the cgroup over: nobody to tell.
        // SAFETY: see child_main.
        unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) };
    }
    let Some(dirs) = buf[..n].strip_prefix(CGROUP_MESSAGE) else {
        return Err(Errcode::setup(
            "the parent sent something else than the container's cgroup",
        ));
    };
    let dirs: Vec<PathBuf> = if dirs.is_empty() {
        Vec::new()
    } else {
        dirs.split(|&b| b == 0)
            .map(|d| {
                PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(d))
            })
            .collect()
    };
    if truncated {
        return Err(Errcode::setup(format!(
            "the container's cgroup arrived cut short ({n} bytes, {} descriptors, at most \
             {MAX_FDS} taken)",
            fds.len()
        )));
    }
    if dirs.len() != fds.len() {
        return Err(Errcode::setup(format!(
            "the parent handed over {} cgroup descriptors for {} directories",
            fds.len(),
            dirs.len()
        )));
    }
    Ok(crabcan_cgroups::Entry::of_v1(
        dirs.into_iter().zip(fds).collect(),
    ))
}

fn setup_and_exec(
    spec: &ChildSpec,
    parent_end: i32,
    chan: i32,
    mask: &SigSet,
    cgroup: &Joining<'_>,
    in_v2: bool,
) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).sys_ctx(|| "set the parent-death signal")?;
    // Our copy of the parent's end must go, or we would never see EOF if crabcan dies.
    // SAFETY: the fd number came from the parent's socketpair and is not used here again.
    unsafe { libc::close(parent_end) };
    // The loopback up and the hostname, while the parent writes the id maps: the process
    // has every capability in its user namespace from the start.
    let net = match spec.net {
        Net::None => net::loopback_up(),
        Net::Host => Ok(()),
    };
    let named = crabcan_hostname::apply(&spec.hostname);
    // Into the cgroups before anything can fork, and while the parent writes the id maps
    // (the writes check the credentials of the descriptors' opener, the parent, against
    // this process's ids, still crabcan's here). The descriptors lead to the host's cgroup
    // tree: they go at once, since the init never execs. A failure is held until the go,
    // when the parent listens for it.
    let entered = match cgroup {
        Joining::Now(c) => detached::enter_cgroup(c, in_v2),
        Joining::Later(c) => {
            // A plain clone (a kernel without clone3, or a seccomp filter refusing it, as
            // container engines' default profiles do) left the process outside its v2
            // directory, which the message does not name: it enters from here, or it
            // would run without the limits and device rules that live there.
            let v2 = c.enter_self(in_v2);
            close_copies(c);
            v2
        }
        Joining::None => Ok(()),
    };
    let trees = wait_for_go(chan, crabcan_mounts::handover_count(&spec.mounts))?;
    net?;
    named?;
    log::debug!("hostname set to {}", spec.hostname);
    entered?;
    // The id maps are written now. Until this process takes the container's root ids it
    // still carries crabcan's host ids, which the map need not contain (--userns-base), and
    // files it creates (mount points on the /dev tmpfs) would have no owner there.
    become_root(&spec.idmap)?;
    // Changing ids cleared the parent-death signal; and no process of the container may
    // inspect or ptrace this one, which holds crabcan's memory and fds until it execs.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).sys_ctx(|| "set the parent-death signal")?;
    nix::sys::prctl::set_dumpable(false).sys_ctx(|| "make the container's init non-dumpable")?;
    // A session of its own: otherwise the container (root inside may be root outside) could
    // signal crabcan's whole process group on the host with kill(0, …), and a terminal's
    // Ctrl-C would reach it twice (directly and forwarded). It keeps stdio, not the tty.
    nix::unistd::setsid().sys_ctx(|| "start a new session (setsid)")?;
    // The v1 hierarchies of a cgroup completed after the go come while the mounts are made
    // (the parent makes them meanwhile), unless a cgroup mount needs them first. Nothing
    // forks before they are entered, and only crabcan's code runs. This process has the
    // container's root ids by now: the kernel lets a v1 `tasks` write by the global root
    // move it (the parent spawns with Joining::Later only as that: see crabcan_runtime).
    let v1_later = matches!(cgroup, Joining::Later(_));
    let join_first = !v1_later || spec.mounts.mounts_cgroup();
    if join_first {
        enter_cgroup_rest(chan, v1_later, in_v2)?;
    }
    crabcan_mounts::apply_with(&spec.mounts, trees)?;
    log::debug!("mounts applied, root pivoted");
    if !join_first {
        enter_cgroup_rest(chan, v1_later, in_v2)?;
    }
    if !spec.init {
        return command(spec, chan, mask);
    }
    init::block().sys_ctx(|| "block the signals the init forwards")?;
    let run_command = || {
        // A process group of its own: a kill(0, …) inside reaches the command's group,
        // not the init. With a pty, a session of its own too: the pty becomes its
        // controlling terminal, for job control (the init's session has none).
        if spec.tty.is_some() {
            let _ = nix::unistd::setsid();
        } else {
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        }
        let e = match command(spec, chan, mask) {
            Ok(()) => Errcode::setup("the command returned without exec"),
            Err(e) => e,
        };
        let _ = nix::sys::socket::send(chan, &e.encode(), MsgFlags::empty());
        // SAFETY: see child_main.
        unsafe { libc::_exit(e.exit_code()) }
    };
    let started = if spec.uid == 0 {
        // SAFETY: the init is single-threaded; `run_command` ends in exec or _exit.
        unsafe { fork::spawn_sharing_memory(&run_command) }
    } else {
        // A command that takes other ids gets memory of its own: a change of ids makes a
        // process's memory dumpable where the host's fs.suid_dumpable says so, and memory
        // the init shares must never be, not even for a moment.
        // SAFETY: the init is single-threaded (cloned without CLONE_THREAD and never spawns
        // threads); the forked process only runs `command`, which ends in exec or _exit.
        unsafe { nix::unistd::fork() }.map(|f| match f {
            nix::unistd::ForkResult::Child => {
                run_command();
                // SAFETY: see child_main (`run_command` never returns).
                unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        })
    };
    let child = started.map_err(|e| {
        let err = Errcode::sys("fork the command from the init", e);
        if e == Errno::EAGAIN {
            // The init is the container's first process: the second one is refused only by
            // a process limit, the pids cgroup's or the nproc rlimit.
            err.with_hint("the container's process limit allows no second process; raise it")
        } else {
            err
        }
    })?;
    // Only the command keeps the channel: its exec closes it, which the parent reads.
    // SAFETY: the fd is ours and not used again in the init.
    unsafe { libc::close(chan) };
    let code = init::serve(child);
    // SAFETY: see child_main.
    unsafe { libc::_exit(code) }
}

/// The container's process enters what is left of its cgroup: with `v1_later`, the v1
/// hierarchies the parent hands over after the go ([`Container::release_with`]). In its
/// cgroup then (entered now, before, or placed by the parent before the go), it roots its
/// cgroup namespace there.
fn enter_cgroup_rest(chan: i32, v1_later: bool, in_v2: bool) -> Result<()> {
    if v1_later {
        recv_cgroup(chan)?.enter_self(in_v2)?;
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).sys_ctx(|| "create the cgroup namespace")
}

/// Receives one message whole, whatever its length: a seqpacket message not read whole is
/// cut short without an error, so its length is peeked first (MSG_TRUNC gives the full
/// length of the message peeked at). An empty message is the peer's end.
pub(crate) fn recv_whole(chan: RawFd, what: &str) -> Result<Vec<u8>> {
    loop {
        let size =
            match nix::sys::socket::recv(chan, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Err(Errno::EINTR) => continue,
                r => r.sys_ctx(|| what.to_string())?,
            };
        let mut buf = vec![0u8; size.max(1)];
        match nix::sys::socket::recv(chan, &mut buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            r => {
                buf.truncate(r.sys_ctx(|| what.to_string())?);
                return Ok(buf);
            }
        }
    }
}

/// Sends the container's process the seccomp program it waits for. A process that is gone
/// (it failed its setup while the program was made) is no error here: its own error, which
/// the caller reads next, says why.
pub(crate) fn send_filter(chan: RawFd, program: &crabcan_security::Compiled) -> Result<()> {
    let mut msg = FILTER_MESSAGE.to_vec();
    msg.extend_from_slice(&program.to_bytes());
    match nix::sys::socket::send(chan, &msg, MsgFlags::empty()) {
        Ok(_) | Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ECONNREFUSED) => Ok(()),
        Err(e) => Err(Errcode::sys(
            "send the container's process its seccomp program",
            e,
        )),
    }
}

/// The seccomp program the parent sends after the release ([`ChildSpec::seccomp_later`],
/// [`DetachedSpec::seccomp_later`]).
pub(crate) fn recv_filter(chan: i32) -> Result<crabcan_security::Compiled> {
    recv_whole(chan, "wait for the seccomp program")?
        .strip_prefix(FILTER_MESSAGE)
        .and_then(crabcan_security::Compiled::from_bytes)
        .ok_or_else(|| Errcode::setup("the parent sent no usable seccomp program"))
}

/// The command's own setup, in its process (the init's child, or the cloned process
/// itself without an init), ending in `execve`.
fn command(spec: &ChildSpec, chan: i32, mask: &SigSet) -> Result<()> {
    // A session leader here (the init's fork, or the cloned process itself): the pty
    // becomes its controlling terminal. First, while it is the container's root with every
    // capability, to give the slave to the command's user.
    if let Some(t) = &spec.tty {
        tty::for_command(t, chan, spec.uid)?;
    }
    let later;
    let security = if spec.seccomp_later {
        later = spec.security.clone().with_seccomp(recv_filter(chan)?);
        &later
    } else {
        &spec.security
    };
    crabcan_security::apply_rlimits(&spec.rlimits)?;
    crabcan_security::apply_seccomp_before_cap_drop(security)?;
    crabcan_security::apply_bounding(security)?;
    // The container's root ids were taken right after the go (become_root); only another
    // uid needs a switch.
    if spec.uid != 0 {
        switch_ids(spec.uid, &spec.idmap)?;
    }
    // Changing ids, and the init's fork, cleared the parent-death signal: set it again.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).sys_ctx(|| "set the parent-death signal")?;
    crate::exec::chdir_inside(&spec.workdir)?;
    close_other_fds()?;
    command_signals(mask)?;
    crabcan_security::apply_final(security)?;
    log::debug!("exec {:?}", spec.argv);
    nix::sys::socket::send(chan, EXEC_MARKER, MsgFlags::empty())
        .sys_ctx(|| "tell the parent the command starts")?;
    Err(exec::exec(&spec.argv, &spec.env))
}

/// Restores the caller's signal mask for the command, which keeps the caller's ignored
/// signals too, except where they would keep from it what crabcan passes on.
///
/// crabcan takes the [`FORWARDED`] signals whatever its caller's dispositions: it waits for
/// them blocked, and the kernel queues a blocked signal even when it is ignored. An
/// ignored signal survives `execve`, and a shell cannot trap a signal that was ignored
/// when it started. So a command that inherited, say, SIGINT ignored (from a caller
/// started as a shell's background job), SIGHUP ignored (`nohup`) or either blocked would
/// never see the very signal crabcan forwarded to it, and `crabcan run` would not end:
/// those signals get their default action and are unblocked. SIGPIPE gets its default
/// action too: the Rust runtime ignores it in crabcan (else `yes | head -1` would complain
/// instead of ending).
fn command_signals(mask: &SigSet) -> Result<()> {
    let mut mask = *mask;
    for s in FORWARDED {
        mask.remove(*s);
    }
    default_dispositions()?;
    mask.thread_set_mask().sys_ctx(|| "restore the signal mask")
}

/// Gives the [`FORWARDED`] signals and SIGPIPE their default action in a process about to
/// exec a container's command (see [`command_signals`] for why).
pub(crate) fn default_dispositions() -> Result<()> {
    for s in FORWARDED.iter().chain([&Signal::SIGPIPE]) {
        // SAFETY: SIG_DFL carries no handler; the process is single-threaded.
        unsafe { nix::sys::signal::signal(*s, nix::sys::signal::SigHandler::SigDfl) }
            .sys_ctx(|| format!("reset {s} to its default action"))?;
    }
    Ok(())
}

/// Takes the container's root ids (0 inside), which every map contains. Only in the
/// container's process or its forks, which have one thread (see [`ids`]).
fn become_root(map: &IdMap) -> Result<()> {
    if !map.deny_setgroups {
        // SAFETY: the container's process and its forks have one thread.
        unsafe { ids::setgroups(&[]) }.sys_ctx(|| "clear supplementary groups (setgroups)")?;
    }
    // SAFETY: as above.
    unsafe { ids::setresgid(0) }.sys_ctx(|| "take the container's root gid (setresgid)")?;
    // SAFETY: as above.
    unsafe { ids::setresuid(0) }.sys_ctx(|| "take the container's root uid (setresuid)")
}

/// Takes `uid` as uid and gid. Only in the container's process or its forks (see
/// [`become_root`]).
fn switch_ids(uid: u32, map: &IdMap) -> Result<()> {
    if !map.deny_setgroups {
        // SAFETY: as in become_root.
        unsafe { ids::setgroups(&[]) }.sys_ctx(|| "clear supplementary groups (setgroups)")?;
    }
    // SAFETY: as in become_root.
    unsafe { ids::setresgid(uid) }.sys_ctx(|| format!("set gid {uid} (setresgid)"))?;
    // SAFETY: as in become_root.
    unsafe { ids::setresuid(uid) }.sys_ctx(|| format!("set uid {uid} (setresuid)"))
}

/// Marks every fd above 2 close-on-exec, the channel included (its closing tells the
/// parent that exec succeeded), so nothing of crabcan's reaches the command.
fn close_other_fds() -> Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags here.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 {
        return Err(Errcode::sys(
            "mark inherited file descriptors close-on-exec (close_range)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// Sends the cgroup `entry` on `chan` to a process that waits for one (`later`, cleared
/// once sent): the one step of run's and create's two-step cgroups.
pub(crate) fn hand_cgroup(
    chan: RawFd,
    later: &mut bool,
    entry: crabcan_cgroups::Entry,
) -> Result<()> {
    if !*later {
        return Err(Errcode::setup(
            "the container's process waits for no cgroup (it was spawned with its own)",
        ));
    }
    send_cgroup(chan, entry)?;
    *later = false;
    Ok(())
}

/// [`hand_cgroup`] to a released process. One that is gone (it failed its setup
/// meanwhile) is no error here: its own error, which the caller reads next, says why.
fn hand_cgroup_to_setup(
    chan: RawFd,
    later: &mut bool,
    entry: crabcan_cgroups::Entry,
) -> Result<()> {
    match hand_cgroup(chan, later, entry) {
        Err(e)
            if matches!(
                e.errno(),
                Some(Errno::EPIPE | Errno::ECONNRESET | Errno::ECONNREFUSED)
            ) =>
        {
            *later = false;
            Ok(())
        }
        r => r,
    }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, in clock ticks since
/// boot), `None` when it is gone or a zombie: with the pid, it names one process for good.
pub fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Field 22 (start time) of a `/proc/PID/stat` line, `None` for a zombie or dead process.
pub fn parse_stat(text: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` was field 3; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1 hierarchies handed to a process spawned with [`Joining::Later`] arrive as
    /// they were sent: each directory with the descriptor of its `tasks` file, in order. A
    /// message that does not add up is refused, not half-entered.
    #[test]
    fn a_cgroup_handed_over_later_arrives_as_it_was_sent() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("crabcan-join-{}", std::process::id()));
        let dirs = [base.join("cpu"), base.join("memory,odd name")];
        let mut sent = Vec::new();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("tasks"), "").unwrap();
            sent.push((
                d.clone(),
                OwnedFd::from(std::fs::File::open(d.join("tasks")).unwrap()),
            ));
        }
        let (a, b) = channel().unwrap();
        send_cgroup(a.as_raw_fd(), crabcan_cgroups::Entry::of_v1(sent)).unwrap();
        let got = recv_cgroup(b.as_raw_fd()).unwrap().into_v1();
        assert_eq!(got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), dirs);
        for (d, fd) in &got {
            let st = nix::sys::stat::fstat(fd).unwrap();
            assert_eq!(st.st_ino, std::fs::metadata(d.join("tasks")).unwrap().ino());
        }
        // None at all (a v2-only host): an empty entry.
        send_cgroup(a.as_raw_fd(), crabcan_cgroups::Entry::of_v1(Vec::new())).unwrap();
        assert!(recv_cgroup(b.as_raw_fd()).unwrap().into_v1().is_empty());
        // Two directories and one descriptor; another message altogether.
        let one = std::fs::File::open(dirs[0].join("tasks")).unwrap();
        let fds = [one.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        for (msg, cmsgs) in [(&b"c/a\0/b"[..], &cmsg[..]), (&b"g"[..], &[][..])] {
            let iov = [std::io::IoSlice::new(msg)];
            nix::sys::socket::sendmsg::<()>(a.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
                .unwrap();
            let e = recv_cgroup(b.as_raw_fd()).unwrap_err().to_string();
            assert!(e.contains("cgroup"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The directories handed over are under crabcan's own cgroups, whose paths may each be
    /// as long as a path can be: a message of many such paths arrives whole.
    #[test]
    fn a_cgroup_under_long_paths_arrives_whole() {
        let file = std::env::temp_dir().join(format!("crabcan-join-long-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let component = "d".repeat(250);
        let sent: Vec<(PathBuf, OwnedFd)> = (0..12)
            .map(|i| {
                let mut dir = PathBuf::from(format!("/sys/fs/cgroup/h{i}"));
                for _ in 0..16 {
                    dir.push(&component);
                }
                (dir, OwnedFd::from(std::fs::File::open(&file).unwrap()))
            })
            .collect();
        let dirs: Vec<PathBuf> = sent.iter().map(|(d, _)| d.clone()).collect();
        let (a, b) = channel().unwrap();
        send_cgroup(a.as_raw_fd(), crabcan_cgroups::Entry::of_v1(sent)).unwrap();
        let got = recv_cgroup(b.as_raw_fd()).map(crabcan_cgroups::Entry::into_v1);
        std::fs::remove_file(&file).unwrap();
        let got = got.unwrap();
        assert_eq!(got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), dirs);
    }

    #[test]
    fn a_threaded_caller_is_refused_before_anything_forks() {
        // The harness runs each test on a thread of its own: at least two here, and a
        // third that waits makes it certain.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let e = ensure_single_threaded("start the guardian").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("start the guardian: the calling process has")
        );
        let Err(e) = guardian(&mut |_| {}) else {
            panic!("guardian forked from a threaded caller");
        };
        assert!(e.to_string().contains("threads"), "{e}");
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn a_task_listing_cut_short_is_an_error_not_one_thread() {
        let ok = || Ok::<(), std::io::Error>(());
        let err = || Err::<(), _>(std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(
            count_entries(std::iter::empty::<std::io::Result<()>>()).unwrap(),
            0
        );
        assert_eq!(count_entries([ok(), ok(), ok()].into_iter()).unwrap(), 3);
        // The listing failed after one thread, or at once: no count at all.
        for cut in [vec![ok(), err()], vec![err()], vec![err(), ok()]] {
            let e = count_entries(cut.into_iter()).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
        }
    }

    fn knobs(max: &str, unpriv: &str, aa: &str, root: bool) -> UsernsKnobs {
        UsernsKnobs {
            max_user_namespaces: Some(max.into()),
            unprivileged_userns_clone: Some(unpriv.into()),
            apparmor_restrict: Some(aa.into()),
            root,
        }
    }

    #[test]
    fn clone_failures_name_the_setting_that_refused() {
        let f = CloneFlags::CLONE_NEWUSER;
        let h = clone_hint(Errno::ENOSPC, f, &knobs("0", "1", "0", true)).unwrap();
        assert!(h.contains("user.max_user_namespaces"), "{h}");
        let h = clone_hint(Errno::EPERM, f, &knobs("100", "0", "0", false)).unwrap();
        assert!(h.contains("kernel.unprivileged_userns_clone"), "{h}");
        let h = clone_hint(Errno::EACCES, f, &knobs("100", "1", "1", false)).unwrap();
        assert!(h.contains("apparmor_restrict_unprivileged_userns"), "{h}");
        // Root is not subject to the unprivileged knobs.
        assert_eq!(
            clone_hint(Errno::EPERM, f, &knobs("100", "0", "1", true)),
            None
        );
        assert!(clone_hint(Errno::ENOSPC, f, &UsernsKnobs::default()).is_some());
    }
}
