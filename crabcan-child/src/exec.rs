//! The command: its environment, the PATH search inside the container, and `execve`.

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;
use std::ffi::{CStr, CString};

/// The PATH a container gets unless `-e PATH=…` says otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds the command's environment: PATH, HOME, TERM (when the caller has one) and
/// HOSTNAME, then each `KEY=VALUE` of `extra` (later ones win).
pub fn environment(
    hostname: &str,
    uid: u32,
    term: Option<&str>,
    extra: &[String],
) -> Result<Vec<CString>> {
    let home = if uid == 0 { "/root" } else { "/" };
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), home.into()),
    ];
    if let Some(t) = term {
        vars.push(("TERM".into(), t.into()));
    }
    vars.push(("HOSTNAME".into(), hostname.into()));
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Errcode::usage(format!("invalid --env '{kv}': expected KEY=VALUE")))?;
        if k.is_empty() {
            return Err(Errcode::usage(format!(
                "invalid --env '{kv}': the name is empty"
            )));
        }
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.into(),
            None => vars.push((k.into(), v.into())),
        }
    }
    vars.into_iter()
        .map(|(k, v)| {
            CString::new(format!("{k}={v}"))
                .map_err(|_| Errcode::usage(format!("invalid --env '{k}': it contains a NUL byte")))
        })
        .collect()
}

/// Turns the command words into C strings, refusing an empty command and NUL bytes.
pub fn argv(words: &[String]) -> Result<Vec<CString>> {
    if words.is_empty() || words[0].trim().is_empty() {
        return Err(Errcode::usage("no command given").with_hint(
            "give it after --, e.g. crabcan run -- /bin/sh, or as --command \"/bin/sh -c 'id'\"",
        ));
    }
    words
        .iter()
        .map(|w| {
            CString::new(w.as_bytes()).map_err(|_| {
                Errcode::usage(format!(
                    "invalid command word '{w}': it contains a NUL byte"
                ))
            })
        })
        .collect()
}

/// The value of PATH in `env`, or the default.
pub fn path_of(env: &[CString]) -> &[u8] {
    env.iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH.as_bytes())
}

/// The candidate files for `cmd` in search order: itself when it has a `/`, else each PATH
/// directory joined with it (an empty entry means the working directory).
pub fn candidates(cmd: &[u8], path: &[u8]) -> Vec<Vec<u8>> {
    if cmd.contains(&b'/') {
        return vec![cmd.to_vec()];
    }
    path.split(|b| *b == b':')
        .map(|dir| {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut p = dir.to_vec();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(cmd);
            p
        })
        .collect()
}

/// Searches PATH for `argv[0]` and executes it. Returns only on failure, with 127 (not
/// found) or 126 (cannot execute) semantics.
pub fn exec(argv: &[CString], env: &[CString]) -> Errcode {
    let Some(cmd) = argv.first() else {
        return Errcode::usage("no command given");
    };
    let name = cmd.to_string_lossy();
    let mut denied = None;
    for cand in candidates(cmd.as_bytes(), path_of(env)) {
        let Ok(c) = CString::new(cand) else { continue };
        let err = match nix::unistd::execve(&c, argv, env) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        match err {
            Errno::ENOENT | Errno::ENOTDIR => {
                if exists(&c) {
                    // The file is there but its interpreter or loader is not.
                    return Errcode::not_executable(&name, err).with_hint(format!(
                        "{} exists, but its interpreter or dynamic loader is missing in the container",
                        c.to_string_lossy()
                    ));
                }
            }
            Errno::EACCES => {
                denied.get_or_insert(err);
            }
            e => return Errcode::not_executable(&name, e),
        }
    }
    match denied {
        Some(e) => Errcode::not_executable(&name, e),
        None => Errcode::not_found(&name),
    }
}

