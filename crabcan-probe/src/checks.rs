//! Positive checks: ordinary things a containerised program does must keep working.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use crate::Verdict;
use crate::sys::{self, en, reti};

/// status: the capability, no_new_privs and seccomp lines of /proc/self/status.
pub fn status() -> ExitCode {
    let Some(text) = sys::read_text("/proc/self/status") else {
        println!("error: status: cannot read /proc/self/status (is /proc mounted?)");
        return ExitCode::from(2);
    };
    const KEYS: &[&str] = &[
        "Uid",
        "Gid",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
        "Seccomp_filters",
    ];
    for line in text.lines() {
        if let Some((k, _)) = line.split_once(':') {
            if KEYS.contains(&k) {
                println!("{line}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// ok-threads: spawn a few threads, each doing some work, and join them.
pub fn threads(_: &[String]) -> Verdict {
    let mut handles = Vec::new();
    for i in 0..4u64 {
        let h = std::thread::Builder::new()
            .name(format!("probe-{i}"))
            .spawn(move || (0..10_000u64).map(|x| x ^ i).sum::<u64>());
        match h {
            Ok(h) => handles.push(h),
            Err(e) => return Verdict::Failed(format!("spawn thread {i}: {e}")),
        }
    }
    let mut total = 0u64;
    for h in handles {
        match h.join() {
            Ok(v) => total = total.wrapping_add(v),
            Err(_) => return Verdict::Failed("a thread panicked".into()),
        }
    }
    Verdict::Ok(format!("4 threads joined (checksum {total})"))
}

/// ok-fork-exec: fork, exec /bin/true in the child, wait for exit 0; then the same through
/// the standard library's process spawning.
pub fn fork_exec(_: &[String]) -> Verdict {
    let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
    // SAFETY: single-threaded; the child only calls execv and _exit.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => return Verdict::Failed(format!("fork: {}", en(sys::Errno::last()))),
        0 => {
            // SAFETY: argv is a NULL-terminated array of NUL-terminated strings.
            unsafe {
                libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
                libc::_exit(127)
            }
        }
        _ => {}
    }
    match sys::wait_child(pid) {
        Ok(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
        Ok(st) => {
            return Verdict::Failed(format!("/bin/true ended with {}", sys::describe_status(st)));
        }
        Err(e) => return Verdict::Failed(format!("waitpid: {}", en(e))),
    }
    match std::process::Command::new("/bin/true").status() {
        Ok(s) if s.success() => Verdict::Ok("fork+exec and spawn of /bin/true exit 0".into()),
        Ok(s) => Verdict::Failed(format!("spawned /bin/true: {s}")),
        Err(e) => Verdict::Failed(format!("spawn /bin/true: {e}")),
    }
}

/// ok-loopback-tcp: listen on 127.0.0.1:0, connect, exchange a few bytes both ways.
pub fn loopback_tcp(_: &[String]) -> Verdict {
    let run = || -> std::io::Result<String> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let mut c = TcpStream::connect(addr)?;
        let (mut s, _) = l.accept()?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        if &buf != b"ping" {
            return Err(std::io::Error::other("server got garbage"));
        }
        s.write_all(b"pong")?;
        c.read_exact(&mut buf)?;
        if &buf != b"pong" {
            return Err(std::io::Error::other("client got garbage"));
        }
        Ok(addr.to_string())
    };
    match run() {
        Ok(a) => Verdict::Ok(format!("ping/pong over {a}")),
        Err(e) => Verdict::Failed(format!("loopback TCP: {e}")),
    }
}

/// ok-file-write: create, write, read back and remove a file under /tmp and under /.
pub fn file_write(_: &[String]) -> Verdict {
    let mut done = Vec::new();
    for dir in ["/tmp", "/"] {
        let p = Path::new(dir).join(format!(".probe-ok-{}", std::process::id()));
        let data = b"hello from the probe\n";
        let r = std::fs::write(&p, data).and_then(|()| std::fs::read(&p));
        let removed = std::fs::remove_file(&p);
        match (r, removed) {
            (Ok(back), Ok(())) if back == data => done.push(p.display().to_string()),
            (Ok(_), Ok(())) => {
                return Verdict::Failed(format!("{}: read back other data", p.display()));
            }
            (Err(e), _) => return Verdict::Failed(format!("{}: {e}", p.display())),
            (_, Err(e)) => return Verdict::Failed(format!("remove {}: {e}", p.display())),
        }
    }
    Verdict::Ok(format!("wrote, read and removed {}", done.join(", ")))
}

/// ok-terminal: a pty from /dev/ptmx: number it, unlock it, open the slave, TCGETS on
/// both ends and a window size round trip.
pub fn terminal(_: &[String]) -> Verdict {
    let master = match sys::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Failed(format!("open /dev/ptmx: {}", en(e))),
    };
    let m = master.as_raw_fd();
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int through a valid pointer.
    if let Err(e) = reti(unsafe { libc::ioctl(m, libc::TIOCGPTN as _, &mut n) }) {
        return Verdict::Failed(format!("TIOCGPTN: {}", en(e)));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through a valid pointer.
    if let Err(e) = reti(unsafe { libc::ioctl(m, libc::TIOCSPTLCK as _, &unlock) }) {
        return Verdict::Failed(format!("unlock (TIOCSPTLCK): {}", en(e)));
    }
    // Open the slave through its /dev/pts path, as programs normally do.
    let path = format!("/dev/pts/{n}");
    let Ok(cpath) = std::ffi::CString::new(path.clone()) else {
        return Verdict::Error("pty path".into());
    };
    let slave = match sys::open(&cpath, libc::O_RDWR | libc::O_NOCTTY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Failed(format!("open {path}: {}", en(e))),
    };
    for (what, fd) in [("master", m), ("slave", slave.as_raw_fd())] {
        // SAFETY: an all-zero termios is a valid value of this plain C struct.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: TCGETS writes a termios through a valid pointer.
        if let Err(e) = reti(unsafe { libc::ioctl(fd, libc::TCGETS as _, &mut t) }) {
            return Verdict::Failed(format!("TCGETS on the {what}: {}", en(e)));
        }
    }
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through a valid pointer.
    if let Err(e) = reti(unsafe { libc::ioctl(m, libc::TIOCSWINSZ as _, &ws) }) {
        return Verdict::Failed(format!("TIOCSWINSZ: {}", en(e)));
    }
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ writes one through the pointer.
    let mut back: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ as _, &mut back) };
    if let Err(e) = reti(r) {
        return Verdict::Failed(format!("TIOCGWINSZ: {}", en(e)));
    }
    if (back.ws_row, back.ws_col) != (24, 80) {
        return Verdict::Failed(format!(
            "window size read back as {}x{}",
            back.ws_col, back.ws_row
        ));
    }
    Verdict::Ok(format!(
        "{path}: TCGETS on both ends, window size 80x24 round trip"
    ))
}

/// ok-rlimit: read RLIMIT_NOFILE, lower the soft and hard limits, read them back.
pub fn rlimit(_: &[String]) -> Verdict {
    // SAFETY: an all-zero rlimit is a valid value of this plain C struct.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a writable rlimit.
    if let Err(e) = reti(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }) {
        return Verdict::Failed(format!("getrlimit: {}", en(e)));
    }
    let (soft, hard) = (rl.rlim_cur, rl.rlim_max);
    // Lower both limits (the hard one irreversibly, which needs no privilege).
    let new_hard = hard.min(soft).min(4096).saturating_sub(1).max(16).min(hard);
    let new_soft = (new_hard / 2).max(8).min(new_hard);
    let want = libc::rlimit {
        rlim_cur: new_soft,
        rlim_max: new_hard,
    };
    // SAFETY: want is a valid rlimit; lowering limits needs no privilege.
    if let Err(e) = reti(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) }) {
        return Verdict::Failed(format!("setrlimit({new_soft}, {new_hard}): {}", en(e)));
    }
    // SAFETY: rl is a writable rlimit.
    if let Err(e) = reti(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }) {
        return Verdict::Failed(format!("getrlimit after setrlimit: {}", en(e)));
    }
    if (rl.rlim_cur, rl.rlim_max) != (new_soft, new_hard) {
        return Verdict::Failed(format!(
            "limits read back as {}/{} instead of {new_soft}/{new_hard}",
            rl.rlim_cur, rl.rlim_max
        ));
    }
    Verdict::Ok(format!(
        "nofile {soft}/{hard} lowered to {new_soft}/{new_hard}"
    ))
}
