//! Command-line arguments (clap) and their normalisation.

use clap::{Args, Parser, Subcommand, ValueEnum};
use crabcan_errors::{Errcode, Result};
use std::ffi::OsString;
use std::path::PathBuf;

const RUN_EXAMPLES: &str = "\
Examples:
  crabcan run -- /bin/sh -c 'hostname; id; ls /'
  crabcan run --mount ./rootfs --uid 1000 -- /bin/sh
  crabcan run -m ./rootfs -a /srv/data:/data:ro --read-only -- ls /data
  crabcan run -it -m ./rootfs -- /bin/sh   (an interactive shell with job control)
  crabcan run --name web -m ./rootfs -- /bin/sh -c 'sleep 1000'
      then, from another terminal: crabcan exec web ps   (also state, ps, kill, list)
  crabcan --debug --mount ./rootfs --uid 0 --command /bin/sh   (the tutorial's form)

Exit status: the command's own (128+N if killed by signal N); 125 when crabcan fails;
126 when the command cannot be executed; 127 when it is not found.";

/// crabcan: run a command in fresh Linux namespaces with its own hostname and root.
#[derive(Debug, Parser)]
#[command(name = "crabcan", version, after_help = RUN_EXAMPLES)]
pub struct Cli {
    /// Show each setup step at debug level, with timestamps, on stderr.
    #[arg(short, long, global = true)]
    pub debug: bool,
    /// State directory of named containers (--name) [default: /run/crabcan, or
    /// $XDG_RUNTIME_DIR/crabcan when not root].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// crabcan's subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a command in a new container and wait for it.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
}

/// Network modes for `--net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// Own network namespace with only loopback, up.
    None,
    /// Share the host's network.
    Host,
}

/// User namespace modes for `--userns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsernsArg {
    /// As root: a host id range of its own per container (root inside is unprivileged
    /// outside). As an ordinary user: your own ids.
    Auto,
    /// As root: container ids are host ids (container root is host root on whatever it
    /// is given: binds, stdio).
    Host,
}

/// The filter `--seccomp` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompArg {
    /// crabcan's default profile.
    Default,
    /// No filter (a warning is printed).
    Unconfined,
    /// An OCI seccomp profile (a `linux.seccomp` object) in this file.
    File(std::path::PathBuf),
}

/// `default`, `unconfined`, or a file (`./default` for a file of that name).
fn seccomp_arg(s: &str) -> std::result::Result<SeccompArg, String> {
    match s {
        "default" => Ok(SeccompArg::Default),
        "unconfined" => Ok(SeccompArg::Unconfined),
        "" => Err("expected default, unconfined or a profile file".into()),
        path => Ok(SeccompArg::File(path.into())),
    }
}

