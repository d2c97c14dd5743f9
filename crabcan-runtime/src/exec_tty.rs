//! A foreground `exec --tty`, or `run` of a `process.terminal` config, without a console
//! socket: crabcan takes the pty master itself and relays it to its own stdio, forwarding
//! signals and the window size.

use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The terminal size of crabcan's stdin, when it is a terminal.
pub fn size_of_stdin() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a live winsize.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Receives the pty master the process sent over `sock`.
fn receive_master(sock: &std::os::unix::net::UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .sys_ctx(|| "receive the process's pty")?;
    for c in msg.cmsgs().sys_ctx(|| "read the pty message")? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(Errcode::setup("the process sent no pty"))
}

/// Puts stdin in raw mode while it lives, when it is a terminal.
struct Raw(Option<nix::sys::termios::Termios>);

impl Raw {
    fn new() -> Raw {
        let stdin = std::io::stdin();
        let Ok(old) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return Raw(None);
        };
        let mut raw = old.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        Raw(Some(old))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Relays stdin to the pty and the pty to stdout until `pid` exits; returns its status.
/// The caller has blocked crabcan's forwarded signals and SIGCHLD.
pub fn relay(pid: Pid, sock: std::os::unix::net::UnixStream) -> Result<i32> {
    let master = receive_master(&sock)?;
    drop(sock);
    let mut set = SigSet::empty();
    for s in crabcan_child::FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block().sys_ctx(|| "block signals")?;
    let sfd = SignalFd::new(&set).sys_ctx(|| "create a signalfd")?;
    let _raw = Raw::new();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Errcode::sys("poll the pty", e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        drop(fds);
        // Signals first: a window change that came before a key press reaches the pty
        // before the key does.
        if sig_ready && let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => {}
                Ok(Signal::SIGWINCH) => {
                    if let Some((rows, cols)) = size_of_stdin() {
                        let ws = libc::winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
                        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    }
                }
                Ok(s) => {
                    let _ = nix::sys::signal::kill(pid, s);
                }
                Err(_) => {}
            }
        }
        if master_ready && master_open {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => master_open = false,
                Ok(n) => {
                    let _ = write_all(stdout.as_fd(), &buf[..n]);
                }
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => master_open = false,
            }
        }
        if stdin_ready && stdin_open {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    // End of input reaches the process as the terminal's EOF character.
                    let _ = write_all(master.as_fd(), &[4]);
                }
                Ok(n) => {
                    if !write_all(master.as_fd(), &buf[..n]) {
                        stdin_open = false;
                    }
                }
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if master_open && !sig_ready {
            continue;
        }
        match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(drain(&master, c)),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(drain(&master, 128 + s as i32)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Errcode::sys("wait for the process", e)),
        }
    }
}

/// Copies what the process wrote before it exited, then gives its status back.
fn drain(master: &OwnedFd, code: i32) -> i32 {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 8192];
    while let Ok(n) = nix::unistd::read(master, &mut buf) {
        if n == 0 || !write_all(std::io::stdout().as_fd(), &buf[..n]) {
            break;
        }
    }
    code
}
