//! The confinement a container's process gets just before `execve`: capabilities,
//! no_new_privs and a seccomp filter.
//!
//! Like every crabcan subsystem it is split into a pure [`plan`] (plain data: capability
//! sets and the compiled BPF program, testable anywhere) and two apply steps that the
//! child calls in this order:
//!
//! 1. [`apply_bounding`] as root in the user namespace, before `setgroups`/`setresgid`/
//!    `setresuid` (dropping from the bounding set needs `CAP_SETPCAP`);
//! 2. switch the ids;
//! 3. [`apply_final`] as the last step before `execve`: ambient and inheritable sets
//!    emptied, permitted and effective set to the kept capabilities (none for a non-zero
//!    uid), no_new_privs, then the seccomp filter.
//!
//! ```
//! let cfg = crabcan_security::SecurityConfig {
//!     cap_add: vec!["NET_ADMIN".into()],
//!     cap_drop: vec!["CAP_MKNOD".into()],
//!     uid: 0,
//!     seccomp: true,
//! };
//! # #[cfg(target_arch = "x86_64")] {
//! let plan = crabcan_security::plan(&cfg).unwrap();
//! assert!(crabcan_security::describe(&plan).contains("NET_ADMIN"));
//! # }
//! ```

mod caps;
pub mod profile;
pub mod seccomp;

pub use caps::{CapSet, Capability, DEFAULT_CAPS, KNOWN_CAPS};
pub use seccomp::{BpfInsn, SeccompProgram};

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;

/// What the user asked for: capability changes, the command's uid, and whether to filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Capabilities to add to the defaults (`NET_ADMIN`, `cap_net_admin`, `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities to remove from the defaults (same spellings, `ALL` for every one).
    pub cap_drop: Vec<String>,
    /// The uid the command runs as inside the container.
    pub uid: u32,
    /// Install the seccomp filter (`false` is `--seccomp unconfined`).
    pub seccomp: bool,
}

impl Default for SecurityConfig {
    /// Default capabilities, root in the container, seccomp on.
    fn default() -> Self {
        SecurityConfig {
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            uid: 0,
            seccomp: true,
        }
    }
}

/// The computed confinement: plain data, no syscalls made yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPlan {
    bounding: CapSet,
    effective: CapSet,
    uid: u32,
    seccomp: Option<SeccompProgram>,
}

impl SecurityPlan {
    /// Capabilities kept in the bounding set (what the command can ever hold).
    pub fn bounding(&self) -> CapSet {
        self.bounding
    }

    /// Capabilities left permitted and effective by [`apply_final`] (empty for a non-zero uid).
    pub fn effective(&self) -> CapSet {
        self.effective
    }

    /// The compiled seccomp program, if the filter is on.
    pub fn seccomp_program(&self) -> Option<&SeccompProgram> {
        self.seccomp.as_ref()
    }
}

/// Computes the plan from the config; pure, no syscalls, a few microseconds.
pub fn plan(cfg: &SecurityConfig) -> Result<SecurityPlan> {
    let kept = caps::kept_set(&cfg.cap_add, &cfg.cap_drop)?;
    let seccomp = if cfg.seccomp {
        if !cfg!(target_arch = "x86_64") {
            return Err(
                Errcode::setup("the seccomp filter is only available on x86_64 for now")
                    .with_hint("use --seccomp unconfined on this architecture"),
            );
        }
        Some(seccomp::compile_x86_64())
    } else {
        None
    };
    Ok(SecurityPlan {
        bounding: kept,
        // A non-root command gets no capabilities at all; the bounding set still caps
        // what a file capability could give it (no_new_privs already stops that).
        effective: if cfg.uid == 0 { kept } else { CapSet::EMPTY },
        uid: cfg.uid,
        seccomp,
    })
}

/// Step 1: clears every capability not kept from the bounding set.
///
/// Call as root in the container's user namespace, before the ids are switched: it needs
/// `CAP_SETPCAP` in the effective set.
pub fn apply_bounding(plan: &SecurityPlan) -> Result<()> {
    let last = caps::kernel_last_cap()?;
    caps::drop_bounding(plan.bounding, last)
}

/// Step 2: ambient and inheritable emptied, permitted+effective set, no_new_privs, seccomp.
///
/// Call after `setresuid`/`setresgid`, as the last thing before `execve`; nothing else may
/// run after it (the filter refuses mount, namespaces and more).
pub fn apply_final(plan: &SecurityPlan) -> Result<()> {
    let mask = caps::valid_mask(caps::kernel_last_cap()?);
    caps::clear_ambient()?;
    caps::set_sets(plan.effective.0 & mask)?;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(Errcode::sys("set no_new_privs", Errno::last()));
    }
    if let Some(prog) = &plan.seccomp {
        seccomp::install(prog)?;
    }
    Ok(())
}

/// One line for `--debug` logs.
pub fn describe(plan: &SecurityPlan) -> String {
    let eff = if plan.uid == 0 {
        "same as bounding".to_string()
    } else {
        format!("none (uid {})", plan.uid)
    };
    let filter = match &plan.seccomp {
        Some(p) => {
            let (allow, check, deny) = seccomp::counts();
            format!(
                "x86_64 allow list ({allow} allowed, {check} checked, {deny} refused, \
                 {} BPF instructions)",
                p.instructions().len()
            )
        }
        None => "unconfined".into(),
    };
    format!(
        "capabilities: bounding {}; effective {eff}; inheritable, ambient none; \
         no_new_privs on; seccomp {filter}",
        plan.bounding.describe()
    )
}

#[cfg(test)]
mod tests;
