//! The commands that act on a running container through its cgroup: pause, resume,
//! update, the processes (`ps`) and usage counters (`events`), with runc's wording.

use crate::state::{Locked, Status};
use crate::{open_cgroup, status_of};
use crabcan_cgroups::{ContainerCgroup, Resources, Stats};
use crabcan_errors::{Errcode, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// runc's words for a command that needs a live container.
fn not_running() -> Errcode {
    Errcode::usage("container not running")
}

/// The container's cgroup, locked in its state directory while the command runs, and
/// refused when the container has stopped.
fn live_cgroup(root: &Path, id: &str) -> Result<(Locked, Status, ContainerCgroup)> {
    live_cgroup_locked(Locked::open(root, id)?, id)
}

fn live_cgroup_locked(l: Locked, id: &str) -> Result<(Locked, Status, ContainerCgroup)> {
    let s = l.read()?;
    let st = status_of(l.dir(), &s);
    if st == Status::Stopped {
        return Err(not_running());
    }
    let Some(cg) = open_cgroup(&s) else {
        return Err(Errcode::setup(format!(
            "container {id} has no cgroup (created without one, or it was removed)"
        )));
    };
    Ok((l, st, cg))
}

/// `pause ID`: freezes every process of a created or running container and returns once
/// the kernel reports the cgroup frozen.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (_l, st, cg) = live_cgroup(root, id)?;
    match st {
        Status::Running => {}
        // Its process waits for start in the fifo's open, which a frozen process never
        // leaves; and a created container's status is read from its fifo, not its freezer.
        Status::Created => {
            return Err(Errcode::usage(
                "cannot pause a container that has not started",
            ));
        }
        Status::Paused => return Err(Errcode::usage("container already paused")),
        _ => return Err(not_running()),
    }
    cg.freeze().map_err(|e| e.context(format!("pause {id}")))
}

/// `resume ID`: thaws a paused container and returns once the kernel reports it thawed.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let l = Locked::open(root, id)?;
    let s = l.read()?;
    // runc's word for every status but paused, stopped included.
    if status_of(l.dir(), &s) != Status::Paused {
        return Err(Errcode::usage("container not paused"));
    }
    let (_l, _st, cg) = live_cgroup_locked(l, id)?;
    cg.thaw().map_err(|e| e.context(format!("resume {id}")))
}

/// `update ID`: writes the given limits into the container's cgroup; what is not given
/// stays as it is. Device rules are not changed (as with runc).
///
/// Nothing else records the limits: the kernel's cgroup files are the only copy, and a
/// later exec joins the same cgroup, so it is under the new limits.
pub fn update(root: &Path, id: &str, resources: &Resources) -> Result<()> {
    let (_l, _st, cg) = live_cgroup(root, id)?;
    cg.update(resources)
        .map_err(|e| e.context(format!("update {id}")))
}

/// `ps ID`: the pids of every process in the container's cgroup, sorted.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let (_l, _st, cg) = live_cgroup(root, id)?;
    cg.pids()
}

/// One line of `events`, in runc's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// "stats" or "oom".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The container id.
    pub id: String,
    /// The counters of a "stats" event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// The usage counters of a live container now.
pub fn stats(root: &Path, id: &str) -> Result<Event> {
    let (_l, _st, cg) = live_cgroup(root, id)?;
    Ok(Event {
        kind: "stats",
        id: id.to_string(),
        data: Some(cg.stats()?),
    })
}

/// How often `events` looks for OOM kills between its stats lines.
const OOM_POLL: Duration = Duration::from_millis(100);

/// `events ID` without `--stats`: a stats event every `interval` and an "oom" event for
/// each OOM kill in the cgroup, passed to `emit`, until the container stops (then Ok) or
/// `emit` fails. The state directory is not held locked in between, so other commands
/// (pause, delete) go on meanwhile.
pub fn watch(
    root: &Path,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&Event) -> Result<()>,
) -> Result<()> {
    let mut ooms = {
        let (_l, _st, cg) = live_cgroup(root, id)?;
        cg.oom_kills()
    };
    let mut next_stats = Instant::now() + interval;
    loop {
        std::thread::sleep(OOM_POLL.min(interval));
        let cg = match live_cgroup(root, id) {
            Ok((_l, _st, cg)) => cg,
            // Stopped or deleted: the stream ends, as runc's does.
            Err(_) => return Ok(()),
        };
        let now = cg.oom_kills();
        for _ in ooms..now {
            emit(&Event {
                kind: "oom",
                id: id.to_string(),
                data: None,
            })?;
        }
        ooms = ooms.max(now);
        if Instant::now() >= next_stats {
            next_stats += interval;
            emit(&Event {
                kind: "stats",
                id: id.to_string(),
                data: Some(cg.stats()?),
            })?;
        }
    }
}

/// Picks the lines of `ps` output whose PID column is one of `pids`, with the header
/// first, as runc's `ps` prints them. The output must have a `PID` column.
pub fn filter_ps(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let Some(col) = header.split_whitespace().position(|f| f == "PID") else {
        return Err(Errcode::usage("couldn't find PID field in ps output"));
    };
    let mut out = format!("{header}\n");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_are_filtered_by_the_pid_column() {
        let text = "UID        PID  PPID  C STIME TTY          TIME CMD\n\
                    root         1     0  0 10:00 ?        00:00:01 init\n\
                    root        42     1  0 10:00 ?        00:00:00 sleep 42\n\
                    root       420     1  0 10:00 ?        00:00:00 sleep 1 42\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(
            out,
            "UID        PID  PPID  C STIME TTY          TIME CMD\n\
             root        42     1  0 10:00 ?        00:00:00 sleep 42\n"
        );
        // Another column layout (ps -o): the PID column is found by name.
        let out = filter_ps("CMD PID\nsh 7\nsleep 8\n", &[8]).unwrap();
        assert_eq!(out, "CMD PID\nsleep 8\n");
        let e = filter_ps("USER CMD\nroot sh\n", &[1]).unwrap_err();
        assert!(e.to_string().contains("couldn't find PID field"), "{e}");
    }

    #[test]
    fn events_are_in_runcs_shape() {
        let oom = Event {
            kind: "oom",
            id: "c1".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let st = Event {
            kind: "stats",
            id: "c1".into(),
            data: Some(Stats::default()),
        };
        let v: serde_json::Value = serde_json::to_value(&st).unwrap();
        assert_eq!(v["type"], "stats");
        assert!(v["data"]["memory"].is_object(), "{v}");
        assert!(v["data"]["pids"].is_object(), "{v}");
    }
}
