//! `cargo xtask rootfs DIR`: the small busybox root filesystem the tests run containers in.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// The static busybox from Debian's `busybox-static`, downloaded and unpacked once into
/// `target/cache/`.
pub fn busybox() -> Result<PathBuf> {
    let cache = util::target_dir().join("cache");
    let bin = cache.join("busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    let debs = util::apt_download(&cache, &["busybox-static"])
        .map_err(|e| format!("cannot download busybox-static: {e}"))?;
    let unpacked = util::temp_sibling(&cache.join("busybox-static"), "unpack");
    util::remove_all(&unpacked)?;
    let placed = debs
        .first()
        .ok_or_else(|| "cannot download busybox-static: no package file".to_string())
        .and_then(|deb| util::deb_extract(deb, &unpacked))
        .and_then(|()| {
            let from = unpacked.join("bin/busybox");
            util::chmod(&from, 0o755)?;
            fs::rename(&from, &bin).map_err(|e| format!("cannot place {}: {e}", bin.display()))
        });
    let _ = util::remove_all(&unpacked);
    placed.map(|()| bin)
}

/// The names of busybox's applets, asked of the static binary itself.
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = util::output(Command::new(busybox).arg("--list"))
        .map_err(|e| format!("cannot list busybox applets: {e}"))?;
    let names: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "busybox" && !n.contains('/'))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(format!("{} --list printed no applets", busybox.display()));
    }
    Ok(names)
}

/// Builds the in-container probe as a static binary.
pub fn probe() -> Result<PathBuf> {
    util::build_musl_bin("crabcan-probe", "crabcan-probe", true)
        .map_err(|e| format!("cannot build crabcan-probe: {e}"))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    util::chmod(path, mode)
}

/// Where busybox and its applets live in a tree made by [`populate`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Everything in `/bin`, as the tests expect of their container rootfs.
    Flat,
    /// Debian's merged `/usr`: `/usr/bin`, with `/bin`, `/sbin`, `/lib` and `/lib64` as links, so
    /// a guest host looks like the machines crabcan runs on.
    MergedUsr,
}

/// Fills an empty `dir` with busybox, its applet links, the usual top-level directories and a
/// minimal user database. Everything is world-readable: tests also run containers as 65534.
pub fn populate(dir: &Path, busybox: &Path, layout: Layout) -> Result<()> {
    util::mkdir_p(dir)?;
    util::chmod(dir, 0o755)?;
    let mut dirs = vec![
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("etc", 0o755),
        ("root", 0o755),
    ];
    let bin_dir = match layout {
        Layout::Flat => "bin",
        Layout::MergedUsr => {
            dirs.extend([("usr", 0o755), ("usr/lib", 0o755), ("usr/lib64", 0o755)]);
            "usr/bin"
        }
    };
    dirs.push((bin_dir, 0o755));
    for (sub, mode) in dirs {
        let path = dir.join(sub);
        util::mkdir_p(&path)?;
        util::chmod(&path, mode)?;
    }
    if layout == Layout::MergedUsr {
        for (link, to) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("usr/sbin", "bin"),
        ] {
            let path = dir.join(link);
            symlink(to, &path).map_err(|e| format!("cannot link {}: {e}", path.display()))?;
        }
    }
    let bin = dir.join(bin_dir);
    let target = bin.join("busybox");
    fs::copy(busybox, &target)
        .map_err(|e| format!("cannot copy busybox to {}: {e}", target.display()))?;
    util::chmod(&target, 0o755)?;
    for name in applets(busybox)? {
        let link = bin.join(&name);
        symlink("busybox", &link).map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    write_file(&dir.join("etc/passwd"), PASSWD, 0o644)?;
    write_file(&dir.join("etc/group"), GROUP, 0o644)?;
    Ok(())
}

/// Makes `dir` a complete test rootfs with an up-to-date `bin/crabcan-probe`.
///
/// A new tree is built next to `dir` and renamed into place, so a concurrent reader (or a second
/// builder) never sees a half-built tree.
pub fn ensure(dir: &Path) -> Result<()> {
    let probe = probe()?;
    if !dir.join("bin/busybox").is_file() {
        let busybox = busybox()?;
        if let Some(parent) = dir.parent() {
            util::mkdir_p(parent)?;
        }
        let tmp = util::temp_sibling(dir, "build");
        util::remove_all(&tmp)?;
        let built = populate(&tmp, &busybox, Layout::Flat)
            .and_then(|()| util::install_file(&probe, &tmp.join("bin/crabcan-probe"), 0o755));
        if let Err(e) = built {
            let _ = util::remove_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, dir) {
            let _ = util::remove_all(&tmp);
            // Losing the race to another builder is fine; anything else is not.
            if !dir.join("bin/busybox").is_file() {
                return Err(format!(
                    "cannot rename the new rootfs to {}: {e}",
                    dir.display()
                ));
            }
        } else {
            return Ok(());
        }
    }
    let installed = dir.join("bin/crabcan-probe");
    if !util::same_contents(&probe, &installed) {
        util::install_file(&probe, &installed, 0o755)?;
    }
    Ok(())
}
