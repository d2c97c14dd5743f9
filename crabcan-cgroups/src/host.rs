//! Where the cgroup v2 hierarchy is and where crabcan sits in it: pure parsers over the text of
//! /proc/self/mountinfo and /proc/self/cgroup, so any host layout can be tested from strings.

use crabcan_errors::{Errcode, Result};
use std::path::{Component, Path, PathBuf};

/// A mounted cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Where it is mounted ("/sys/fs/cgroup", or "/sys/fs/cgroup/unified" on a hybrid host).
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is at the mount point ("/" for the whole hierarchy).
    pub root: String,
}

/// Finds the cgroup2 mount in the text of /proc/self/mountinfo.
///
/// A mount of the whole hierarchy (root "/") is preferred over a mount of a subtree.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<Cgroup2Mount> {
    let mut found: Option<Cgroup2Mount> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let m = Cgroup2Mount {
            mount_point: PathBuf::from(unescape(mount_point)),
            root: unescape(root),
        };
        if m.root == "/" {
            return Some(m);
        }
        found.get_or_insert(m);
    }
    found
}

/// Which cgroup v1 hierarchy holds `controller`, if any (on a hybrid host), from mountinfo.
pub fn v1_mount_of(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            return None;
        }
        let super_opts = r.nth(1)?;
        if !super_opts.split(',').any(|o| o == controller) {
            return None;
        }
        Some(PathBuf::from(unescape(left.split_whitespace().nth(4)?)))
    })
}

/// The caller's cgroup v2 path ("/user.slice/…") from the text of /proc/self/cgroup.
pub fn own_cgroup_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
}

/// The directory of the caller's own cgroup under `mount`.
pub fn own_cgroup_dir(mount: &Cgroup2Mount, own_path: &str) -> Result<PathBuf> {
    dir_under(&mount.mount_point, &mount.root, own_path)
}

/// The directory of the cgroup `path` (absolute in its hierarchy) in the hierarchy whose
/// cgroup `root` is mounted on `mount_point`.
pub(crate) fn dir_under(mount_point: &Path, root: &str, path: &str) -> Result<PathBuf> {
    let rel = if root == "/" {
        path
    } else {
        // A subtree mount: the path is only reachable if it lies inside that subtree.
        path.strip_prefix(root)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                Errcode::setup(format!(
                    "crabcan's cgroup {path} is outside the cgroup subtree {root} mounted on {}",
                    mount_point.display()
                ))
            })?
    };
    let mut dir = PathBuf::with_capacity(mount_point.as_os_str().len() + rel.len() + 1);
    dir.push(mount_point);
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => dir.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Errcode::setup(format!(
                    "unexpected cgroup path '{path}' in /proc/self/cgroup"
                )));
            }
        }
    }
    Ok(dir)
}

/// The controllers listed in a cgroup.controllers or cgroup.subtree_control text.
pub fn parse_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The `oom_kill` count in a memory.events text (0 when absent).
pub fn parse_oom_kill(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This project's development host: cgroup v1 for the real controllers, v2 on the side.
    pub(crate) const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/session/8a3d5b86
1:cpu:/
0::/
";
    /// A pure cgroup v2 host with systemd, crabcan started from a login shell.
    const V2_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_CGROUP: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";

    #[test]
    fn hybrid_host_layout() {
        let m = find_cgroup2_mount(HYBRID_MOUNTINFO).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, "/");
        let own = own_cgroup_path(HYBRID_CGROUP).unwrap();
        assert_eq!(own, "/");
        let dir = own_cgroup_dir(&m, &own).unwrap();
        assert_eq!(dir, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            v1_mount_of(HYBRID_MOUNTINFO, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(v1_mount_of(HYBRID_MOUNTINFO, "hugetlb"), None);
    }

    #[test]
    fn pure_v2_from_a_session_cgroup() {
        let m = find_cgroup2_mount(V2_MOUNTINFO).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup"));
        let own = own_cgroup_path(V2_CGROUP).unwrap();
        let dir = own_cgroup_dir(&m, &own).unwrap();
        assert_eq!(
            dir,
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(v1_mount_of(V2_MOUNTINFO, "memory"), None);
    }

    #[test]
    fn subtree_mounts_and_escapes() {
        let mi = "50 20 0:40 /lxc/box /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n";
        let m = find_cgroup2_mount(mi).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup x"));
        assert_eq!(m.root, "/lxc/box");
        assert_eq!(
            own_cgroup_dir(&m, "/lxc/box/app").unwrap(),
            Path::new("/sys/fs/cgroup x/app")
        );
        assert_eq!(
            own_cgroup_dir(&m, "/lxc/box").unwrap(),
            Path::new("/sys/fs/cgroup x")
        );
        assert!(own_cgroup_dir(&m, "/lxc/boxer").is_err());
        assert!(own_cgroup_dir(&m, "/other").is_err());
        let whole = "51 20 0:40 / /cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup2_mount(&format!("{mi}{whole}")).unwrap().root,
            "/"
        );
    }

    #[test]
    fn missing_or_odd_inputs() {
        assert_eq!(find_cgroup2_mount(""), None);
        assert_eq!(find_cgroup2_mount("garbage\n1 2 - cgroup2\n"), None);
        assert_eq!(own_cgroup_path("4:memory:/x\n"), None);
        assert_eq!(own_cgroup_path("0::relative\n"), None);
        let m = find_cgroup2_mount(V2_MOUNTINFO).unwrap();
        assert!(own_cgroup_dir(&m, "/a/../b").is_err());
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("a\\9"), "a\\9");
    }

    #[test]
    fn controllers_and_oom_kill() {
        assert_eq!(
            parse_controllers("cpuset cpu io memory pids\n"),
            ["cpuset", "cpu", "io", "memory", "pids"]
        );
        assert!(parse_controllers("\n").is_empty());
        let ev = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(ev), 2);
        assert_eq!(parse_oom_kill("oom 1\n"), 0);
        assert_eq!(parse_oom_kill(""), 0);
    }
}
