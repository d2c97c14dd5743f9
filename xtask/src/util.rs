//! Shared plumbing: paths, running commands with one-line errors, Debian packages, cargo builds.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Every failure is one line of text, printed once by `main`.
pub type Result<T> = std::result::Result<T, String>;

/// The musl target: its binaries are static, so they run in a bare busybox guest or rootfs.
pub const MUSL: &str = "x86_64-unknown-linux-musl";

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match manifest.parent() {
        Some(p) => p.to_path_buf(),
        None => manifest,
    }
}

/// `target/` under the workspace root, where every cache and temporary file lives.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// A name for a temporary sibling of `path`, unique to this process.
pub fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective uid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn program_name(cmd: &Command) -> String {
    Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"))
        .to_string_lossy()
        .into_owned()
}

/// The last non-empty line of a command's stderr, which is where tools put the reason.
pub fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error message")
        .to_string()
}

/// Runs `cmd` capturing its output; a failure names the program and its last stderr line.
pub fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let name = program_name(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{name} failed: {}", last_line(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Runs `cmd` with its stderr shown to the user (builds print their own diagnostics).
pub fn run_visible(cmd: &mut Command) -> Result<Vec<u8>> {
    let name = program_name(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}; see its messages above)",
            out.status
        ));
    }
    Ok(out.stdout)
}

/// Sets the permission bits of `path`, naming it on failure.
pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

/// Creates `path` and its parents, naming it on failure.
pub fn mkdir_p(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Removes `path` (file or tree) if it exists.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
    .map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

/// Copies a file and gives the copy `mode`, replacing the target atomically.
pub fn install_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let tmp = temp_sibling(dst, "new");
    fs::copy(src, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), tmp.display()))?;
    chmod(&tmp, mode)?;
    fs::rename(&tmp, dst).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot rename into {}: {e}", dst.display())
    })
}

/// Whether two files hold the same bytes (false if either cannot be read).
pub fn same_contents(a: &Path, b: &Path) -> bool {
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The `.deb` for `package` already in `dir`, if any.
pub fn cached_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// Installs `packages` with apt-get (without recommends); the package lists are refreshed
/// only when a first attempt fails (a fresh machine may have none yet).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let install = || {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        output(&mut c).map(drop)
    };
    install().or_else(|_| {
        output(Command::new("apt-get").arg("update"))?;
        install()
    })
}

fn apt_get_download(dir: &Path, packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    if is_root() {
        // apt drops to the `_apt` user for downloads, which cannot write into target/.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.args(["-q", "download"]).args(packages).current_dir(dir);
    output(&mut cmd).map(|_| ())
}

/// Fetches the `.deb` of each package into `dir` unless it is already there; returns their paths.
///
/// Downloads go to a private directory first, so a concurrent caller never sees a partial file.
pub fn apt_download(dir: &Path, packages: &[&str]) -> Result<Vec<PathBuf>> {
    mkdir_p(dir)?;
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| cached_deb(dir, p).is_none())
        .collect();
    if !missing.is_empty() {
        let tmp = temp_sibling(&dir.join("download"), "tmp");
        remove_all(&tmp)?;
        mkdir_p(&tmp)?;
        let mut result = apt_get_download(&tmp, &missing);
        if result.is_err() {
            // A fresh machine may have no package lists yet, or old ones naming versions the
            // mirror no longer serves; fetching them again changes no installed package.
            let mut update = Command::new("apt-get");
            update.args(["-q", "update"]);
            output(&mut update)?;
            result = apt_get_download(&tmp, &missing);
        }
        let moved = result.and_then(|()| {
            for entry in
                fs::read_dir(&tmp).map_err(|e| format!("cannot list {}: {e}", tmp.display()))?
            {
                let entry = entry.map_err(|e| format!("cannot list {}: {e}", tmp.display()))?;
                let dst = dir.join(entry.file_name());
                fs::rename(entry.path(), &dst)
                    .map_err(|e| format!("cannot move {}: {e}", dst.display()))?;
            }
            Ok(())
        });
        let _ = remove_all(&tmp);
        moved?;
    }
    packages
        .iter()
        .map(|p| {
            cached_deb(dir, p).ok_or_else(|| format!("apt-get download {p} left no {p}_*.deb"))
        })
        .collect()
}

/// Unpacks a `.deb`'s files under `dest` without touching the package database.
pub fn deb_extract(deb: &Path, dest: &Path) -> Result<()> {
    mkdir_p(dest)?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(dest);
    output(&mut cmd)
        .map(|_| ())
        .map_err(|e| format!("cannot unpack {}: {e}", deb.display()))
}

