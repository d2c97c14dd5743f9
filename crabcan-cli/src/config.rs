//! From parsed arguments to a checked container configuration.

use crate::cli::{NetArg, RunArgs, SeccompArg, UsernsArg};
use crabcan_child::{ChildSpec, IdMap, Net};
use crabcan_errors::{Errcode, Result};
use crabcan_mounts::{BindMount, MountConfig, Root, Sysfs};
use std::borrow::Cow;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Facts about the caller that the configuration depends on.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Working directory, for relative paths.
    pub cwd: PathBuf,
    /// The caller's TERM, passed on.
    pub term: Option<String>,
    /// The caller's subordinate uid and gid ranges (unprivileged callers only).
    pub subids: Option<(crabcan_child::SubIds, crabcan_child::SubIds)>,
    /// `$XDG_RUNTIME_DIR`, where an ordinary user's named containers are recorded.
    pub xdg_runtime_dir: Option<String>,
}

/// A container named with `--name`: recorded in the state directory while it runs.
#[derive(Debug, Clone)]
pub struct Named {
    /// The name (a valid container id).
    pub name: String,
    /// The state directory (`--root`), absolute.
    pub root: PathBuf,
    /// The seccomp profile applied, as config.json's `linux.seccomp`; `None`: no filter.
    pub seccomp: Option<serde_json::Value>,
    /// The root is mounted read-only.
    pub read_only: bool,
}

/// A checked container configuration.
#[derive(Debug)]
pub struct Config {
    /// What the container's process gets, its mount plan included.
    pub child: ChildSpec,
    /// The user turned seccomp off.
    pub seccomp_off: bool,
    /// The compile of a `--seccomp FILE`, run while the container's process sets up.
    pub seccomp_later: Option<crabcan_runtime::oneshot::LaterFilter>,
    /// The limits asked for (checked: their resources convert).
    pub limits: crabcan_cgroups::Limits,
    /// The container's host ids are a range of its own, allocated when it starts (the map
    /// in `child.idmap` is rebased onto it).
    pub auto_ids: bool,
    /// The user gave an nproc rlimit (so no default is added where cgroups cannot count).
    pub nproc_given: bool,
    /// `--name`: where and as what the container is recorded.
    pub named: Option<Named>,
}

/// What `--seccomp` chose: the filter of the security plan, the profile's text (none for
/// no filter), and the compile of a profile file, which the plan then lacks. A profile file
/// is read and parsed here, and compiled while the container's process sets up (the
/// parent waits for it then anyway, so most of the compile hides behind that setup); any
/// fault is one line naming the file, the path inside it and the reason, and a bad profile
/// never means no filter.
type SeccompChoice = (
    crabcan_security::Seccomp,
    Option<Cow<'static, str>>,
    Option<crabcan_runtime::oneshot::LaterFilter>,
);

