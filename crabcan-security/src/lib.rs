//! The confinement a container's process gets just before `execve`: rlimits, capabilities,
//! no_new_privs and a seccomp filter.
//!
//! Like every crabcan subsystem it is split into a pure [`plan`] (plain data: capability
//! sets and the compiled BPF program, testable anywhere) and apply steps that the child
//! calls in this order:
//!
//! 1. [`apply_rlimits`] with the [`RlimitSpec`]s (read by [`parse_rlimit`]), while the
//!    capabilities are whole (raising a hard limit needs `CAP_SYS_RESOURCE`);
//! 2. [`apply_seccomp_before_cap_drop`] while still root with every capability: loads the
//!    filter now only when no_new_privs is off (see there);
//! 3. [`apply_bounding`] as root in the user namespace, before `setgroups`/`setresgid`/
//!    `setresuid` (dropping from the bounding set needs `CAP_SETPCAP`);
//! 4. switch the ids;
//! 5. [`apply_final`] as the last step before `execve`: the effective, permitted,
//!    inheritable and ambient sets, no_new_privs, then the seccomp filter (when
//!    no_new_privs is on).
//!
//! ```
//! use crabcan_security::{Capabilities, Seccomp, SecurityConfig, kept_set, parse_cap_list};
//! let add = parse_cap_list(&["NET_ADMIN".into()]).unwrap();
//! let drop = parse_cap_list(&["CAP_MKNOD".into()]).unwrap();
//! let cfg = SecurityConfig {
//!     capabilities: Capabilities::for_uid(kept_set(&add, &drop), 0),
//!     no_new_privs: true,
//!     seccomp: Seccomp::Compiled(crabcan_security::profile::crabcan_default_program()),
//! };
//! let plan = crabcan_security::plan(&cfg).unwrap();
//! assert!(crabcan_security::describe(&plan).contains("NET_ADMIN"));
//! ```

mod caps;
pub mod json;
pub mod profile;
mod rlimit;
pub mod seccomp;

pub use caps::{
    CapList, CapSet, Capability, DEFAULT_CAPS, KNOWN_CAPS, kept_set, kernel_last_cap,
    parse_cap_list,
};
pub use profile::{Compiled, Profile, ProfileError};
pub use rlimit::{
    KERNEL_RLIMIT_NAMES, RlimitSpec, apply_rlimits, parse_rlimit, rlimit_names, target_hard,
};
pub use seccomp::BpfInsn;

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;

/// The five capability sets of the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// What the process can ever hold.
    pub bounding: CapSet,
    /// What it uses now.
    pub effective: CapSet,
    /// What it may make effective.
    pub permitted: CapSet,
    /// What survives an `execve` of a file with matching file capabilities.
    pub inheritable: CapSet,
    /// What survives an `execve` of any unprivileged file (kept only where also
    /// permitted and inheritable).
    pub ambient: CapSet,
}

impl Capabilities {
    /// `crabcan run`'s sets: `kept` bounds everything; root gets it effective and
    /// permitted, any other uid nothing (the bounding set still caps what a file
    /// capability could give it, and no_new_privs already stops that).
    pub fn for_uid(kept: CapSet, uid: u32) -> Capabilities {
        let held = if uid == 0 { kept } else { CapSet::EMPTY };
        Capabilities {
            bounding: kept,
            effective: held,
            permitted: held,
            inheritable: CapSet::EMPTY,
            ambient: CapSet::EMPTY,
        }
    }
}

/// The system call filter chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// Load this program, compiled already: crabcan's default
    /// ([`profile::crabcan_default_program`], compiled when crabcan was built, so a start
    /// neither parses nor compiles it), or a profile the front end compiled while checking
    /// it (compiled once, not again here).
    Compiled(Compiled),
    /// Compile and load this profile.
    Profile(Profile),
    /// No filter.
    Unconfined,
}

/// What the caller asked for: the capability sets, no_new_privs and the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// The five capability sets.
    pub capabilities: Capabilities,
    /// Set no_new_privs (setuid bits and file capabilities then give nothing on `execve`).
    pub no_new_privs: bool,
    /// The seccomp filter.
    pub seccomp: Seccomp,
}

impl Default for SecurityConfig {
    /// Default capabilities for root, no_new_privs, crabcan's default profile.
    fn default() -> Self {
        SecurityConfig {
            capabilities: Capabilities::for_uid(CapSet::of(DEFAULT_CAPS), 0),
            no_new_privs: true,
            seccomp: Seccomp::Compiled(profile::crabcan_default_program()),
        }
    }
}

/// The computed confinement: plain data, no syscalls made yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPlan {
    caps: Capabilities,
    no_new_privs: bool,
    seccomp: Option<Compiled>,
}

impl SecurityPlan {
    /// This plan with `program` as its seccomp filter (one compiled after the plan was
    /// made, as crabcan run's for a given profile, while the container sets up).
    pub fn with_seccomp(mut self, program: Compiled) -> SecurityPlan {
        self.seccomp = Some(program);
        self
    }

    /// Capabilities kept in the bounding set (what the command can ever hold).
    pub fn bounding(&self) -> CapSet {
        self.caps.bounding
    }