/// The cargo that runs us (cargo sets `CARGO`), so nested builds use the same toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Makes sure the musl standard library is installed; `rustup target add` is idempotent.
pub fn ensure_musl_target() -> Result<()> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"]);
    match output(&mut list) {
        Ok(out)
            if String::from_utf8_lossy(&out)
                .lines()
                .any(|l| l.trim() == MUSL) =>
        {
            Ok(())
        }
        // Without rustup the toolchain manages targets itself; cargo will say if musl is missing.
        Err(e) if e.starts_with("cannot run") => Ok(()),
        _ => {
            let mut add = Command::new("rustup");
            add.args(["target", "add", MUSL]);
            output(&mut add)
                .map(|_| ())
                .map_err(|e| format!("cannot install the {MUSL} target: {e}"))
        }
    }
}

/// One compiled artifact reported by cargo.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The target's name (`crabcan_errors`, `crabcan`, an integration test's file stem).
    pub name: String,
    /// The target's first kind (`lib`, `bin`, `test`, …).
    pub kind: String,
    /// Whether it was built as a test harness.
    pub test: bool,
    /// The executable, for binaries and test harnesses.
    pub executable: Option<PathBuf>,
    /// The package's directory, where `cargo test` runs the harness.
    pub package_dir: Option<PathBuf>,
}

/// Runs `cargo ARGS --message-format=json-render-diagnostics` and returns the artifacts it built.
pub fn cargo_artifacts(args: &[&str]) -> Result<Vec<Artifact>> {
    let mut cmd = cargo();
    cmd.args(args)
        .arg("--message-format=json-render-diagnostics");
    let stdout = run_visible(&mut cmd).map_err(|e| format!("cargo {}: {e}", args.join(" ")))?;
    parse_artifacts(&String::from_utf8_lossy(&stdout))
}

/// One line of cargo's JSON messages; only artifacts matter here.
#[derive(Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
enum CargoMessage {
    CompilerArtifact(CargoArtifact),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct CargoArtifact {
    target: CargoTarget,
    profile: CargoProfile,
    executable: Option<PathBuf>,
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct CargoProfile {
    test: bool,
}

/// The artifacts among cargo's messages; lines that are not JSON objects (a build script's
/// output, say) are passed over.
fn parse_artifacts(stdout: &str) -> Result<Vec<Artifact>> {
    let mut out = Vec::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let msg: CargoMessage =
            serde_json::from_str(line).map_err(|e| format!("cannot read cargo's output: {e}"))?;
        let CargoMessage::CompilerArtifact(a) = msg else {
            continue;
        };
        out.push(Artifact {
            name: a.target.name,
            kind: a.target.kind.into_iter().next().unwrap_or_default(),
            test: a.profile.test,
            executable: a.executable,
            package_dir: a.manifest_path.parent().map(Path::to_path_buf),
        });
    }
    Ok(out)
}

/// Builds a binary target for musl and returns its path.
pub fn build_musl_bin(package: &str, bin: &str, release: bool) -> Result<PathBuf> {
    ensure_musl_target()?;
    let mut args = vec!["build", "-p", package, "--bin", bin, "--target", MUSL];
    if release {
        args.push("--release");
    }
    cargo_artifacts(&args)?
        .into_iter()
        .find(|a| a.name == bin && a.kind == "bin" && !a.test)
        .and_then(|a| a.executable)
        .ok_or_else(|| format!("cargo built no executable for {package}'s {bin}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_artifacts_and_passes_over_other_messages() {
        let out = concat!(
            r#"{"reason":"compiler-message","message":{"rendered":"warning"}}"#,
            "\n",
            "a build script's line\n",
            r#"{"reason":"compiler-artifact","package_id":"p","manifest_path":"/w/crabcan-cli/Cargo.toml","target":{"name":"run","kind":["test"],"src_path":"/w/x.rs"},"profile":{"opt_level":"0","test":true},"filenames":[],"executable":"/t/x\u0041\"y","fresh":false}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/c/Cargo.toml","target":{"name":"c","kind":["lib","rlib"]},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let a = parse_artifacts(out).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].name.as_str(), a[0].kind.as_str(), a[0].test),
            ("run", "test", true)
        );
        assert_eq!(a[0].executable.as_deref(), Some(Path::new("/t/xA\"y")));
        assert_eq!(
            a[0].package_dir.as_deref(),
            Some(Path::new("/w/crabcan-cli"))
        );
        assert_eq!(
            (a[1].kind.as_str(), a[1].test, a[1].executable.is_none()),
            ("lib", false, true)
        );
    }

    #[test]
    fn a_broken_message_is_an_error() {
        assert!(parse_artifacts("{\"reason\":").is_err());
        assert!(parse_artifacts(r#"{"reason":"compiler-artifact","target":{}}"#).is_err());
    }
}
