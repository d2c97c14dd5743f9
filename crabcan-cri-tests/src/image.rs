//! The two images a pod needs, made from the test rootfs without a registry: an application
//! image (busybox) and the sandbox ("pause") image, whose command sleeps forever. Both share
//! one layer and are written as one docker archive for `ctr image import`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bounded;

/// The application image.
pub const BUSYBOX: &str = "localhost/crabcan-cri-busybox:latest";
/// The sandbox image, containerd's `sandbox_image`.
pub const PAUSE: &str = "localhost/crabcan-cri-pause:latest";

/// The `PATH` both images set.
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn sha256(file: &Path) -> String {
    let out = bounded::output(Command::new("sha256sum").arg(file));
    let hex = out.ok().split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(hex.len(), 64, "sha256sum printed {:?}", out.stdout);
    hex
}

fn config(diff_id: &str, cmd: &[&str]) -> String {
    let cmd = serde_json::to_string(cmd).expect("a string list serialises");
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["{PATH}"],"Cmd":{cmd},"WorkingDir":"/"}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    )
}

/// Writes the docker archive holding [`BUSYBOX`] and [`PAUSE`] under `dir`, from the busybox
/// root `rootfs`; returns its path.
pub fn archive(rootfs: &Path, dir: &Path) -> PathBuf {
    let work = dir.join("image");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap_or_else(|e| panic!("cannot create {}: {e}", work.display()));
    let layer = work.join("layer.tar");
    bounded::output(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(&layer)
            .arg("."),
    )
    .ok();
    let diff_id = sha256(&layer);
    let layer_name = format!("{diff_id}.tar");
    fs::rename(&layer, work.join(&layer_name)).expect("rename the layer within one directory");
    let mut manifest = Vec::new();
    for (tag, cmd) in [
        (BUSYBOX, &["sh"][..]),
        // `sleep inf`: the sandbox's only job is to hold the pod's namespaces.
        (PAUSE, &["sleep", "inf"][..]),
    ] {
        let text = config(&diff_id, cmd);
        let file = work.join("config.json");
        fs::write(&file, &text).expect("write an image config");
        let name = format!("{}.json", sha256(&file));
        fs::rename(&file, work.join(&name)).expect("rename the config within one directory");
        manifest.push(serde_json::json!({
            "Config": name,
            "RepoTags": [tag],
            "Layers": [layer_name],
        }));
    }
    fs::write(
        work.join("manifest.json"),
        serde_json::to_string(&manifest).expect("the manifest serialises"),
    )
    .expect("write manifest.json");
    let out = dir.join("images.tar");
    bounded::output(
        Command::new("tar")
            .arg("-C")
            .arg(&work)
            .arg("-cf")
            .arg(&out)
            .arg("."),
    )
    .ok();
    fs::remove_dir_all(&work).unwrap_or_else(|e| panic!("cannot remove {}: {e}", work.display()));
    out
}
