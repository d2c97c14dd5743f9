//! A pty the test opens and plays the person at: crabcan gets its slave as stdin, stdout,
//! stderr and controlling terminal; the test writes keys to the master and reads what the
//! terminal shows.
#![allow(dead_code)]

use crate::common::crabcan;
use nix::fcntl::OFlag;
use nix::sys::termios::{self, LocalFlags};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the shell inside may take to answer one line (the machine is shared and the
/// VM emulated).
pub const ANSWER: Duration = Duration::from_secs(30);

/// A pty opened by the test: the master (the person's side), a slave kept open to read
/// the terminal's settings, and everything the terminal has shown so far.
pub struct Term {
    master: OwnedFd,
    slave: OwnedFd,
    shown: Arc<Mutex<Vec<u8>>>,
    /// How much of `shown` the test has already matched.
    seen: usize,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The settings that raw mode changes, in a comparable form.
pub type Settings = (u32, u32, u32, u32, Vec<u8>);

impl Term {
    /// A fresh pty of `rows` x `cols`, with the kernel's default (cooked) settings.
    pub fn open(rows: u16, cols: u16) -> Term {
        // Close-on-exec on both ends: other tests of this binary spawn crabcan at the same
        // time, and a stray copy of the slave there would keep this terminal alive.
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("open a pty (/dev/ptmx)");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let name = nix::pty::ptsname_r(&master).expect("ptsname");
        let slave = nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open the pty's slave");
        let master: OwnedFd = master.into();
        let term = Term {
            reader: None,
            shown: Arc::new(Mutex::new(Vec::new())),
            seen: 0,
            master,
            slave,
        };
        term.resize(rows, cols);
        term.start_reader()
    }

    fn start_reader(mut self) -> Term {
        let master = self.master.try_clone().expect("dup the master");
        let shown = self.shown.clone();
        self.reader = Some(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match nix::unistd::read(&master, &mut buf) {
                    Ok(0) => return,
                    Ok(n) => shown.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => {}
                    // EIO: the test closed its slave and crabcan is gone.
                    Err(_) => return,
                }
            }
        }));
        self
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a valid winsize; the master is open.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Starts crabcan with `args` on this terminal: the slave as its stdio and controlling
    /// terminal, crabcan the leader of a new session (so the terminal's foreground group).
    pub fn spawn(&self, args: &[&str]) -> Child {
        let io = || Stdio::from(self.slave.try_clone().expect("dup the slave"));
        let mut c = crabcan();
        c.args(args).stdin(io()).stdout(io()).stderr(io());
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl).
        unsafe {
            c.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.spawn().expect("cannot start crabcan")
    }

    /// Types `bytes` as a person would.
    pub fn type_in(&self, bytes: &[u8]) {
        let mut f = std::fs::File::from(self.master.try_clone().expect("dup the master"));
        f.write_all(bytes).expect("write to the pty");
    }

    /// Everything shown so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` shows after what was matched before; false after `limit`.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let shown = self.shown.lock().unwrap();
                let rest = &shown[self.seen.min(shown.len())..];
                if let Some(at) = find(rest, needle.as_bytes()) {
                    self.seen += at + needle.len();
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`Term::wait_for`], failing the test with what the terminal showed.
    pub fn expect(&mut self, needle: &str) {
        assert!(
            self.wait_for(needle, ANSWER),
            "{needle:?} never showed; the terminal showed:\n{}",
            self.text()
        );
    }

    /// The terminal's settings now.
    pub fn settings(&self) -> Settings {
        let t = termios::tcgetattr(self.slave.as_fd()).expect("tcgetattr");
        (
            t.input_flags.bits() as u32,
            t.output_flags.bits() as u32,
            t.control_flags.bits() as u32,
            t.local_flags.bits() as u32,
            // The kernel keeps 19 control characters; the C library's array may be longer,
            // with the rest left uninitialised (musl).
            t.control_chars[..19].to_vec(),
        )
    }

    /// Whether the terminal is in raw mode (no line editing, no echo, no signal keys).
    pub fn is_raw(&self) -> bool {
        let t = termios::tcgetattr(self.slave.as_fd()).expect("tcgetattr");
        !t.local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // With the last slave closed, the reader's read fails and it ends.
        let slave = std::mem::replace(&mut self.slave, self.master.try_clone().unwrap());
        drop(slave);
        if let Some(r) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// crabcan, SIGKILLed if a failed check leaves it running (its guardian cleans up).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `sig` to crabcan, the terminal's session leader, as the person or the terminal would.
pub fn signal_crabcan(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
        .unwrap_or_else(|e| panic!("{sig} to crabcan: {e}"));
}