/// Flags of `crabcan run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Root directory of the container [default: a scratch tmpfs with the host's /usr, /bin,
    /// /sbin, /lib, /lib64 and /etc read-only].
    #[arg(short, long, value_name = "DIR")]
    pub mount: Option<OsString>,

    /// Command and arguments as one string, split on whitespace (or give them after --).
    #[arg(short, long, value_name = "\"CMD ARGS\"")]
    pub command: Option<String>,

    /// uid and gid the command runs as inside the container.
    #[arg(short, long, value_name = "N", default_value_t = 0)]
    pub uid: u32,

    /// Extra bind mount SRC:DST, with options after a colon, comma-separated: ro (read-only),
    /// dev (device nodes open; default nodev), idmap (files keep their owners inside through
    /// the container's id map); repeatable.
    #[arg(short, long = "add", value_name = "SRC:DST[:ro,dev,idmap]")]
    pub add: Vec<String>,

    /// Name the container: while it runs, `crabcan exec NAME CMD`, `state`, `ps`, `kill`
    /// and `list` reach it (state kept under --root).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Hostname inside [default: a random adjective-noun-N].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Environment variable KEY=VALUE; repeatable [default: PATH, HOME, TERM, HOSTNAME].
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR", default_value = "/")]
    pub workdir: String,

    /// Mount the container's root read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Network: none (own namespace, loopback only) or host.
    #[arg(long, value_enum, default_value_t = NetArg::None, value_name = "none|host")]
    pub net: NetArg,

    /// Size cap of the scratch root's tmpfs (k, m, g suffixes) [default: 256m].
    #[arg(long = "tmpfs-size", value_name = "SIZE")]
    pub tmpfs_size: Option<String>,

    /// Give the command a terminal of its own (a pty in the container) and relay it to
    /// crabcan's stdin and stdout; the caller's terminal is in raw mode meanwhile, so that
    /// Ctrl-C, Ctrl-Z and the window size reach the command. Works without a terminal on
    /// stdin too (no raw mode; at the end of stdin the pty gets its end-of-file character).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Keep stdin open: accepted for docker's -it spelling; crabcan always gives the command
    /// its stdin (through the pty with -t).
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Run the command as PID 1 itself, without crabcan's small init (then it must reap
    /// and handle signals itself, and can outlive crabcan by clearing its parent-death
    /// signal).
    #[arg(long = "no-init")]
    pub no_init: bool,

    /// User namespace ids. auto: as root, 65536 host ids of the container's own from
    /// 3221225472 up (or the subordinate ranges of a user named crabcan), and a --mount
    /// root idmapped so its files keep their owners. host: WARNING, container root is host
    /// root on everything bound in, stdio included.
    #[arg(long, value_enum, default_value_t = UsernsArg::Auto, value_name = "auto|host",
          help_heading = "Confinement")]
    pub userns: UsernsArg,

    /// As root: map container ids 0-65535 to host ids HOST.. (instead of --userns).
    #[arg(long, value_name = "HOST", help_heading = "Confinement")]
    pub userns_base: Option<u32>,

    /// Add a capability to the default set (CAP_NET_ADMIN, net_admin, or ALL); repeatable.
    /// The default set is docker's 14 less SETFCAP; a non-zero --uid has no effective
    /// capabilities. WARNING: with SETFCAP, root inside can give files of an idmapped root
    /// capabilities that hold on the host.
    #[arg(long = "cap-add", value_name = "CAP", help_heading = "Confinement")]
    pub cap_add: Vec<String>,

    /// Drop a capability from the default set (or ALL); repeatable.
    #[arg(long = "cap-drop", value_name = "CAP", help_heading = "Confinement")]
    pub cap_drop: Vec<String>,

    /// Seccomp: default (crabcan's allow list), unconfined (no filter), or FILE, an OCI
    /// seccomp profile (JSON, as in config.json's linux.seccomp). WARNING: unconfined lets
    /// root inside write setuid files that hold on the host into an idmapped root.
    #[arg(long, value_parser = seccomp_arg, default_value = "default",
          value_name = "default|unconfined|FILE", help_heading = "Confinement")]
    pub seccomp: SeccompArg,

    /// Memory cap (cgroup memory.max), e.g. 512m or 2g [default: none].
    #[arg(
        long,
        value_name = "SIZE",
        help_heading = "Resource limits (cgroup v2)"
    )]
    pub memory: Option<String>,

    /// Memory plus swap cap, e.g. 1g, or unlimited [default: none].
    #[arg(
        long = "memory-swap",
        value_name = "SIZE",
        help_heading = "Resource limits (cgroup v2)"
    )]
    pub memory_swap: Option<String>,

    /// Process cap (pids.max), or unlimited [default: 4096 where the pids controller exists].
    #[arg(long, value_name = "N", help_heading = "Resource limits (cgroup v2)")]
    pub pids: Option<String>,

    /// CPU quota in CPUs, e.g. 0.5 (cpu.max) [default: none].
    #[arg(
        long,
        value_name = "FLOAT",
        help_heading = "Resource limits (cgroup v2)"
    )]
    pub cpus: Option<String>,

    /// Relative CPU weight 1-10000 (cpu.weight) [default: the kernel's, 100].
    #[arg(
        long = "cpu-weight",
        value_name = "N",
        help_heading = "Resource limits (cgroup v2)"
    )]
    pub cpu_weight: Option<String>,

    /// rlimit NAME=SOFT[:HARD] (nofile, nproc, core, stack, ...; unlimited allowed);
    /// repeatable [default: inherited from the caller].
    #[arg(
        long = "ulimit",
        value_name = "NAME=SOFT[:HARD]",
        help_heading = "Resource limits (cgroup v2)"
    )]
    pub ulimit: Vec<String>,

    /// The command and its arguments.
    #[arg(last = true, value_name = "COMMAND [ARG...]")]
    pub args: Vec<OsString>,

    /// The global --root.
    #[arg(skip)]
    pub root: Option<PathBuf>,
}

