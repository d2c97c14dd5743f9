//! A pseudo-terminal for the container's process, opened inside the container (in its own
//! devpts instance, through its `/dev/ptmx`) so that the slave is a `/dev/pts` path there;
//! its master goes to whoever relays it (the engine's console socket for OCI `create`,
//! crabcan itself for `run -t`) with SCM_RIGHTS.

use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A pty opened in the container: its master, its slave and the slave's name there.
pub(crate) struct Pty {
    pub(crate) master: OwnedFd,
    pub(crate) slave: OwnedFd,
    pub(crate) name: String,
}

/// Opens a pty through the current root's `/dev/ptmx`, sized `rows` x `cols` when given.
pub(crate) fn open(size: Option<(u16, u16)>) -> Result<Pty> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .sys_ctx(|| "open a pty (/dev/ptmx)")?;
    nix::pty::grantpt(&master).sys_ctx(|| "grant the pty")?;
    nix::pty::unlockpt(&master).sys_ctx(|| "unlock the pty")?;
    let name = nix::pty::ptsname_r(&master).sys_ctx(|| "name the pty")?;
    if let Some((rows, cols)) = size {
        set_window_size(master.as_fd(), rows, cols)?;
    }
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys_ctx(|| format!("open the pty {name}"))?;
    Ok(Pty {
        master: master.into(),
        slave,
        name,
    })
}

/// Sets the window size of a terminal (on a pty master, the kernel signals the slave's
/// foreground process group with SIGWINCH when it changes).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize; the descriptor is borrowed, so open.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(Errcode::sys(
            "set the terminal's window size",
            Errno::last(),
        ));
    }
    Ok(())
}

/// The window size of a terminal as rows and columns, `None` if `fd` is not one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into memory we own; the descriptor is borrowed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends `master` (and `slave`, if given) over the unix socket `sock` with SCM_RIGHTS,
/// `body` as the message; `to` says where, for the error.
pub(crate) fn send_master(
    sock: RawFd,
    master: &OwnedFd,
    slave: Option<&OwnedFd>,
    body: &[u8],
    to: &str,
) -> Result<()> {
    let mut fds = vec![master.as_raw_fd()];
    fds.extend(slave.map(AsRawFd::as_raw_fd));
    let iov = [std::io::IoSlice::new(body)];
    nix::sys::socket::sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .sys_ctx(|| format!("send the pty master {to}"))
    .map(drop)
}

/// Makes `slave` the controlling terminal of this process (a session leader without one)
/// and its stdin, stdout and stderr.
pub(crate) fn attach(slave: OwnedFd) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; the descriptor is ours.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Errcode::sys(
            "make the pty the controlling terminal",
            Errno::last(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which the process owns; the copies
        // do not carry close-on-exec.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Errcode::sys("attach stdio to the pty", Errno::last()));
        }
    }
    Ok(())
}

/// A terminal for the command of `run`: a pty whose master comes back to the parent over
/// the parent/child channel ([`crate::Container::take_pty`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tty {
    /// Initial rows and columns (the caller's terminal's), if known.
    pub size: Option<(u16, u16)>,
}

/// The two ends of the command's pty, as crabcan receives them.
#[derive(Debug)]
pub struct PtyEnds {
    /// The master: what crabcan relays.
    pub master: OwnedFd,
    /// A copy of the slave: with it crabcan can see whether the command has read all the
    /// input given to it (`FIONREAD`).
    pub slave: OwnedFd,
}

/// The word that carries the master over the channel.
pub(crate) const PTY_MESSAGE: &[u8] = b"pty";

/// The command's side of `run -t`, in its own process: a session leader (it set one up)
/// with the pty, opened in the container, as its controlling terminal and stdio; the
/// master and a copy of the slave go to the parent over `chan`. The slave is given to `uid`, who runs the
/// command (as a login does: programs reopen their terminal by name).
pub(crate) fn for_command(tty: &Tty, chan: RawFd, uid: u32) -> Result<()> {
    let pty = open(tty.size)?;
    if uid != 0 {
        nix::unistd::fchown(&pty.slave, Some(nix::unistd::Uid::from_raw(uid)), None)
            .sys_ctx(|| format!("give the pty {} to uid {uid}", pty.name))?;
    }
    send_master(
        chan,
        &pty.master,
        Some(&pty.slave),
        PTY_MESSAGE,
        "to crabcan",
    )?;
    attach(pty.slave)
}