/// Finds the file `argv[0]` names in the container (a PATH search from `env` when it has
/// no `/`) before anything runs, as runc does: a missing command fails `create` with runc's
/// words, which engines match (`exec: "foo": executable file not found in $PATH`).
pub fn resolve(argv: &[CString], env: &[CString]) -> crabcan_errors::Result<CString> {
    let Some(cmd) = argv.first() else {
        return Err(Errcode::usage("no command given"));
    };
    let name = cmd.to_string_lossy();
    let executable = |c: &CStr| -> std::result::Result<(), Errno> {
        let st = nix::sys::stat::stat(c)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EACCES);
        }
        nix::unistd::access(c, nix::unistd::AccessFlags::X_OK)
    };
    if cmd.as_bytes().contains(&b'/') {
        return match executable(cmd) {
            Ok(()) => Ok(cmd.clone()),
            Err(Errno::ENOENT) => Err(Errcode::setup(format!(
                "exec: \"{name}\": stat {name}: no such file or directory"
            ))),
            Err(e) => Err(Errcode::setup(format!(
                "exec: \"{name}\": {}",
                e.desc().to_lowercase()
            ))),
        };
    }
    for cand in candidates(cmd.as_bytes(), path_of(env)) {
        let Ok(c) = CString::new(cand) else { continue };
        if executable(&c).is_ok() {
            return Ok(c);
        }
    }
    Err(Errcode::setup(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

fn exists(p: &CStr) -> bool {
    nix::sys::stat::stat(p).is_ok()
}

/// Changes to the working directory `cwd` of a process already in its root, and makes sure
/// it is inside that root: a path through a magic link (`/proc/PID/cwd` of a host process,
/// which a container without its own pid namespace sees) or a descriptor that leads out of
/// it makes the kernel report the directory as unreachable, and that is refused. The
/// process still has its capabilities here, so such a directory would give it the host's
/// files (the CVE-2024-21626 class).
pub(crate) fn chdir_inside(cwd: &std::path::Path) -> Result<()> {
    use crabcan_errors::SysContext;
    nix::unistd::chdir(cwd)
        .sys_ctx(|| format!("chdir to the working directory {}", cwd.display()))?;
    let outside = match nix::unistd::getcwd() {
        Ok(here) => !here.is_absolute() || here.starts_with("(unreachable)"),
        // The C library reports an unreachable directory as ENOENT.
        Err(Errno::ENOENT) => true,
        Err(e) => return Err(Errcode::sys("read the working directory (getcwd)", e)),
    };
    if outside {
        return Err(Errcode::usage(format!(
            "the working directory {} is outside the container's root",
            cwd.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strs(v: &[CString]) -> Vec<String> {
        v.iter().map(|c| c.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn default_environment() {
        let env = environment("a-b-1", 0, Some("xterm"), &[]).unwrap();
        assert_eq!(
            strs(&env),
            [
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/root".into(),
                "TERM=xterm".into(),
                "HOSTNAME=a-b-1".into()
            ]
        );
        let env = environment("h", 1000, None, &[]).unwrap();
        assert!(strs(&env).contains(&"HOME=/".to_string()));
        assert!(!strs(&env).iter().any(|e| e.starts_with("TERM=")));
    }

    #[test]
    fn extra_env_overrides_and_adds() {
        let env = environment("h", 0, None, &["PATH=/bin".into(), "A=b=c".into()]).unwrap();
        let env = strs(&env);
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"A=b=c".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn bad_env_is_refused() {
        for bad in ["NOEQUALS", "=v", "A=\0"] {
            let e = environment("h", 0, None, &[bad.into()]).unwrap_err();
            assert!(e.to_string().starts_with("invalid --env"), "{e}");
        }
    }

    #[test]
    fn empty_command_is_refused() {
        assert!(argv(&[]).is_err());
        assert!(argv(&["  ".into()]).is_err());
        assert!(argv(&["a\0b".into()]).is_err());
        assert_eq!(
            strs(&argv(&["ls".into(), "-l".into()]).unwrap()),
            ["ls", "-l"]
        );
    }

    #[test]
    fn path_search_order() {
        assert_eq!(candidates(b"/bin/ls", b"/x"), vec![b"/bin/ls".to_vec()]);
        assert_eq!(candidates(b"./ls", b"/x"), vec![b"./ls".to_vec()]);
        assert_eq!(
            candidates(b"ls", b"/usr/bin:/bin/::/sbin"),
            vec![
                b"/usr/bin/ls".to_vec(),
                b"/bin/ls".to_vec(),
                b"./ls".to_vec(),
                b"/sbin/ls".to_vec()
            ]
        );
        let env = vec![CString::new("PATH=/only").unwrap()];
        assert_eq!(path_of(&env), b"/only");
        assert_eq!(path_of(&[]), DEFAULT_PATH.as_bytes());
    }

    proptest! {
        #[test]
        fn every_candidate_ends_with_the_command(cmd in "[a-z]{1,8}", path in "[a-z/:]{0,30}") {
            for c in candidates(cmd.as_bytes(), path.as_bytes()) {
                prop_assert!(c.ends_with(cmd.as_bytes()));
            }
        }
    }
}
