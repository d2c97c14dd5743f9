//! `prepare` on a directory root, without mounting anything: mount points of an explicit
//! layout are created inside the root (symlinks in it followed inside it), never outside,
//! never on the root itself, and removed again.

use crabcan_mounts::{MountConfig, MountEntry, Root, plan, prepare, prepare_announcing};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prepare-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        Scratch(dir)
    }
    fn root(&self) -> PathBuf {
        self.0.join("rootfs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(root: &Path, entries: Vec<MountEntry>) -> MountConfig {
    let mut cfg = MountConfig::new(Root::Dir(root.to_path_buf()));
    cfg.entries = Some(entries);
    cfg
}

fn entry(dst: &str, fstype: &str, src: Option<&str>, opts: &[&str]) -> MountEntry {
    MountEntry::new(dst, fstype, src, opts).unwrap()
}

#[test]
fn symlinks_inside_are_followed_and_creations_undone() {
    let s = Scratch::new("follow");
    let root = s.root();
    fs::create_dir_all(root.join("run")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    symlink("/run", root.join("var-run")).unwrap();
    // Dangling: the image points at a file that only exists at run time.
    symlink("../run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    symlink("/run/new/dir", root.join("later")).unwrap();
    let hosts = s.0.join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let cfg = config(
        &root,
        vec![
            entry("/var-run/lock", "tmpfs", None, &[]),
            entry("/etc/resolv.conf", "bind", hosts.to_str(), &["rbind", "ro"]),
            entry("/later/x", "tmpfs", None, &[]),
        ],
    );
    let p = plan(&cfg).unwrap();
    let prepared = prepare(&p).unwrap();
    assert!(root.join("run/lock").is_dir());
    assert!(root.join("run/resolv.conf").is_file());
    assert!(root.join("run/new/dir/x").is_dir());
    let made: Vec<&Path> = prepared.created().collect();
    assert!(made.contains(&Path::new("/run/resolv.conf")), "{made:?}");
    prepared.cleanup().unwrap();
    for p in ["run/lock", "run/resolv.conf", "run/new"] {
        assert!(!root.join(p).exists(), "{p} left behind");
    }
    assert!(root.join("run").is_dir(), "what the image had stays");
}

#[test]
fn escaping_symlinks_lead_inside_the_root() {
    let s = Scratch::new("escape");
    let root = s.root();
    let outside = s.0.join("outside");
    fs::create_dir_all(&outside).unwrap();
    symlink(&outside, root.join("abs")).unwrap();
    symlink("../../../../../../../outside", root.join("rel")).unwrap();
    let cfg = config(
        &root,
        vec![
            entry("/abs/a", "tmpfs", None, &[]),
            entry("/rel/b", "tmpfs", None, &[]),
        ],
    );
    let p = plan(&cfg).unwrap();
    let prepared = prepare(&p).unwrap();
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "something was created outside the root"
    );
    assert!(
        root.join(outside.strip_prefix("/").unwrap())
            .join("a")
            .is_dir()
    );
    assert!(root.join("outside/b").is_dir());
    prepared.cleanup().unwrap();
}

#[test]
fn the_root_itself_and_redirected_proc_are_refused() {
    let s = Scratch::new("refuse");
    let root = s.root();
    symlink("/", root.join("loop")).unwrap();
    symlink("../..", root.join("up")).unwrap();
    fs::create_dir_all(root.join("real")).unwrap();
    symlink("/real", root.join("proc")).unwrap();
    for (e, why) in [
        (entry("/loop", "tmpfs", None, &[]), "resolves to the root"),
        (entry("/up", "tmpfs", None, &[]), "resolves to the root"),
        (entry("/proc", "proc", None, &[]), "symlink"),
    ] {
        // An earlier entry's mount point is removed again when a later one is refused.
        let cfg = config(&root, vec![entry("/first", "tmpfs", None, &[]), e]);
        let err = prepare(&plan(&cfg).unwrap()).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        assert!(!root.join("first").exists());
    }
    // A symlink to a directory inside is fine for other types.
    let cfg = config(&root, vec![entry("/proc", "tmpfs", None, &[])]);
    prepare(&plan(&cfg).unwrap()).unwrap().cleanup().unwrap();
}

/// Each thing `prepare` makes is announced before it exists (what a caller that may be
/// killed records, for the cleanup after the kill), and everything made was announced; an
/// announcement refused stops the preparation, and what was made goes again.
#[test]
fn what_is_made_is_announced_before_it_exists() {
    let s = Scratch::new("announce");
    let root = s.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    symlink("../run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    let hosts = s.0.join("hosts");
    fs::write(&hosts, "").unwrap();
    let cfg = config(
        &root,
        vec![
            entry("/a/b", "tmpfs", None, &[]),
            entry("/etc/resolv.conf", "bind", hosts.to_str(), &["rbind", "ro"]),
            entry("/etc", "tmpfs", None, &[]),
        ],
    );
    let p = plan(&cfg).unwrap();
    let mut announced: Vec<PathBuf> = Vec::new();
    let prepared = prepare_announcing(&p, &mut |path| {
        let host = root.join(path.strip_prefix("/").unwrap());
        // Nothing there yet, or the dangling symlink whose target is made instead.
        assert!(
            fs::symlink_metadata(&host).map_or(true, |m| m.file_type().is_symlink()),
            "{} announced after it was made",
            path.display()
        );
        announced.push(path.to_path_buf());
        Ok(())
    })
    .unwrap();
    let made: Vec<PathBuf> = prepared.created().map(Path::to_path_buf).collect();
    assert_eq!(made.len(), 4, "{made:?}");
    for m in &made {
        assert!(announced.contains(m), "{} made unannounced", m.display());
    }
    prepared.cleanup().unwrap();

    let mut seen = 0;
    let e = prepare_announcing(&p, &mut |_| {
        seen += 1;
        if seen == 2 {
            Err(crabcan_errors::Errcode::setup("the record is full"))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "the record is full");
    for p in ["a", "run"] {
        assert!(!root.join(p).exists(), "{p} left after a refusal");
    }
}

/// The cleanup removes the empty file it made for a file bind, and nothing that took its
/// place since: a file with data, a symlink (never followed either).
#[test]
fn a_file_point_replaced_since_is_not_removed() {
    let s = Scratch::new("replaced");
    let root = s.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    let hosts = s.0.join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let target = s.0.join("target");
    fs::write(&target, "keep").unwrap();
    let cfg = config(
        &root,
        vec![
            entry("/etc/a", "bind", hosts.to_str(), &["rbind", "ro"]),
            entry("/etc/b", "bind", hosts.to_str(), &["rbind", "ro"]),
            entry("/etc/c", "bind", hosts.to_str(), &["rbind", "ro"]),
        ],
    );
    let prepared = prepare(&plan(&cfg).unwrap()).unwrap();
    for p in ["etc/a", "etc/b", "etc/c"] {
        assert!(root.join(p).is_file(), "{p} not made");
    }
    // What the container left in their place.
    fs::write(root.join("etc/a"), "data").unwrap();
    fs::remove_file(root.join("etc/b")).unwrap();
    symlink(&target, root.join("etc/b")).unwrap();
    prepared.cleanup().unwrap();
    assert_eq!(fs::read_to_string(root.join("etc/a")).unwrap(), "data");
    assert!(
        root.join("etc/b").is_symlink(),
        "a symlink in its place was removed"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    assert!(
        !root.join("etc/c").exists(),
        "the empty file it made stayed"
    );
}
