//! The runc-compatible front end: global flags, the OCI commands, their logging and exit
//! codes (1 on crabcan's own errors, with runc's wording where engines match on it).

use clap::{Args, Parser, Subcommand, ValueEnum};
use crabcan_errors::{Errcode, Result};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// The commands of the OCI front end.
const COMMANDS: &[&str] = &[
    "create", "start", "state", "kill", "delete", "list", "spec", "features", "exec",
];

/// Global flags that take a value.
const VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--criu"];

/// Global flags without a value.
const BARE_FLAGS: &[&str] = &["--debug", "--systemd-cgroup"];

/// crabcan's OCI runtime commands (runc's command line).
#[derive(Debug, Parser)]
#[command(name = "crabcan", disable_version_flag = true)]
pub struct OciCli {
    /// State directory [default: /run/crabcan, or $XDG_RUNTIME_DIR/crabcan when not root].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write log lines to FILE instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug lines too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not available: crabcan manages cgroupfs itself).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub cmd: OciCmd,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time level msg`.
    Text,
    /// JSON lines `{"level","msg","time"}`.
    Json,
}

// Options shared by `create` and `run`. (No doc comment: it would become the help text of
// `create`, its command being built only when chosen, after the variant's own text.)
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The container id.
    pub id: String,
    /// The bundle directory (holding config.json).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's pid to FILE.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Send the pty master of a process.terminal container to this unix socket.
    #[arg(long = "console-socket", value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root to switch to the root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass the N descriptors after stdio (3..3+N) to the container.
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
}

/// The OCI commands. Their arguments are built only for the command given (`defer`): an
/// engine calls one command per process, and building all of them took ~0.15 ms of each.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum OciCmd {
    /// Create a container from a bundle; its process waits for start.
    Create(CreateArgs),
    /// Run the command of a created container.
    Start {
        /// The container id.
        id: String,
    },
    /// Print the state of a container as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal to a container's process.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        /// The container id.
        id: String,
        /// Name (TERM, SIGTERM) or number.
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Delete a container and everything create made for it.
    Delete {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json into the bundle.
    Spec {
        /// The bundle directory.
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// A config for an ordinary user (a user namespace mapping the caller to root).
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this build supports, as the runtime-spec features JSON.
    Features,
    /// Run a new process in a container.
    Exec(crate::exec::ExecArgs),
    /// Create and start a container; without --detach, wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
    },
    #[command(flatten)]
    Ops(crate::ops::OpsCmd),
}

/// `list` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Columns.
    Table,
    /// A JSON array of states.
    Json,
}

/// Whether these arguments are for the OCI front end: an OCI command after the global
/// flags, `run` with a bundle, or a bare `--version`.
pub fn is_oci(args: &[OsString]) -> bool {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str().unwrap_or(""))
        .collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let name = w.split_once('=').map_or(w, |(n, _)| n);
        if VALUE_FLAGS.contains(&name) {
            i += if w.contains('=') { 1 } else { 2 };
            continue;
        }
        if BARE_FLAGS.contains(&w) {
            i += 1;
            continue;
        }
        break;
    }
    let rest = &words[i.min(words.len())..];
    let global_given = i > 0;
    match rest.first() {
        None => global_given,
        Some(&"--version") | Some(&"-v") => true,
        Some(&"run") => rest
            .iter()
            .take_while(|w| **w != "--")
            .any(|w| *w == "-b" || *w == "--bundle" || w.starts_with("--bundle=")),
        Some(w) => {
            COMMANDS.contains(w)
                || crate::ops::COMMANDS.contains(w)
                || (global_given && !w.starts_with('-'))
        }
    }
}

/// runc's `--version` layout, which docker parses.
pub fn version_text() -> String {
    format!(
        "crabcan version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("CRABCAN_COMMIT").unwrap_or("unknown"),
        crabcan_oci::OCI_VERSION
    )
}