fn seccomp_choice(arg: &SeccompArg, cwd: &Path) -> Result<SeccompChoice> {
    use crabcan_security::{Seccomp, profile};
    let path = match arg {
        SeccompArg::Default => {
            return Ok((
                Seccomp::Compiled(profile::crabcan_default_program()),
                Some(Cow::Borrowed(profile::CRABCAN_DEFAULT_JSON)),
                None,
            ));
        }
        SeccompArg::Unconfined => return Ok((Seccomp::Unconfined, None, None)),
        SeccompArg::File(p) => p,
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(cwd.join(path))
        .map_err(|e| Errcode::usage(format!("invalid --seccomp {shown}: cannot read it: {e}")))?;
    let bad = move |e: crabcan_security::ProfileError| {
        Errcode::usage(format!("invalid --seccomp {}", e.describe_in(&shown, "")))
    };
    if !cfg!(target_arch = "x86_64") {
        return Err(Errcode::setup(
            "seccomp profiles are only compiled for x86 architectures",
        ));
    }
    let p = profile::parse(&text).map_err(&bad)?;
    let compile = move || profile::compile(&p).map_err(bad);
    Ok((
        Seccomp::Unconfined,
        Some(Cow::Owned(text)),
        Some(crabcan_runtime::oneshot::LaterFilter(Box::new(compile))),
    ))
}

/// `--name` and the state directory it is recorded in.
fn named(
    args: &RunArgs,
    caller: &Caller,
    seccomp: Option<Cow<'static, str>>,
) -> Result<Option<Named>> {
    let Some(name) = &args.name else {
        return Ok(None);
    };
    crabcan_runtime::validate_id(name).map_err(|_| {
        Errcode::usage(format!(
            "invalid --name '{}': a name has 1 to {} letters, digits and _ - . +, and is \
             not . or ..",
            name.escape_debug(),
            crabcan_runtime::MAX_ID_LEN
        ))
    })?;
    let root = match &args.root {
        Some(r) if r.as_os_str().is_empty() => {
            return Err(Errcode::usage("invalid --root '': empty path"));
        }
        Some(r) => caller.cwd.join(r),
        None => crabcan_runtime::default_root(caller.euid, caller.xdg_runtime_dir.as_deref()),
    };
    let seccomp = seccomp
        .map(|t| crabcan_security::json::parse_strict(&t))
        .transpose()
        .map_err(|e| Errcode::usage(format!("invalid --seccomp profile: {e}")))?;
    Ok(Some(Named {
        name: name.clone(),
        root,
        seccomp,
        read_only: args.read_only,
    }))
}

/// Parses the optional value of a limit flag with `parse`, naming the flag and the value.
fn opt<T>(flag: &str, v: &Option<String>, parse: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    v.as_deref()
        .map(|s| parse(s).map_err(|e| e.context(format!("invalid {flag} '{}'", s.escape_debug()))))
        .transpose()
}

/// The flag that sets a limit.
pub fn limit_flag_name(kind: crabcan_cgroups::LimitKind) -> &'static str {
    use crabcan_cgroups::LimitKind as K;
    match kind {
        K::Memory => "--memory",
        K::MemorySwap => "--memory-swap",
        K::Pids => "--pids",
        K::Cpus => "--cpus",
        K::CpuWeight => "--cpu-weight",
    }
}

/// The flag and its text for a limit the cgroup crate refused.
fn limit_flag(kind: crabcan_cgroups::LimitKind, args: &RunArgs) -> (&'static str, String) {
    use crabcan_cgroups::LimitKind as K;
    let v = match kind {
        K::Memory => &args.memory,
        K::MemorySwap => &args.memory_swap,
        K::Pids => &args.pids,
        K::Cpus => &args.cpus,
        K::CpuWeight => &args.cpu_weight,
    };
    (limit_flag_name(kind), v.clone().unwrap_or_default())
}

fn utf8<'a>(flag: &str, s: &'a OsStr) -> Result<&'a str> {
    s.to_str().ok_or_else(|| {
        Errcode::usage(format!(
            "invalid {flag} '{}': not valid UTF-8",
            s.to_string_lossy()
        ))
    })
}

/// Makes `p` absolute against `cwd` (lexically: one `stat`, no symlink walk, so a thousand
/// `--add` flags stay cheap); it must exist.
fn host_path(flag: &str, shown: &str, p: &str, cwd: &Path) -> Result<PathBuf> {
    let abs = cwd.join(p);
    match std::fs::metadata(&abs) {
        Ok(_) => Ok(abs),
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                _ => e.to_string(),
            };
            Err(Errcode::usage(format!("invalid {flag} '{shown}': {why}")))
        }
    }
}

/// `--tmpfs-size`: at least 1 MiB (a tmpfs of size 0 would be unlimited).
fn tmpfs_size(v: &str) -> Result<u64> {
    let n = crabcan_units::parse_size(v)
        .map_err(|e| e.context(format!("invalid --tmpfs-size '{v}'")))?;
    if n < 1 << 20 {
        return Err(Errcode::usage(format!(
            "invalid --tmpfs-size '{v}': must be at least 1m"
        )));
    }
    Ok(n)
}

