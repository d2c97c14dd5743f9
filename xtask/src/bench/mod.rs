//! `cargo xtask bench …`: the benchmark lives in its own crate, `crabcan-bench`, so that building
//! xtask for every other task (CI included) does not build it too.

use crate::util::{self, Result};

/// Runs `cargo run --release -p crabcan-bench -- ARGS`; `Ok(false)` when it failed, having said why.
pub fn main(args: &[String]) -> Result<bool> {
    let status = util::cargo()
        .args(["run", "--quiet", "--release", "-p", "crabcan-bench", "--"])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    Ok(status.success())
}