/// Runs the OCI front end; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    if matches!(
        args.get(1).and_then(|a| a.to_str()),
        Some("--version") | Some("-v")
    ) {
        return match crate::emit(&version_text()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("crabcan: {e}");
                1
            }
        };
    }
    let cli = match crate::parse_keeping_command::<OciCli>(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                return match crate::emit(&e.render().to_string()) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("crabcan: {e}");
                        1
                    }
                };
            }
            eprintln!("crabcan: {}", crate::clap_error_line(&e));
            return 1;
        }
    };
    // Before crabcan opens anything (the log file, the state directory's lock, the root):
    // its own descriptors must never take a number the container is to inherit.
    let preserve = match &cli.cmd {
        OciCmd::Create(a) | OciCmd::Run { create: a, .. } => a.preserve_fds,
        OciCmd::Exec(a) => a.preserve_fds,
        _ => 0,
    };
    if let Err(e) = reserve_preserved(preserve) {
        eprintln!("crabcan: {e}");
        return 1;
    }
    let logger = match Logger::new(&cli) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("crabcan: {e}");
            return 1;
        }
    };
    let logger: &'static Logger = Box::leak(Box::new(logger));
    let _ = log::set_logger(logger);
    log::set_max_level(if cli.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    });
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            logger.error_line(&e.to_string());
            1
        }
    }
}

/// Fills every gap in the preserved range 3..3+N with a close-on-exec placeholder, so
/// that the descriptors crabcan opens later are all numbered above it. The container's
/// process keeps exactly what the caller passed: the placeholders vanish at its exec, as
/// at crabcan's own re-exec (where this runs again).
fn reserve_preserved(n: u32) -> Result<()> {
    let end = 3i64.saturating_add(i64::from(n));
    for fd in 3..end {
        let Ok(fd) = libc::c_int::try_from(fd) else {
            return Err(Errcode::usage(format!(
                "--preserve-fds {n}: too many descriptors"
            )));
        };
        // SAFETY: F_GETFD only reads the flags of a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let null = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Errcode::sys("open /dev/null to reserve a preserved descriptor", e))?;
        // Every lower number is taken (open, or filled just before), so the open took
        // the lowest free one: `fd`.
        let raw = std::os::fd::IntoRawFd::into_raw_fd(null);
        if raw != fd {
            // SAFETY: `raw` is ours, not used again.
            unsafe { libc::close(raw) };
            return Err(Errcode::setup(format!(
                "--preserve-fds {n}: cannot reserve descriptor {fd}"
            )));
        }
        // Left open on purpose until exec: it only holds the number.
    }
    Ok(())
}

fn root_of(cli: &OciCli) -> PathBuf {
    let root = cli.root.clone().unwrap_or_else(|| {
        crabcan_runtime::default_root(
            nix::unistd::geteuid().as_raw(),
            std::env::var("XDG_RUNTIME_DIR").ok().as_deref(),
        )
    });
    std::path::absolute(&root).unwrap_or(root)
}

