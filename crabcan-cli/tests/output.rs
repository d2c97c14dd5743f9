//! What crabcan prints on stdout goes to a reader that may leave early (`crabcan --help | head`).

mod common;

use common::crabcan_bin;
use std::process::{Command, Stdio};

/// Runs crabcan with ARGS, its stdout a pipe whose reading end is already closed.
fn into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    Command::new(crabcan_bin())
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run crabcan")
}

#[test]
fn output_into_a_closed_pipe_is_no_panic() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["create", "--help"],
        &["--version"],
        &["features"],
    ] {
        let out = into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "crabcan {args:?} panicked on a closed stdout: {stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "crabcan {args:?} into a closed pipe: {stderr}"
        );
    }
}
