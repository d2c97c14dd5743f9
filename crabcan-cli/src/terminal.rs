//! `run -t`: the caller's terminal in raw mode while the container runs (a guard puts it
//! back on every way out), and the relay between crabcan's stdio and the command's pty.
//!
//! In raw mode the terminal neither echoes nor edits nor signals: every key, Ctrl-C and
//! Ctrl-Z included, goes to the pty as a byte, and the pty's own line discipline, inside
//! the container, echoes it or signals the command's foreground process group. Window size
//! changes (SIGWINCH to crabcan) are copied onto the pty, whose kernel side signals the
//! container's foreground job in turn.

use crabcan_child::{Container, PtyEnds};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, SpecialCharacterIndices, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// The caller's terminal in raw mode; its settings come back when this is dropped.
pub struct RawMode {
    stdin: std::io::Stdin,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on stdin in raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(t) => t,
            // Not a terminal: nothing to set, nothing to restore.
            Err(Errno::ENOTTY | Errno::EINVAL) => return Ok(None),
            Err(e) => return Err(Errcode::sys("read the terminal's settings (tcgetattr)", e)),
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)
            .sys_ctx(|| "put the terminal in raw mode (tcsetattr)")?;
        Ok(Some(RawMode { stdin, saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = termios::tcsetattr(self.stdin.as_fd(), SetArg::TCSADRAIN, &self.saved) {
            eprintln!(
                "crabcan: cannot restore the terminal's settings (tcsetattr): {}; `stty sane` does",
                e.desc()
            );
        }
    }
}

/// The settings of the caller's terminal, kept for a process that outlives crabcan (the
/// guardian) to put back.
pub struct Saved {
    cooked: Termios,
    raw: Termios,
}

/// What raw mode changes, to compare settings by.
fn modes(t: &Termios) -> impl PartialEq + use<> {
    (
        t.input_flags,
        t.output_flags,
        t.control_flags,
        t.local_flags,
        t.control_chars,
    )
}

impl Saved {
    /// The settings of the terminal on stdin, `None` when stdin is not a terminal.
    pub fn read() -> Option<Saved> {
        let cooked = termios::tcgetattr(std::io::stdin().as_fd()).ok()?;
        let mut raw = cooked.clone();
        termios::cfmakeraw(&mut raw);
        Some(Saved { cooked, raw })
    }

    /// Puts them back (what a SIGKILLed crabcan could not do), unless the terminal is no
    /// longer in crabcan's raw mode: then the caller's shell has set it already, and may
    /// be editing a line in a mode of its own.
    pub fn restore(&self) {
        let stdin = std::io::stdin();
        match termios::tcgetattr(stdin.as_fd()) {
            Ok(now) if modes(&now) == modes(&self.raw) => {}
            _ => return,
        }
        // The shell may have the terminal back already: from its background, this process
        // would be stopped by SIGTTOU instead, with its cleanup undone.
        // SAFETY: SIG_IGN carries no handler; this process runs no other thread.
        let _ = unsafe {
            nix::sys::signal::signal(Signal::SIGTTOU, nix::sys::signal::SigHandler::SigIgn)
        };
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &self.cooked);
    }
}

/// The caller's window size: stdin's terminal, or stdout's when stdin is not one.
pub fn caller_size() -> Option<(u16, u16)> {
    crabcan_child::window_size(std::io::stdin().as_fd())
        .or_else(|| crabcan_child::window_size(std::io::stdout().as_fd()))
}

/// Copies the caller's window size onto the pty (nothing when the caller has no terminal).
fn sync_size(master: BorrowedFd<'_>) {
    if let Some((rows, cols)) = caller_size()
        && let Err(e) = crabcan_child::set_window_size(master, rows, cols)
    {
        log::debug!("window size {rows}x{cols} not passed on: {e}");
    }
}

/// The pty's end-of-file character (Ctrl-D unless the command changed it).
fn eof_char(master: BorrowedFd<'_>) -> u8 {
    termios::tcgetattr(master).map_or(4, |t| {
        t.control_chars[SpecialCharacterIndices::VEOF as usize]
    })
}

/// How many bytes of input wait on the pty for the command to read them.
fn unread(slave: BorrowedFd<'_>) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into memory we own; the descriptor is borrowed.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 { n.max(0) as usize } else { 0 }
}

