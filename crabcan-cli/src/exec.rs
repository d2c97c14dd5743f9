//! `crabcan exec`: runc's flags for a new process in a container.

use clap::Args;
use crabcan_errors::{Errcode, Result};
use std::path::PathBuf;

// runc's `exec` flags. (No doc comment: it would become the help text of `exec`, see
// `crate::oci::CreateArgs`.)
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A JSON file holding the OCI process (the flags that shape the process are ignored).
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process runs; the caller adopts it.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to FILE.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Send the pty master to this unix socket.
    #[arg(long = "console-socket", value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a pty.
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory in the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Add an environment variable.
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Add a supplementary group.
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets.
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass the N descriptors after stdio (3..3+N) on.
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// AppArmor profile.
    #[arg(short, long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux process label.
    #[arg(short = 'l', long = "process-label", value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Exec into a paused container too.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// The container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Parses `--user UID[:GID]`.
fn user(s: &str) -> Result<(u32, Option<u32>)> {
    let bad = || {
        Errcode::usage(format!(
            "invalid --user {s:?}: expected UID[:GID] (numbers)"
        ))
    };
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let u = u.parse().map_err(|_| bad())?;
    let g = g.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((u, g))
}

/// The runtime's options from the flags (reading `--process`).
pub fn options(a: &ExecArgs) -> Result<crabcan_runtime::ExecOptions> {
    let process = match &a.process {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Errcode::usage(format!("cannot read --process {}: {e}", p.display()))
            })?;
            Some(crabcan_security::json::parse_strict(&text).map_err(|e| {
                Errcode::usage(format!("--process {}: invalid JSON: {e}", p.display()))
            })?)
        }
        None => None,
    };
    Ok(crabcan_runtime::ExecOptions {
        id: a.id.clone(),
        process,
        args: a.command.clone(),
        cwd: a.cwd.clone(),
        env: a.env.clone(),
        user: a.user.as_deref().map(user).transpose()?,
        additional_gids: a.additional_gids.clone(),
        caps: a.cap.clone(),
        no_new_privs: a.no_new_privs,
        tty: a.tty,
        apparmor: a.apparmor.clone(),
        process_label: a.process_label.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_uid_and_optional_gid() {
        assert_eq!(user("7").unwrap(), (7, None));
        assert_eq!(user("7:8").unwrap(), (7, Some(8)));
        for bad in ["", "a", "7:", ":8", "7:8:9", "-1"] {
            assert!(user(bad).is_err(), "{bad}");
        }
    }
}
