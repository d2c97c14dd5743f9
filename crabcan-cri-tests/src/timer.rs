//! Reading what the timing wrapper (`crabcan-cri-timer`) recorded for one handler.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One runtime invocation.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it started, in ns since the epoch.
    pub start_ns: u128,
    /// How long it ran.
    pub took: Duration,
    /// Its exit status as the wrapper wrote it (a number, or `signalN`).
    pub status: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Call {
    /// The runtime subcommand: the first argument that is neither a global flag nor its value.
    pub fn subcommand(&self) -> &str {
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--root" | "--log" | "--log-format" | "--criu" => {
                    it.next();
                }
                _ if a.starts_with('-') => {}
                _ => return a,
            }
        }
        ""
    }

    /// The last argument: the container id for every call the shim makes.
    pub fn id(&self) -> &str {
        self.args.last().map(String::as_str).unwrap_or("")
    }
}

/// One handler's wrapper directory.
#[derive(Debug, Clone)]
pub struct Timer {
    /// The directory holding the wrapper copy, `runtime` and `calls.log`.
    pub dir: PathBuf,
}

impl Timer {
    /// Installs a copy of the wrapper `wrapper` in `dir`, running `runtime`.
    pub fn install(wrapper: &Path, runtime: &Path, dir: &Path) -> Timer {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // A copy, not a link: the wrapper finds its files next to the path it runs from.
        fs::copy(wrapper, dir.join("runtime-wrapper")).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} into {}: {e}",
                wrapper.display(),
                dir.display()
            )
        });
        fs::write(dir.join("runtime"), runtime.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}/runtime: {e}", dir.display()));
        Timer {
            dir: dir.to_path_buf(),
        }
    }

    /// The binary a handler's `BinaryName` names.
    pub fn binary(&self) -> PathBuf {
        self.dir.join("runtime-wrapper")
    }

    /// Every call recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        let text = fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let start_ns = f.next()?.parse().ok()?;
                let took = Duration::from_nanos(f.next()?.parse().ok()?);
                let status = f.next()?.to_string();
                Some(Call {
                    start_ns,
                    took,
                    status,
                    args: f.map(str::to_string).collect(),
                })
            })
            .collect()
    }
}