/// Writes all of `buf` to `fd`, waiting while it would block.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> nix::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is left on the pty after the container ended, to stdout.
fn drain(master: BorrowedFd<'_>, out: BorrowedFd<'_>, buf: &mut [u8]) {
    loop {
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => {
                if write_all(out, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(Errno::EINTR) => {}
            // 0 or EIO: no process has the slave open any more; EAGAIN: one still has
            // (outside the container's PID namespace), and nothing is waiting.
            _ => return,
        }
    }
}

/// How long the pty must be quiet before crabcan types an end-of-file character.
const EOF_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Relays crabcan's stdin to the command's pty and the pty to crabcan's stdout until the
/// container ends, forwarding crabcan's signals ([`crabcan_child::FORWARDED`]) to it and
/// passing window size changes on. Returns the container's exit code. Those signals and
/// SIGCHLD must be blocked ([`crabcan_child::block_signals`]); SIGWINCH is blocked here.
///
/// A pty has no end of input but its end-of-file character: when a stdin that is not a
/// terminal ends, crabcan types it (Ctrl-D) whenever the command has read all its input
/// and the pty has been quiet for [`EOF_PAUSE`], again and again, as a pipe reports its
/// end to every read. Again, because the character means end of file only to a reader in
/// canonical mode: a shell's line editor reads in raw mode but runs its commands in
/// canonical mode, and a Ctrl-D that arrives then is lost to it.
pub fn relay(child: &mut Container, pty: PtyEnds) -> Result<i32> {
    let PtyEnds { master, slave } = pty;
    let mut set = SigSet::empty();
    for s in crabcan_child::FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .sys_ctx(|| "block SIGWINCH")?;
    // Signals that arrived before are pending, and the descriptor reports them.
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .sys_ctx(|| "watch signals (signalfd)")?;
    // Our own descriptor: nonblocking so that a full pty never stalls the output side.
    // stdin and stdout stay as they are: their open file descriptions are shared with
    // the caller's shell.
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .sys_ctx(|| "make the pty master nonblocking")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (input, output) = (stdin.as_fd(), stdout.as_fd());
    // From a terminal, the person types Ctrl-D themselves; and crabcan's copy of the slave
    // would only keep the pty from reporting that the command let go of it.
    let mut slave = (!nix::unistd::isatty(input).unwrap_or(false)).then_some(slave);
    // The size may have changed since the container was cloned with it.
    sync_size(master.as_fd());
    let mut buf = vec![0u8; 1 << 16];
    // Bytes read from stdin, not yet taken by the pty.
    let mut pending: Vec<u8> = Vec::new();
    // Once stdin has ended: when the next end-of-file character may be typed.
    let mut next_eof: Option<std::time::Instant> = None;
    let mut stdin_open = true;
    let mut master_open = true;
    let mut output_ok = true;
    loop {
        if let Some(code) = child.try_wait()? {
            drop(slave.take());
            drain(master.as_fd(), output, &mut buf);
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let master_at = master_open.then(|| {
            let mut ev = PollFlags::POLLIN;
            if !pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(master.as_fd(), ev));
            fds.len() - 1
        });
        // No more from stdin until the pty took what came before.
        let stdin_at = (stdin_open && master_open && pending.is_empty()).then(|| {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
            fds.len() - 1
        });
        let now = std::time::Instant::now();
        if let Some(at) = next_eof
            && master_open
            && pending.is_empty()
            && now >= at
        {
            if slave.as_ref().is_none_or(|s| unread(s.as_fd()) == 0) {
                pending.push(eof_char(master.as_fd()));
            }
            next_eof = Some(now + EOF_PAUSE);
            continue;
        }
        let timeout = match next_eof {
            Some(at) if master_open => {
                let ms = at.saturating_duration_since(now).as_millis().clamp(1, 1000);
                PollTimeout::from(ms as u16)
            }
            _ => PollTimeout::NONE,
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Errcode::sys("wait for the terminal (poll)", e)),
        }
        let ready = |i: Option<usize>, what: PollFlags| {
            i.and_then(|i| fds[i].revents())
                .is_some_and(|r| r.intersects(what | PollFlags::POLLHUP | PollFlags::POLLERR))
        };
        let (sig_ready, master_in, master_out, stdin_ready) = (
            ready(Some(0), PollFlags::POLLIN),
            ready(master_at, PollFlags::POLLIN),
            ready(master_at, PollFlags::POLLOUT),
            ready(stdin_at, PollFlags::POLLIN),
        );
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => sync_size(master.as_fd()),
                    Ok(sig) => child.forward(sig),
                    Err(_) => {}
                }
            }
        }
        if master_in {
            match nix::unistd::read(master.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    // A caller that stopped reading loses the output, not the container.
                    if output_ok && write_all(output, &buf[..n]).is_err() {
                        output_ok = false;
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                // Every slave descriptor is closed (EIO): the command and its children
                // are gone or have let go of the terminal.
                _ => master_open = false,
            }
        }
        if master_out && master_open {
            match nix::unistd::write(master.as_fd(), &pending) {
                Ok(n) => {
                    pending.drain(..n);
                    // The pty passes input on asynchronously: wait before counting it.
                    next_eof = next_eof.map(|_| std::time::Instant::now() + EOF_PAUSE);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => {
                    pending.clear();
                    master_open = false;
                }
            }
        }
        if stdin_ready {
            match nix::unistd::read(input, &mut buf) {
                Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                // End of stdin (or a terminal gone): a person would type Ctrl-D.
                _ => {
                    stdin_open = false;
                    next_eof = Some(std::time::Instant::now() + EOF_PAUSE);
                }
            }
        }
    }
}
