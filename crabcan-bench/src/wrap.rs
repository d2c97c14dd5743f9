//! The timestamping wrapper an engine runs in place of the runtime binary, so the runtime's
//! own share of an engine's command can be measured.
//!
//! The harness links `DIR/NAME` to its own binary (NAME is the runtime's file name, since
//! engines pass some flags by name) and writes `DIR/NAME.wrap`: the real binary on the first
//! line, the log on the second. Called through that link, the binary runs the real runtime
//! with the same arguments, stdio and descriptors, waits for it, appends one line
//! `START_NS END_NS ARGS…` (CLOCK_MONOTONIC) to the log and exits as the runtime did.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wrapper's configuration, when this process was started through a wrapper link.
pub fn config(argv0: &OsString) -> Option<(PathBuf, PathBuf)> {
    let mut conf = argv0.clone();
    conf.push(".wrap");
    let text = fs::read_to_string(conf).ok()?;
    let mut lines = text.lines();
    let real = PathBuf::from(lines.next()?);
    let log = PathBuf::from(lines.next()?);
    Some((real, log))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the harness reads around each engine command.
pub fn now_ns() -> u64 {
    // SAFETY: `ts` is a live local; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: CLOCK_MONOTONIC always exists; the pointer is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs the real runtime, logs its interval, and returns the exit code to end with.
pub fn run(real: &Path, log: &Path, args: &[OsString]) -> i32 {
    let start = now_ns();
    let status = Command::new(real).args(args).status();
    let end = now_ns();
    let line = format!(
        "{start} {end} {}\n",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    // One write with O_APPEND: concurrent calls do not interleave their lines.
    if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(log) {
        let _ = f.write_all(line.as_bytes());
    }
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("cannot run {}: {e}", real.display());
            127
        }
    }
}

/// Makes `dir/NAME` (NAME = the real binary's file name) a wrapper of `real` logging to `log`.
pub fn install(dir: &Path, real: &Path, log: &Path) -> Result<PathBuf, String> {
    let name = real
        .file_name()
        .ok_or_else(|| format!("{} has no file name", real.display()))?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let link = dir.join(name);
    let me = std::env::current_exe().map_err(|e| format!("cannot find the harness: {e}"))?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&me, &link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    let mut conf = link.clone().into_os_string();
    conf.push(".wrap");
    fs::write(&conf, format!("{}\n{}\n", real.display(), log.display()))
        .map_err(|e| format!("cannot write {}: {e}", PathBuf::from(&conf).display()))?;
    Ok(link)
}

/// The runtime's time inside `[from, to]`: the intervals the wrapper logged, clipped to it;
/// and how many calls overlapped it.
pub fn share(log: &Path, from: u64, to: u64) -> (f64, usize) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut ns = 0u64;
    let mut calls = 0;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(Ok(s)), Some(Ok(e))) = (
            f.next().map(str::parse::<u64>),
            f.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let (s, e) = (s.max(from), e.min(to));
        if e > s {
            ns += e - s;
            calls += 1;
        }
    }
    (ns as f64 / 1e6, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_clipped_to_the_window() {
        let dir = std::env::temp_dir().join(format!("crabcan-bench-wrap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        fs::write(
            &log,
            "1000000 3000000 create\n4000000 5000000 start\n9000000 12000000 delete\nbad line\n",
        )
        .unwrap();
        // 2 ms + 1 ms inside, then 1 ms of delete before the window closes.
        assert_eq!(share(&log, 0, 10_000_000), (4.0, 3));
        assert_eq!(share(&log, 3_500_000, 8_000_000), (1.0, 1));
        fs::remove_dir_all(&dir).unwrap();
    }
}
