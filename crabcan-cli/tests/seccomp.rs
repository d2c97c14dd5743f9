//! `crabcan run --seccomp FILE`: an OCI profile from a file takes effect in the container,
//! and a bad one stops crabcan with one line naming the file, the JSON path and the reason
//! (exit 125), never running the command without a filter.

mod common;

use common::*;
use std::path::PathBuf;

/// A profile file under target/, removed on drop.
struct ProfileFile(PathBuf);

impl ProfileFile {
    fn new(name: &str, json: &str) -> ProfileFile {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("seccomp-{name}-{}.json", std::process::id()));
        std::fs::write(&p, json).expect("write the profile");
        ProfileFile(p)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for ProfileFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_profile_file_takes_effect() {
    require_root();
    // Everything allowed but mkdir and mkdirat, refused with EACCES (13).
    let f = ProfileFile::new(
        "mkdir",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    // The command is the init's child, or the first process itself.
    for extra in [&[][..], &["--no-init"][..]] {
        let mut args = vec!["--seccomp", f.arg()];
        args.extend_from_slice(extra);
        let o = sh(
            &args,
            "mkdir /tmp/seccomp-mkdir 2>&1; echo rc=$?; echo alive",
        );
        let out = stdout(&o);
        assert!(
            out.contains("Permission denied") && out.contains("rc=1") && out.contains("alive"),
            "{extra:?} stdout: {out}\nstderr: {}",
            stderr(&o)
        );
    }
    // The same command under the default filter creates the directory.
    let o = sh(
        &[],
        "mkdir /tmp/seccomp-mkdir && echo made; rmdir /tmp/seccomp-mkdir",
    );
    assert!(stdout(&o).contains("made"), "{}", stderr(&o));
}

#[test]
fn a_bad_profile_is_one_line_naming_the_path_and_exit_125() {
    require_root();
    let f = ProfileFile::new(
        "bad-op",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],
            "action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_FOO"}]}]}"#,
    );
    let o = sh(&["--seccomp", f.arg()], "echo RAN");
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(!stdout(&o).contains("RAN"), "the command ran");
    let err = stderr(&o);
    let want = format!(
        "{} syscalls[0].args[0].op: unknown op \"SCMP_CMP_FOO\"",
        f.arg()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let notify = ProfileFile::new(
        "notify",
        r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/run/agent.sock"}"#,
    );
    let o = sh(&["--seccomp", notify.arg()], "echo RAN");
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("/run/agent.sock"), "{}", stderr(&o));

    let o = sh(&["--seccomp", "/no/such/profile.json"], "echo RAN");
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/no/such/profile.json"),
        "{}",
        stderr(&o)
    );
}

/// A profile that parses but cannot be compiled (two rules for one call with different
/// actions, which could both match) is found while the container's process sets up: the
/// run fails the same way, and leaves nothing.
#[test]
fn a_profile_that_cannot_be_compiled_fails_the_run_and_leaves_nothing() {
    require_root();
    let f = ProfileFile::new(
        "overlap",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO",
             "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]},
            {"names":["read"],"action":"SCMP_ACT_KILL",
             "args":[{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let host = format!("overlap-{}", std::process::id());
    let before = host_state();
    let o = sh(&["--seccomp", f.arg(), "--hostname", &host], "echo RAN");
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(!stdout(&o).contains("RAN"), "the command ran");
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("invalid --seccomp {} syscalls[1]", f.arg()))
            && err.contains("can match the same call"),
        "{err}"
    );
    assert_eq!(host_state(), before, "host state changed");
    let left = cgroups_named(&format!("crabcan-{host}@"));
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// The container's process failing its setup while crabcan compiles the given profile:
/// its own error is the one shown, not crabcan's failure to send it the program.
#[test]
fn a_setup_error_while_the_profile_compiles_is_the_one_shown() {
    require_root();
    let f = ProfileFile::new(
        "setup-error",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    for _ in 0..5 {
        // One process allowed: the init cannot fork the command.
        let o = sh(&["--seccomp", f.arg(), "--pids", "1"], "echo RAN");
        assert_eq!(code(&o), 125, "{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("fork the command from the init") && err.contains("process limit"),
            "{err}"
        );
    }
}
