//! Runs a configured container: the one-shot lifecycle of crabcan-runtime (create, start,
//! wait, delete), with the caller's terminal and the messages that name this command
//! line's flags.

use crate::config::Config;
use crabcan_errors::{Errcode, Result};
use crabcan_runtime::oneshot;

/// Runs the container described by `cfg` and returns the exit code crabcan should end with.
pub fn run(cfg: Config) -> Result<i32> {
    let Config {
        child: mut spec,
        seccomp_off,
        seccomp_later,
        limits,
        auto_ids,
        nproc_given,
        named,
    } = cfg;
    let memory = limits.memory;
    let tty = spec.tty.is_some();
    let terminal = match spec.tty.as_mut() {
        Some(t) => {
            t.size = crate::terminal::caller_size();
            // With -t, the caller's terminal goes raw: a SIGKILLed crabcan cannot put it
            // back, so its guardian does.
            let cooked = crate::terminal::Saved::read();
            Some(oneshot::Terminal {
                restore: cooked.map(|t| Box::new(move || t.restore()) as Box<dyn Fn()>),
                relay: Box::new(crate::terminal::relay),
            })
        }
        None => None,
    };
    let record = named.map(|n| oneshot::Record {
        shown: format!("the container --name {}", n.name),
        root: n.root,
        name: n.name,
        seccomp: n.seccomp,
        read_only: n.read_only,
    });
    let mut container = oneshot::create(oneshot::Spec {
        child: spec,
        limits,
        limit_name: |k| crate::config::limit_flag_name(k).to_string(),
        auto_ids,
        nproc_given,
        record,
        terminal,
        seccomp_later,
    })
    .map_err(userns_hint)?;
    if seccomp_off {
        log::warn!("--seccomp unconfined: the container runs without a system call filter");
    }
    // With -t, the caller's terminal is raw from here until the container is gone,
    // whatever happens in between (the guard is dropped on every way out, before the
    // container is deleted). Not earlier: create may re-execute crabcan, which would leave
    // the terminal raw.
    let raw = if tty {
        crate::terminal::RawMode::enter()?
    } else {
        None
    };
    container.start()?;
    let code = container.wait()?;
    drop(raw);
    if code == 137 && container.oom_kills() > 0 {
        // One line naming the limit; the exit code stays the container's own.
        eprintln!(
            "crabcan: the container was killed by the kernel's OOM killer: it reached --memory ({} bytes)",
            memory.map_or("?".into(), |m| m.to_string())
        );
    }
    container.delete();
    Ok(code)
}

/// The mounts' hints say "without an id map"; on this command line that is `--userns host`.
fn userns_hint(e: Errcode) -> Errcode {
    let shown = e.to_string();
    if shown.contains("(realpath), or run without an id map") {
        e.with_hint("give the path without symlinks (realpath), or run with --userns host")
    } else if shown.contains("cannot be idmapped; only a container without an id map") {
        e.with_hint(
            "its filesystem cannot be idmapped; --userns host runs without \
             an id map (container root is then host root)",
        )
    } else {
        e
    }
}