/// Inserts `run` into the tutorial's flat form (`crabcan --mount DIR --command CMD`), so
/// both spellings parse the same way.
pub fn normalise(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut it = args.into_iter();
    out.extend(it.next());
    let mut inserted = false;
    let mut value_follows = false;
    for a in it {
        if !inserted && !value_follows {
            let s = a.to_str().unwrap_or("");
            // `--root DIR` is global too: its value is not the start of the run's flags.
            value_follows = s == "--root";
            let global = matches!(s, "-d" | "--debug" | "--root") || s.starts_with("--root=");
            let own = matches!(s, "run" | "help" | "-h" | "--help" | "-V" | "--version");
            if own {
                inserted = true;
            } else if !global {
                out.push("run".into());
                inserted = true;
            }
        } else {
            value_follows = false;
        }
        out.push(a);
    }
    out
}

/// What parsing decided: run a container, or print something and exit.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these arguments.
    Run { debug: bool, args: Box<RunArgs> },
    /// Print this (help, version) to stdout and exit 0.
    Print(String),
}

/// Parses the process arguments; clap errors become one-line usage errors (exit 125).
pub fn parse(args: Vec<OsString>) -> Result<Parsed> {
    let args = normalise(args);
    match crate::parse_keeping_command::<Cli>(args) {
        Ok(Cli {
            debug,
            root,
            cmd: Cmd::Run(mut r),
        }) => {
            r.root = root;
            Ok(Parsed::Run {
                debug,
                args: Box::new(r),
            })
        }
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                Ok(Parsed::Print(e.render().to_string()))
            }
            _ => {
                Err(Errcode::usage(crate::clap_error_line(&e)).with_hint("see crabcan run --help"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(v: &[&str]) -> RunArgs {
        match parse(os(v)).unwrap() {
            Parsed::Run { args, .. } => *args,
            Parsed::Print(p) => panic!("printed {p}"),
        }
    }

    #[test]
    fn every_flag_parses() {
        let r = run(&[
            "crabcan",
            "run",
            "-m",
            "/r",
            "-c",
            "/bin/sh -c id",
            "-u",
            "7",
            "-a",
            "/a:/b",
            "--add",
            "/c:/d:ro",
            "--hostname",
            "box",
            "-e",
            "A=1",
            "--env",
            "B=2",
            "-w",
            "/tmp",
            "--read-only",
            "--net",
            "host",
            "--userns-base",
            "100000",
        ]);
        assert_eq!(r.mount, Some("/r".into()));
        assert_eq!(r.command.as_deref(), Some("/bin/sh -c id"));
        assert_eq!(r.uid, 7);
        assert_eq!(r.add, ["/a:/b", "/c:/d:ro"]);
        assert_eq!(r.hostname.as_deref(), Some("box"));
        assert_eq!(r.env, ["A=1", "B=2"]);
        assert_eq!(r.workdir, "/tmp");
        assert!(r.read_only);
        assert_eq!(r.net, NetArg::Host);
        assert_eq!(r.userns_base, Some(100_000));
        assert!(r.args.is_empty());
        assert!(!r.tty && !r.interactive);
    }

    #[test]
    fn tty_flags_parse_alone_and_together() {
        let r = run(&["crabcan", "run", "-it", "--", "/bin/sh"]);
        assert!(r.tty && r.interactive);
        let r = run(&["crabcan", "run", "--tty", "--", "/bin/sh"]);
        assert!(r.tty && !r.interactive);
        let r = run(&["crabcan", "-t", "-m", "/r", "--", "sh"]);
        assert!(r.tty);
        assert_eq!(r.mount, Some("/r".into()));
    }

    #[test]
    fn defaults() {
        let r = run(&["crabcan", "run", "--", "/bin/true"]);
        assert_eq!(r.mount, None);
        assert_eq!(r.uid, 0);
        assert_eq!(r.workdir, "/");
        assert_eq!(r.net, NetArg::None);
        assert!(!r.read_only);
        assert_eq!(r.seccomp, SeccompArg::Default);
        let r = run(&[
            "crabcan",
            "run",
            "--seccomp",
            "unconfined",
            "--",
            "/bin/true",
        ]);
        assert_eq!(r.seccomp, SeccompArg::Unconfined);
        let r = run(&["crabcan", "run", "--seccomp", "./p.json", "--", "/bin/true"]);
        assert_eq!(r.seccomp, SeccompArg::File("./p.json".into()));
        assert!(r.memory.is_none() && r.pids.is_none() && r.ulimit.is_empty());
        assert_eq!(r.args, os(&["/bin/true"]));
    }

    #[test]
    fn command_after_double_dash_keeps_its_flags() {
        let r = run(&["crabcan", "run", "--", "/bin/sh", "-c", "echo -u --mount"]);
        assert_eq!(r.args, os(&["/bin/sh", "-c", "echo -u --mount"]));
    }

    #[test]
    fn tutorial_flat_form_still_works() {
        let v = os(&[
            "crabcan",
            "--debug",
            "--mount",
            "/r",
            "--uid",
            "0",
            "--command",
            "/bin/sh",
        ]);
        match parse(v).unwrap() {
            Parsed::Run { debug, args } => {
                assert!(debug);
                assert_eq!(args.mount, Some("/r".into()));
                assert_eq!(args.command.as_deref(), Some("/bin/sh"));
            }
            Parsed::Print(p) => panic!("{p}"),
        }
        assert!(run(&["crabcan", "-m", "/r", "--", "ls"]).args == os(&["ls"]));
    }

    #[test]
    fn name_and_the_global_root_in_every_form() {
        for v in [
            &["crabcan", "--root", "/s", "run", "--name", "web", "--", "x"][..],
            &["crabcan", "run", "--root=/s", "--name", "web", "--", "x"],
            &["crabcan", "--root", "/s", "--name", "web", "--command", "x"],
            &["crabcan", "-d", "--root", "/s", "--name=web", "-c", "x"],
        ] {
            let r = run(v);
            assert_eq!(r.name.as_deref(), Some("web"), "{v:?}");
            assert_eq!(r.root.as_deref(), Some(std::path::Path::new("/s")), "{v:?}");
        }
        let r = run(&["crabcan", "run", "--", "x"]);
        assert!(r.name.is_none() && r.root.is_none());
    }

    #[test]
    fn debug_flag_works_after_run_too() {
        match parse(os(&["crabcan", "run", "-d", "--", "x"])).unwrap() {
            Parsed::Run { debug, .. } => assert!(debug),
            Parsed::Print(p) => panic!("{p}"),
        }
    }

    #[test]
    fn help_lists_every_flag_with_an_example() {
        let Parsed::Print(h) = parse(os(&["crabcan", "run", "--help"])).unwrap() else {
            panic!("no help");
        };
        for flag in [
            "--mount",
            "--command",
            "--uid",
            "--add",
            "--hostname",
            "--env",
            "--workdir",
            "--read-only",
            "--net",
            "--userns-base",
            "--tty",
            "--interactive",
            "--debug",
            "--name",
            "--root",
            "Examples:",
        ] {
            assert!(h.contains(flag), "help lacks {flag}:\n{h}");
        }
        assert!(matches!(
            parse(os(&["crabcan", "--help"])).unwrap(),
            Parsed::Print(_)
        ));
        assert!(matches!(
            parse(os(&["crabcan", "--version"])).unwrap(),
            Parsed::Print(_)
        ));
    }

    #[test]
    fn bad_flags_are_one_line_usage_errors() {
        for v in [
            &["crabcan", "run", "--net", "bridge"][..],
            &["crabcan", "run", "--uid", "-1"],
            &["crabcan", "run", "--uid", "abc"],
            &["crabcan", "run", "--bogus"],
            &["crabcan", "run", "--mount"],
        ] {
            let e = parse(os(v)).unwrap_err();
            assert_eq!(e.exit_code(), 125, "{v:?}");
            let s = e.to_string();
            assert!(!s.contains('\n'), "{v:?}: {s}");
            assert!(!s.is_empty());
        }
        let e = parse(os(&["crabcan", "run", "--net", "bridge"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bridge"), "{e}");
    }

    #[test]
    fn normalise_inserts_run_only_when_needed() {
        assert_eq!(
            normalise(os(&["c", "run", "-m", "x"])),
            os(&["c", "run", "-m", "x"])
        );
        assert_eq!(
            normalise(os(&["c", "-m", "x"])),
            os(&["c", "run", "-m", "x"])
        );
        assert_eq!(
            normalise(os(&["c", "-d", "-m", "x"])),
            os(&["c", "-d", "run", "-m", "x"])
        );
        assert_eq!(
            normalise(os(&["c", "--root", "/s", "--name", "w", "-m", "x"])),
            os(&["c", "--root", "/s", "run", "--name", "w", "-m", "x"])
        );
        assert_eq!(
            normalise(os(&["c", "--root=/s", "-d", "run", "-m", "x"])),
            os(&["c", "--root=/s", "-d", "run", "-m", "x"])
        );
        assert_eq!(
            normalise(os(&["c", "--root", "run", "-m", "x"])),
            os(&["c", "--root", "run", "run", "-m", "x"])
        );
        assert_eq!(normalise(os(&["c", "--help"])), os(&["c", "--help"]));
        assert_eq!(normalise(os(&["c"])), os(&["c"]));
    }
}