fn create_options(a: &CreateArgs) -> crabcan_runtime::CreateOptions {
    crabcan_runtime::CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// Before anything of the container exists: the process that will wait in the container
/// runs crabcan's code, so it must run from a sealed copy of the binary (no writable path
/// to the host's file through /proc/PID/exe; the CVE-2019-5736 class).
fn sealed(usage: crabcan_child::ImageUse) -> Result<()> {
    crabcan_child::reexec_sealed(
        std::env::args_os().collect(),
        std::env::vars_os().collect(),
        usage,
    )
}

/// A detached exec returns once the process runs its command; a foreground `run` or `exec`
/// that relays its pty runs as long as the command does. (Every other foreground `run` or
/// `exec` waits from a process that never enters the container: `crate::handover`.)
fn usage_for(detach: bool) -> crabcan_child::ImageUse {
    if detach {
        crabcan_child::ImageUse::UntilStart
    } else {
        crabcan_child::ImageUse::WhileItRuns
    }
}

/// Whether a foreground exec gets a pty that crabcan relays itself (a terminal and no
/// console socket): the process relaying it is the one that started it.
fn relays_own_pty(o: &crabcan_runtime::ExecOptions) -> bool {
    let terminal = match &o.process {
        Some(p) => p.get("terminal").and_then(|t| t.as_bool()).unwrap_or(false),
        None => o.tty,
    };
    terminal && o.console_socket.is_none()
}

fn dispatch(cli: &OciCli) -> Result<i32> {
    if cli.systemd_cgroup {
        return Err(Errcode::usage(
            "--systemd-cgroup: systemd is not available to manage cgroups here; \
             crabcan manages cgroupfs itself (leave the flag out)",
        ));
    }
    let root = root_of(cli);
    match &cli.cmd {
        OciCmd::Create(a) => {
            sealed(crabcan_child::ImageUse::UntilStart)?;
            crabcan_runtime::create(&root, &create_options(a))?;
            Ok(0)
        }
        OciCmd::Run {
            create,
            detach: true,
        } => {
            sealed(crabcan_child::ImageUse::UntilStart)?;
            crabcan_runtime::run(&root, &create_options(create), true)
        }
        OciCmd::Run {
            create,
            detach: false,
        } => {
            let o = create_options(create);
            // Decided by the waiter; the starter's create would refuse a terminal anyway.
            if !crate::handover::is_starter() && crabcan_runtime::relays_own_pty(&o) {
                sealed(usage_for(false))?;
                return crabcan_runtime::run_relaying_pty(&root, &o);
            }
            crate::handover::foreground(
                || crabcan_runtime::run_detached(&root, &o),
                |pid| crabcan_runtime::wait_and_delete(&root, &o.id, pid),
            )
        }
        OciCmd::Exec(a) => {
            let o = crate::exec::options(a)?;
            if o.detach || relays_own_pty(&o) {
                sealed(usage_for(o.detach))?;
                return crabcan_runtime::exec(&root, &o);
            }
            crate::handover::foreground(
                || crabcan_runtime::exec_detached(&root, &o),
                crabcan_child::wait_forwarding,
            )
        }
        OciCmd::Start { id } => crabcan_runtime::start(&root, id).map(|()| 0),
        OciCmd::State { id } => {
            let s = crabcan_runtime::state(&root, id)?;
            crate::emit(&format!("{}\n", to_json_pretty(&s)?))?;
            Ok(0)
        }
        OciCmd::Kill { all, id, signal } => {
            let sig = crabcan_runtime::parse_signal(signal)?;
            crabcan_runtime::kill(&root, id, sig, *all).map(|()| 0)
        }
        OciCmd::Delete { force, id } => crabcan_runtime::delete(&root, id, *force).map(|()| 0),
        OciCmd::List { format, quiet } => {
            let all = crabcan_runtime::list(&root)?;
            let mut out = String::new();
            if *quiet {
                for s in &all {
                    out.push_str(&s.id);
                    out.push('\n');
                }
            } else if *format == ListFormat::Json {
                out = serde_json::to_string(&all)
                    .map_err(|e| Errcode::setup(format!("cannot encode the list: {e}")))?;
                out.push('\n');
            } else {
                out.push_str("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n");
                for s in &all {
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\n",
                        s.id,
                        s.pid,
                        s.status.as_str(),
                        s.bundle.display(),
                        s.created,
                        s.owner
                    ));
                }
            }
            crate::emit(&out)?;
            Ok(0)
        }
        OciCmd::Spec { bundle, rootless } => {
            let path = bundle.join(crabcan_oci::CONFIG_FILE);
            if path.exists() {
                return Err(Errcode::usage(format!(
                    "File {} exists. Remove it first",
                    path.display()
                )));
            }
            let ids = rootless.then(|| {
                (
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                )
            });
            let text = to_json_pretty(&crabcan_oci::default_spec(ids))?;
            std::fs::write(&path, text + "\n")
                .map_err(|e| Errcode::setup(format!("cannot write {}: {e}", path.display())))?;
            Ok(0)
        }
        OciCmd::Ops(c) => crate::ops::run(&root, c),
        OciCmd::Features => {
            crate::emit(&format!(
                "{}\n",
                to_json_pretty(&crate::features::features())?
            ))?;
            Ok(0)
        }
    }
}

fn to_json_pretty(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Errcode::setup(format!("cannot encode JSON: {e}")))
}

/// Log lines to stderr or `--log FILE`, as text or JSON lines.
struct Logger {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    to_stderr: bool,
}

