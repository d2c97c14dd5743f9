//! Rootless with subordinate ids: an ordinary user with ranges in /etc/subuid and
//! /etc/subgid gets them mapped (through newuidmap/newgidmap), so `--uid` other than 0 works.
//!
//! Its own test binary: it edits /etc/subuid and /etc/subgid for a moment (restored on
//! drop), which must not overlap the other rootless tests. It needs the system's
//! newuidmap/newgidmap (Debian's uidmap package), so the VM suite skips it (`host_only`).

mod bounded;
mod common;

use bounded::{LIMIT, output_within};
use common::*;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Appends a line to a file and puts the old content back on drop (also after a panic).
struct Appended {
    path: &'static str,
    old: Option<String>,
}

impl Appended {
    fn new(path: &'static str, line: &str) -> Appended {
        let old = std::fs::read_to_string(path).ok();
        let mut text = old.clone().unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        Appended { path, old }
    }
}

impl Drop for Appended {
    fn drop(&mut self) {
        let _ = match &self.old {
            Some(t) => std::fs::write(self.path, t),
            None => std::fs::remove_file(self.path),
        };
    }
}

#[test]
fn host_only_subordinate_ids_map_a_range_for_ordinary_users() {
    require_root();
    for helper in ["newuidmap", "newgidmap"] {
        assert!(
            ["/usr/bin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(helper).is_file()),
            "{helper} is missing: install Debian's uidmap package (cargo xtask ci does)"
        );
    }
    let root = rootfs();
    let _u = Appended::new("/etc/subuid", "65534:300000:65536");
    let _g = Appended::new("/etc/subgid", "65534:300000:65536");
    let out = output_within(
        crabcan()
            .uid(65534)
            .gid(65534)
            .arg("run")
            .arg("-m")
            .arg(&root)
            .args(["-u", "1000", "--", "/bin/sh", "-c"])
            .arg("id -u; id -g; cat /proc/self/uid_map; grep CapEff /proc/self/status"),
        LIMIT,
    );
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["1000"], "{text}");
    assert_eq!(lines[1], ["1000"], "{text}");
    assert_eq!(lines[2], ["0", "65534", "1"], "{text}");
    assert_eq!(lines[3], ["1", "300000", "65536"], "{text}");
    assert_eq!(lines[4], ["CapEff:", "0000000000000000"], "{text}");
}
