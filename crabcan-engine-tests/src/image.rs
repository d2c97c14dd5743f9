//! The test image, made without a registry: the test rootfs as a tar for `podman import`, and
//! the same image saved by podman as a docker archive for `ctr image import` and `docker load`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::bounded;
use crate::podman::{IMAGE, Store};
use crate::scope;

/// The two image files.
pub struct Images {
    /// The rootfs as a plain tar.
    pub rootfs_tar: PathBuf,
    /// [`IMAGE`] as a docker archive.
    pub docker_archive: PathBuf,
}

/// Builds the images once per test process from the current test rootfs, under
/// `target/engine-tests/images/` (rebuilt each run, so a changed rootfs is never missed).
/// Called inside a scope, whose cleanup removes what podman leaves on the host.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let rootfs = scope::rootfs();
        let dir = scope::target_dir().join("engine-tests/images");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let rootfs_tar = dir.join("rootfs.tar");
        let docker_archive = dir.join("docker-archive.tar");
        bounded::output(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&rootfs_tar)
                .arg("."),
        )
        .ok();
        let store_dir = dir.join("store");
        let run_dir = PathBuf::from(format!("/run/cet-{}-image", std::process::id()));
        let store = Store::new(&store_dir, &run_dir);
        let mut import = store.cmd();
        import.args(["import", "-q"]).arg(&rootfs_tar).arg(IMAGE);
        bounded::output(&mut import).ok();
        let mut save = store.cmd();
        save.args(["save", "-q", "--format", "docker-archive", "-o"])
            .arg(&docker_archive)
            .arg(IMAGE);
        bounded::output(&mut save).ok();
        // The vfs store holds plain directories only; nothing is mounted.
        for d in [&store_dir, &run_dir] {
            fs::remove_dir_all(d).unwrap_or_else(|e| panic!("cannot remove {}: {e}", d.display()));
        }
        Images {
            rootfs_tar,
            docker_archive,
        }
    })
}