/// Checks `args` and builds the configuration. `hostname` supplies a random name when
/// none is given (called at most once).
pub fn build(args: &RunArgs, caller: &Caller, hostname: impl FnOnce() -> String) -> Result<Config> {
    let root_dir = match &args.mount {
        None => Root::Scratch,
        Some(m) => {
            let m = utf8("--mount", m)?;
            if m.trim().is_empty() {
                return Err(Errcode::usage("invalid --mount '': empty path"));
            }
            let dir = host_path("--mount", m, m, &caller.cwd)?;
            if !dir.is_dir() {
                return Err(Errcode::usage(format!(
                    "invalid --mount '{m}': not a directory"
                )));
            }
            Root::Dir(dir)
        }
    };

    let words: Vec<String> = match (&args.command, args.args.is_empty()) {
        (Some(_), false) => {
            return Err(Errcode::usage(
                "give the command either with --command or after --, not both",
            ));
        }
        (Some(c), true) => c.split_whitespace().map(String::from).collect(),
        (None, _) => args
            .args
            .iter()
            .map(|a| utf8("command", a).map(String::from))
            .collect::<Result<_>>()?,
    };
    let argv = crabcan_child::argv(&words)?;

    let root = caller.euid == 0;
    if args.userns_base.is_some() && args.userns == UsernsArg::Host && root {
        return Err(Errcode::usage(
            "give either --userns host or --userns-base, not both",
        ));
    }
    // Root's container gets a range of its own unless the caller chose one (or none).
    let auto_ids = root && args.userns == UsernsArg::Auto && args.userns_base.is_none();
    let base = if auto_ids {
        // A placeholder with the right size; the real range is allocated at start.
        Some(crabcan_child::POOL_BASE)
    } else {
        args.userns_base
    };
    let idmap = IdMap::for_caller(caller.euid, caller.egid, base, caller.subids)?;
    idmap.check_uid(args.uid)?;
    // Root's ids are not host ids: the root directory is idmapped so its files keep their
    // owners inside (an ordinary user maps their own id, which owns their files already).
    let idmap_root = root && idmap.uids.first().is_some_and(|r| r.outside != 0);

    let hostname = match &args.hostname {
        Some(h) => {
            crabcan_hostname::validate(h)?;
            h.clone()
        }
        None => hostname(),
    };

    let workdir = crabcan_mounts::container_path(&args.workdir)
        .or_else(|why| {
            if args.workdir == "/" {
                Ok(PathBuf::from("/"))
            } else {
                Err(why)
            }
        })
        .map_err(|why| Errcode::usage(format!("invalid --workdir: {why}")))?;

    let mut binds = Vec::with_capacity(args.add.len());
    for spec in &args.add {
        let mut b =
            BindMount::parse(spec).map_err(|e| e.context(format!("invalid --add '{spec}'")))?;
        let src = b.source.to_string_lossy().into_owned();
        b.source = host_path("--add", spec, &src, &caller.cwd)?;
        binds.push(b);
    }

    let net = match args.net {
        NetArg::None => Net::None,
        NetArg::Host => Net::Host,
    };
    let mounts = MountConfig {
        readonly_root: args.read_only,
        binds,
        sysfs: if net == Net::None {
            Sysfs::Fresh
        } else {
            Sysfs::HostBind
        },
        devpts_gid: idmap.contains(5).then_some(5),
        idmap_root: idmap_root && matches!(root_dir, Root::Dir(_)),
        scratch_size: match &args.tmpfs_size {
            Some(v) => tmpfs_size(v)?,
            None => crabcan_mounts::DEFAULT_SCRATCH_SIZE,
        },
        ..MountConfig::new(root_dir.clone())
    };
    let env = crabcan_child::environment(&hostname, args.uid, caller.term.as_deref(), &args.env)?;
    let caps = |flag: &str, names: &[String]| {
        crabcan_security::parse_cap_list(names).map_err(|e| e.context(flag))
    };
    let kept = crabcan_security::kept_set(
        &caps("--cap-add", &args.cap_add)?,
        &caps("--cap-drop", &args.cap_drop)?,
    );
    let (seccomp, seccomp_text, seccomp_later) = seccomp_choice(&args.seccomp, &caller.cwd)?;
    let named = named(args, caller, seccomp_text)?;
    let security = crabcan_security::plan(&crabcan_security::SecurityConfig {
        capabilities: crabcan_security::Capabilities::for_uid(kept, args.uid),
        no_new_privs: true,
        seccomp,
    })?;
    use crabcan_cgroups as cg;
    let limits = cg::Limits {
        memory: opt("--memory", &args.memory, crabcan_units::parse_size)?,
        memory_swap: opt(
            "--memory-swap",
            &args.memory_swap,
            cg::parse_size_or_unlimited,
        )?,
        pids: opt("--pids", &args.pids, cg::parse_count_or_unlimited)?,
        cpus: opt("--cpus", &args.cpus, cg::parse_decimal)?,
        cpu_weight: opt("--cpu-weight", &args.cpu_weight, cg::parse_count)?,
    };
    if let Err((kind, e)) = limits.resources() {
        let (flag, v) = limit_flag(kind, args);
        return Err(e.context(format!("invalid {flag} '{}'", v.escape_debug())));
    }
    let rlimits = args
        .ulimit
        .iter()
        .map(|u| {
            crabcan_security::parse_rlimit(u)
                .map_err(|e| e.context(format!("invalid --ulimit '{}'", u.escape_debug())))
        })
        .collect::<Result<Vec<_>>>()?;
    let nproc_given = rlimits.iter().any(|r| r.name == "nproc");
    Ok(Config {
        child: ChildSpec {
            argv,
            env,
            workdir,
            hostname,
            uid: args.uid,
            idmap,
            mounts: crabcan_mounts::plan(&mounts)?,
            net,
            security,
            rlimits,
            init: !args.no_init,
            // The size is the caller's terminal's, read when the container starts.
            tty: args.tty.then(crabcan_child::Tty::default),
            // The runtime sets it from `seccomp_later` below.
            seccomp_later: false,
        },
        seccomp_later,
        seccomp_off: args.seccomp == SeccompArg::Unconfined,
        limits,
        auto_ids,
        nproc_given,
        named,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Parsed, parse};
    use crabcan_mounts::{Fs, Step};
    use proptest::prelude::*;

    fn args(v: &[&str]) -> RunArgs {
        let mut all = vec!["crabcan", "run"];
        all.extend_from_slice(v);
        match parse(all.iter().map(Into::into).collect()).unwrap() {
            Parsed::Run { args, .. } => *args,
            Parsed::Print(p) => panic!("{p}"),
        }
    }

    fn devpts(gid: Option<u32>) -> Step {
        Step::Fresh {
            fs: Fs::Devpts,
            target: "/dev/pts".into(),
            gid,
        }
    }

    fn caller(euid: u32) -> Caller {
        Caller {
            euid,
            egid: euid,
            cwd: std::env::temp_dir(),
            term: Some("xterm".into()),
            subids: None,
            xdg_runtime_dir: None,
        }
    }

    fn build_err(v: &[&str]) -> String {
        let e = build(&args(v), &caller(0), || "h".into()).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        e.to_string()
    }

    /// A directory and a file under the crate's target dir (never /tmp: nothing is left there).
    fn fixture() -> (PathBuf, PathBuf) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        (dir.clone(), dir.join("config.rs"))
    }

    #[test]
    fn a_good_config() {
        let (dir, file) = fixture();
        let d = dir.to_str().unwrap();
        let f = file.to_str().unwrap();
        let a = args(&[
            "-m",
            d,
            "-u",
            "5",
            "-a",
            &format!("{f}:/etc/x.conf:ro"),
            "-e",
            "A=1",
            "-w",
            "/srv",
            "--read-only",
            "--",
            "ls",
            "-l",
        ]);
        let c = build(&a, &caller(0), || "rand-name-1".into()).unwrap();
        assert_eq!(c.child.mounts.root, Root::Dir(dir.clone()));
        assert_eq!(
            c.child.argv,
            [
                std::ffi::CString::new("ls").unwrap(),
                std::ffi::CString::new("-l").unwrap()
            ]
        );
        assert_eq!(c.child.uid, 5);
        assert_eq!(c.child.hostname, "rand-name-1");
        assert_eq!(c.child.workdir, Path::new("/srv"));
        let plan = &c.child.mounts;
        assert!(plan.steps.contains(&Step::RootFromDir {
            dir: dir.clone(),
            read_only: true,
            idmap: true
        }));
        assert!(c.auto_ids && c.child.init);
        assert!(plan.sources.iter().any(|s| s.path == file && s.read_only));
        assert!(plan.targets().any(|t| t == Path::new("/etc/x.conf")));
        assert!(plan.steps.contains(&devpts(Some(5))));
        assert!(
            c.child
                .env
                .iter()
                .any(|e| e.to_bytes() == b"HOSTNAME=rand-name-1")
        );
    }

    fn root_idmapped(c: &Config) -> bool {
        c.child
            .mounts
            .steps
            .iter()
            .any(|s| matches!(s, Step::RootFromDir { idmap: true, .. }))
    }

    #[test]
    fn user_namespace_modes() {
        let (dir, _) = fixture();
        let d = dir.to_str().unwrap();
        // Root by default: an allocated range (rebased later) and an idmapped root.
        let c = build(&args(&["-m", d, "--", "x"]), &caller(0), || "h".into()).unwrap();
        assert!(c.auto_ids && root_idmapped(&c));
        assert_eq!(c.child.idmap.uid_map(), "0 3221225472 65536\n");
        // --userns host: the identity map, nothing idmapped.
        let c = build(
            &args(&["-m", d, "--userns", "host", "--", "x"]),
            &caller(0),
            || "h".into(),
        )
        .unwrap();
        assert!(!c.auto_ids && !root_idmapped(&c));
        assert_eq!(c.child.idmap.uid_map(), "0 0 65536\n");
        // --userns-base: the chosen range, idmapped, nothing allocated.
        let c = build(
            &args(&["-m", d, "--userns-base", "100000", "--", "x"]),
            &caller(0),
            || "h".into(),
        )
        .unwrap();
        assert!(!c.auto_ids && root_idmapped(&c));
        assert_eq!(c.child.idmap.uid_map(), "0 100000 65536\n");
        let e = build_err(&["--userns", "host", "--userns-base", "5", "--", "x"]);
        assert!(
            e.contains("--userns host") && e.contains("--userns-base"),
            "{e}"
        );
        // An ordinary user maps their own ids, which own their files: no idmap.
        let c = build(&args(&["-m", d, "--", "x"]), &caller(1000), || "h".into()).unwrap();
        assert!(!c.auto_ids && !root_idmapped(&c));
        // A scratch root is a tmpfs of the container's own: never idmapped.
        let c = build(&args(&["--", "x"]), &caller(0), || "h".into()).unwrap();
        assert!(c.auto_ids && !root_idmapped(&c));
    }

    #[test]
    fn init_nproc_and_tmpfs_size() {
        let c = build(
            &args(&["--no-init", "--ulimit", "NPROC=10", "--", "x"]),
            &caller(0),
            || "h".into(),
        )
        .unwrap();
        assert!(!c.child.init && c.nproc_given);
        let c = build(
            &args(&["--tmpfs-size", "10m", "--", "x"]),
            &caller(0),
            || "h".into(),
        )
        .unwrap();
        assert!(c.child.init && !c.nproc_given);
        assert!(
            c.child
                .mounts
                .steps
                .contains(&Step::RootScratch { size: 10 << 20 })
        );
        let c = build(&args(&["--", "x"]), &caller(0), || "h".into()).unwrap();
        assert!(
            c.child
                .mounts
                .steps
                .contains(&Step::RootScratch { size: 256 << 20 })
        );
        for (v, why) in [("0", "at least 1m"), ("1023k", "at least 1m"), ("5q", "5q")] {
            let e = build_err(&["--tmpfs-size", v, "--", "x"]);
            assert!(e.contains("--tmpfs-size") && e.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn command_string_is_split_on_whitespace() {
        let c = build(&args(&["-c", "  /bin/sh   -c  id "]), &caller(0), || {
            "h".into()
        })
        .unwrap();
        let words: Vec<_> = c.child.argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(words, ["/bin/sh", "-c", "id"]);
    }

    #[test]
    fn relative_mount_is_resolved_against_cwd() {
        let (dir, _) = fixture();
        let mut cl = caller(0);
        cl.cwd = dir.parent().unwrap().to_path_buf();
        let c = build(&args(&["-m", "src", "--", "x"]), &cl, || "h".into()).unwrap();
        assert_eq!(c.child.mounts.root, Root::Dir(dir));
    }

    #[test]
    fn bad_inputs_say_what_and_why() {
        let (dir, file) = fixture();
        let f = file.to_str().unwrap();
        let d = dir.to_str().unwrap();
        for (v, want) in [
            (
                vec!["-m", "/no/such/dir", "--", "x"],
                "invalid --mount '/no/such/dir': no such",
            ),
            (
                vec!["-m", "relative-absent", "--", "x"],
                "invalid --mount 'relative-absent'",
            ),
            (vec!["-m", f, "--", "x"], "not a directory"),
            (vec!["-m", "", "--", "x"], "invalid --mount"),
            (vec!["-c", "   "], "no command given"),
            (vec![], "no command given"),
            (vec!["-c", "ls", "--", "ls"], "not both"),
            (vec!["-a", "nocolon", "--", "x"], "expected SRC:DST"),
            (vec!["-a", "/etc:rel", "--", "x"], "not an absolute path"),
            (vec!["-a", "/etc:/a/../b", "--", "x"], "'.' or '..'"),
            (
                vec!["-a", "/no/such/src:/x", "--", "x"],
                "invalid --add '/no/such/src:/x': no such",
            ),
            (vec!["-u", "70000", "--", "x"], "invalid --uid 70000"),
            (
                vec!["--hostname", "bad_name", "--", "x"],
                "invalid --hostname",
            ),
            (
                vec!["--hostname", &"a".repeat(64), "--", "x"],
                "invalid --hostname",
            ),
            (vec!["-w", "rel", "--", "x"], "invalid --workdir"),
            (vec!["-e", "NOVALUE", "--", "x"], "invalid --env"),
            (vec!["--cap-add", "CAP_FLY", "--", "x"], "CAP_FLY"),
            (vec!["--cap-drop", "", "--", "x"], "--cap-drop"),
            (vec!["--memory", "lots", "--", "x"], "--memory"),
            (vec!["--memory", "0", "--", "x"], "--memory"),
            (vec!["--memory-swap", "1.5x", "--", "x"], "--memory-swap"),
            (vec!["--pids=-3", "--", "x"], "--pids"),
            (vec!["--cpus", "NaN", "--", "x"], "--cpus"),
            (vec!["--cpus", "0", "--", "x"], "--cpus"),
            (vec!["--cpu-weight", "0", "--", "x"], "--cpu-weight"),
            (
                vec!["--ulimit", "nofile", "--", "x"],
                "invalid --ulimit 'nofile': expected NAME=SOFT[:HARD]",
            ),
            (
                vec!["--ulimit", "bogus=1", "--", "x"],
                "invalid --ulimit 'bogus=1': unknown limit 'bogus'",
            ),
            (
                vec!["--ulimit", "nofile=10:5", "--", "x"],
                "invalid --ulimit 'nofile=10:5': the soft limit is above",
            ),
        ] {
            let mut v = v;
            if v.first() == Some(&"-m") {
                // keep as is
            } else if !v.contains(&"-m") {
                v.splice(0..0, ["-m", d]);
            }
            let e = build_err(&v);
            assert!(e.contains(want), "{v:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn unprivileged_caller_only_has_uid_zero() {
        let e = build(&args(&["-u", "1", "--", "x"]), &caller(1000), || "h".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("only uid 0"), "{e}");
        let c = build(&args(&["--", "x"]), &caller(1000), || "h".into()).unwrap();
        assert!(c.child.idmap.deny_setgroups);
        assert!(
            c.child.mounts.steps.contains(&devpts(None)),
            "gid 5 is not mapped"
        );
    }

    #[test]
    fn non_utf8_paths_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let mut a = args(&["--", "x"]);
        a.mount = Some(std::ffi::OsString::from_vec(vec![b'/', 0xff]));
        let e = build(&a, &caller(0), || "h".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid UTF-8"), "{e}");
        let mut a = args(&[]);
        a.args = vec![std::ffi::OsString::from_vec(vec![0xff])];
        assert!(build(&a, &caller(0), || "h".into()).is_err());
    }

    #[test]
    fn host_net_binds_sys() {
        let c = build(&args(&["--net", "host", "--", "x"]), &caller(0), || {
            "h".into()
        })
        .unwrap();
        assert_eq!(c.child.net, Net::Host);
        assert!(
            !c.child
                .mounts
                .steps
                .iter()
                .any(|s| matches!(s, Step::Fresh { fs: Fs::Sysfs, .. })),
            "--net host cannot mount a fresh sysfs"
        );
    }

    proptest! {
        #[test]
        fn no_input_panics(cmd in "\\PC{0,20}", add in "\\PC{0,20}", host in "\\PC{0,20}",
                           env in "\\PC{0,20}", wd in "\\PC{0,20}", uid in any::<u32>()) {
            let mut a = args(&[]);
            a.command = Some(cmd);
            a.add = vec![add];
            a.hostname = Some(host);
            a.env = vec![env];
            a.workdir = wd;
            a.uid = uid;
            let _ = build(&a, &caller(0), || "h".into());
            let _ = build(&a, &caller(1000), || "h".into());
        }
    }
}
