//! A timing wrapper installed as a containerd runtime handler's binary: it runs the real
//! runtime with the same arguments, standard streams and environment, and appends one line per
//! invocation to `calls.log` beside itself: start (ns since the epoch), duration (ns), exit
//! status and the arguments. The real runtime's path is in the file `runtime` beside it.
//!
//! One copy per handler (its own directory), so each handler's calls are counted apart.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match std::env::current_exe() {
        Ok(p) => p.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
        Err(e) => {
            eprintln!("crabcan-cri-timer: cannot find its own path: {e}");
            return ExitCode::from(125);
        }
    };
    let real = match std::fs::read_to_string(dir.join("runtime")) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            eprintln!(
                "crabcan-cri-timer: cannot read {}: {e}",
                dir.join("runtime").display()
            );
            return ExitCode::from(125);
        }
    };
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let start = Instant::now();
    let status = Command::new(&real).args(&args).status();
    let took = start.elapsed().as_nanos();
    let (code, shown) = match &status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => (c, c.to_string()),
            (None, Some(sig)) => (128 + sig, format!("signal{sig}")),
            (None, None) => (125, "unknown".into()),
        },
        Err(e) => {
            eprintln!("crabcan-cri-timer: cannot run {real}: {e}");
            (125, "unstarted".into())
        }
    };
    // One write per line with O_APPEND: concurrent invocations never interleave within a line.
    let line = format!("{wall} {took} {shown} {}\n", args.join(" "));
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}