impl Logger {
    fn new(cli: &OciCli) -> Result<Logger> {
        let (out, to_stderr): (Box<dyn Write + Send>, bool) = match &cli.log {
            Some(p) => (
                Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .map_err(|e| {
                            Errcode::usage(format!("cannot open --log {}: {e}", p.display()))
                        })?,
                ),
                false,
            ),
            None => (Box::new(std::io::stderr()), true),
        };
        Ok(Logger {
            out: Mutex::new(out),
            json: cli.log_format == LogFormat::Json,
            to_stderr,
        })
    }

    fn line(&self, level: &str, msg: &str) {
        let time = crabcan_runtime::now_rfc3339();
        let text = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!(
                "time=\"{time}\" level={level} msg=\"{}\"",
                msg.replace('"', "\\\"")
            )
        };
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
    }

    /// The failure of the command: the last line of the log, and always one line on stderr.
    fn error_line(&self, msg: &str) {
        if !self.to_stderr || self.json {
            self.line("error", msg);
        }
        if self.to_stderr && self.json {
            return;
        }
        eprintln!("crabcan: {msg}");
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            self.line(level, &r.args().to_string());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    /// A command missing its required arguments fails in one line that names them (an
    /// engine logs only that line), whether the global flags come before or after it.
    #[test]
    fn a_missing_argument_is_named_in_the_one_line() {
        for v in [
            &["c", "--root", "/r", "state"][..],
            &["c", "state", "--root", "/r"],
            &["c", "start"],
            &["c", "kill", "--all"],
            &["c", "delete", "--force"],
            &["c", "create", "--bundle", "b"],
            &["c", "run", "--bundle", "b"],
            &["c", "exec", "--process", "p.json"],
            &["c", "pause"],
            &["c", "ps"],
        ] {
            let e = crate::parse_keeping_command::<OciCli>(os(v)).unwrap_err();
            let line = crate::clap_error_line(&e);
            assert_eq!(
                line, "the following required arguments were not provided: <ID>",
                "{v:?}"
            );
        }
        let e = crate::parse_keeping_command::<OciCli>(os(&["c", "state", "--bogus", "x"]))
            .unwrap_err();
        assert_eq!(
            crate::clap_error_line(&e),
            "unexpected argument '--bogus' found"
        );
    }

    #[test]
    fn oci_commands_are_told_from_the_tutorial_form() {
        for v in [
            &["c", "create", "--bundle", "b", "x"][..],
            &["c", "--root", "/r", "state", "x"],
            &[
                "c",
                "--root=/r",
                "--log",
                "f",
                "--log-format=json",
                "kill",
                "x",
                "9",
            ],
            &["c", "--debug", "delete", "--force", "x"],
            &["c", "run", "-b", "b", "x"],
            &["c", "run", "--bundle=b", "x"],
            &["c", "--root", "/r", "run", "-b", "/b", "x"],
            &["c", "--systemd-cgroup", "list"],
            &["c", "spec"],
            &["c", "features"],
            &["c", "--version"],
            &["c", "ps", "--format", "json", "x"],
            &["c", "pause", "x"],
            &["c", "update", "--resources", "-", "x"],
        ] {
            assert!(is_oci(&os(v)), "{v:?}");
        }
        for v in [
            &["c", "run", "--", "/bin/sh"][..],
            &["c", "run", "-m", "/r", "--", "ls", "-b"],
            &["c", "--debug", "--mount", "/r", "--command", "/bin/sh"],
            &["c", "-d", "run", "--", "x"],
            &["c", "--debug", "run", "-m", "/r", "-c", "/bin/sh"],
            &["c", "-m", "/r", "--", "create"],
            &["c", "--help"],
            &["c"],
        ] {
            assert!(!is_oci(&os(v)), "{v:?}");
        }
    }

    #[test]
    fn flags_take_both_spellings_and_run_takes_d_as_detach() {
        let c = OciCli::try_parse_from(os(&[
            "c",
            "--root=/r",
            "--log",
            "/l",
            "run",
            "-d",
            "-b",
            "/b",
            "--pid-file=/p",
            "x",
        ]))
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(c.log.as_deref(), Some(std::path::Path::new("/l")));
        let OciCmd::Run { create, detach } = c.cmd else {
            panic!("not run")
        };
        assert!(detach);
        assert_eq!(create.id, "x");
        assert_eq!(create.pid_file.as_deref(), Some(std::path::Path::new("/p")));
        let c = OciCli::try_parse_from(os(&["c", "kill", "x"])).unwrap();
        let OciCmd::Kill { signal, all, .. } = c.cmd else {
            panic!("not kill")
        };
        assert_eq!(signal, "TERM");
        assert!(!all);
    }

    #[test]
    fn version_is_in_runcs_layout() {
        let v = version_text();
        let lines: Vec<&str> = v.lines().collect();
        assert!(lines[0].starts_with("crabcan version "), "{v}");
        assert!(lines[1].starts_with("commit: "), "{v}");
        assert!(lines[2].starts_with("spec: 1."), "{v}");
    }
}