    /// Capabilities left effective by [`apply_final`].
    pub fn effective(&self) -> CapSet {
        self.caps.effective
    }

    /// All five sets.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Whether no_new_privs is set.
    pub fn no_new_privs(&self) -> bool {
        self.no_new_privs
    }

    /// The compiled seccomp program, if the filter is on.
    pub fn seccomp_program(&self) -> Option<&Compiled> {
        self.seccomp.as_ref()
    }
}

/// Computes the plan from the config; pure, no syscalls. A profile that cannot be
/// compiled is a usage error naming the path inside the profile; it never means no filter.
pub fn plan(cfg: &SecurityConfig) -> Result<SecurityPlan> {
    check_arch(&cfg.seccomp)?;
    let seccomp = match &cfg.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::Compiled(c) => Some(c.clone()),
        Seccomp::Profile(p) => Some(compile_profile(p)?),
    };
    Ok(SecurityPlan {
        caps: cfg.capabilities,
        no_new_privs: cfg.no_new_privs,
        seccomp,
    })
}

/// [`plan`], except that a profile is not compiled: the plan comes without a filter, and
/// the profile back, for the caller to compile later ([`profile::compile`]) and add
/// ([`SecurityPlan::with_seccomp`]), as `create` does while the container's process sets
/// up. A compiled program stays in the plan. Every check of [`plan`] is made now.
pub fn plan_deferred(cfg: SecurityConfig) -> Result<(SecurityPlan, Option<Profile>)> {
    check_arch(&cfg.seccomp)?;
    let mut cfg = cfg;
    let profile = match std::mem::replace(&mut cfg.seccomp, Seccomp::Unconfined) {
        Seccomp::Profile(p) => Some(p),
        other => {
            cfg.seccomp = other;
            None
        }
    };
    Ok((plan(&cfg)?, profile))
}

fn check_arch(seccomp: &Seccomp) -> Result<()> {
    if !matches!(seccomp, Seccomp::Unconfined) && !cfg!(target_arch = "x86_64") {
        return Err(Errcode::setup(
            "seccomp profiles are only compiled for x86 architectures",
        ));
    }
    Ok(())
}

fn compile_profile(p: &Profile) -> Result<Compiled> {
    profile::compile(p).map_err(|e| Errcode::usage(e.to_string()))
}

/// Step 1: loads the filter now if no_new_privs is off; otherwise does nothing.
///
/// Without no_new_privs the kernel only takes a filter from a thread holding
/// CAP_SYS_ADMIN, so it must go in before the capabilities are dropped and the ids
/// switched (runc's order). The filter then also sees the rest of the setup's calls, so
/// the profile must allow them. With no_new_privs it waits for [`apply_final`], as late as
/// possible: fewer of crabcan's own calls run under it.
pub fn apply_seccomp_before_cap_drop(plan: &SecurityPlan) -> Result<()> {
    match &plan.seccomp {
        Some(prog) if !plan.no_new_privs => seccomp::install(prog),
        _ => Ok(()),
    }
}

/// Step 2: clears every capability not kept from the bounding set.
///
/// Call as root in the container's user namespace, before the ids are switched: it needs
/// `CAP_SETPCAP` in the effective set.
pub fn apply_bounding(plan: &SecurityPlan) -> Result<()> {
    let last = caps::kernel_last_cap()?;
    caps::drop_bounding(plan.caps.bounding, last)
}

/// Step 4: the effective, permitted, inheritable and ambient sets, no_new_privs, and the
/// filter when no_new_privs is on (else step 1 loaded it).
///
/// Call after `setresuid`/`setresgid`, as the last thing before `execve`; nothing else may
/// run after it (the filter refuses mount, namespaces and more).
pub fn apply_final(plan: &SecurityPlan) -> Result<()> {
    let last = caps::kernel_last_cap()?;
    let mask = caps::valid_mask(last);
    let c = &plan.caps;
    caps::clear_ambient()?;
    caps::set_sets((
        c.effective.0 & mask,
        c.permitted.0 & mask,
        c.inheritable.0 & mask,
    ))?;
    // The kernel keeps an ambient capability only while it is permitted and inheritable.
    caps::raise_ambient(c.ambient.0 & c.permitted.0 & c.inheritable.0 & mask, last)?;
    if plan.no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if r != 0 {
            return Err(Errcode::sys("set no_new_privs", Errno::last()));
        }
        if let Some(prog) = &plan.seccomp {
            seccomp::install(prog)?;
        }
    }
    Ok(())
}

/// One line for `--debug` logs.
pub fn describe(plan: &SecurityPlan) -> String {
    let c = &plan.caps;
    let filter = match &plan.seccomp {
        Some(p) => format!("a profile ({} BPF instructions)", p.instructions.len()),
        None => "unconfined".into(),
    };
    format!(
        "capabilities: bounding {}; effective {}; permitted {}; inheritable {}; ambient {}; \
         no_new_privs {}; seccomp {filter}",
        c.bounding.describe(),
        c.effective.describe(),
        c.permitted.describe(),
        c.inheritable.describe(),
        c.ambient.describe(),
        if plan.no_new_privs { "on" } else { "off" },
    )
}

#[cfg(test)]
mod tests;
