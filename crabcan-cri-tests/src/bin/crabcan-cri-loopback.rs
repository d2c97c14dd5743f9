//! A CNI plugin for the CRI tests: brings `lo` up in the pod's network namespace and reports it
//! as the pod's interface with 127.0.0.1/8. containerd 1.6 refuses a CNI result without an
//! interface and an address, and the tests need no traffic beyond the pod itself.
//!
//! It never acts on the host: it refuses a namespace that is the host's own, and DEL and CHECK
//! do nothing (the namespace and its `lo` go away with the pod).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::ExitCode;

use nix::sched::{CloneFlags, setns};

const VERSION: &str = "0.4.0";

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    // The network configuration arrives on stdin; it is read so the runtime's write never
    // blocks, but nothing in it changes what this plugin does.
    let mut config = String::new();
    if command != "VERSION" {
        let _ = std::io::stdin().read_to_string(&mut config);
    }
    let result = match command.as_str() {
        "ADD" => add(),
        "DEL" | "CHECK" => Ok(String::new()),
        "VERSION" => Ok(format!(
            r#"{{"cniVersion":"{VERSION}","supportedVersions":["0.3.0","0.3.1","{VERSION}"]}}"#
        )),
        other => Err(format!("unknown CNI_COMMAND {other:?}")),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("crabcan-cri-loopback: {msg}");
            let msg = msg.replace('\\', "\\\\").replace('"', "\\\"");
            print!(r#"{{"cniVersion":"{VERSION}","code":100,"msg":"{msg}"}}"#);
            ExitCode::FAILURE
        }
    }
}

fn add() -> Result<String, String> {
    let netns = std::env::var("CNI_NETNS").map_err(|_| "CNI_NETNS is not set".to_string())?;
    let ifname = std::env::var("CNI_IFNAME").unwrap_or_else(|_| "eth0".into());
    let target = std::fs::metadata(&netns).map_err(|e| format!("{netns}: {e}"))?;
    // The plugin starts in the runtime's namespace, the host's; init's is checked too where it
    // may be read.
    let mine =
        std::fs::metadata("/proc/self/ns/net").map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    let init = std::fs::metadata("/proc/1/ns/net").ok();
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    if same(&target, &mine) || init.is_some_and(|i| same(&target, &i)) {
        return Err(format!(
            "{netns} is the host's network namespace: refusing to touch it"
        ));
    }
    let file = File::open(&netns).map_err(|e| format!("cannot open {netns}: {e}"))?;
    // This process is single-threaded, so joining the namespace moves the whole plugin there.
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot enter {netns}: {e}"))?;
    lo_up()?;
    let netns_json = netns.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!(
        r#"{{"cniVersion":"{VERSION}","interfaces":[{{"name":"{ifname}","sandbox":"{netns_json}"}}],"ips":[{{"version":"4","address":"127.0.0.1/8","interface":0}}],"dns":{{}}}}"#
    ))
}

/// Sets IFF_UP on `lo` of the current network namespace.
fn lo_up() -> Result<(), String> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming `lo`; the ioctls read and write only it.
    let r = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req)
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(format!("cannot bring lo up: {err}"));
    }
    Ok(())
}
