//! Controller detection against the real files of whatever host runs the tests: a hybrid
//! host without v2 controllers must refuse explicit limits with a clear message, a pure v2
//! host (the test VM) must apply them. Each test asserts what the host's own
//! cgroup.controllers says, never a fixed expectation.

use crabcan_cgroups::{Cgroup, Controller, DEFAULT_PIDS_MAX, Host, Limits, plan};
use std::fs;

fn offered_by_host() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    match crabcan_cgroups::find_cgroup2_mount(&mountinfo) {
        Some(m) => crabcan_cgroups::parse_controllers(
            &fs::read_to_string(m.mount_point.join("cgroup.controllers")).unwrap(),
        ),
        None => Vec::new(),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn explicit_memory_follows_what_this_host_offers() {
    let host = Host::detect().unwrap();
    let offered = offered_by_host().iter().any(|c| c == "memory");
    assert_eq!(host.available(Controller::Memory), offered);

    let name = format!("hosttest-mem-{}", std::process::id());
    let p = plan(
        &Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        },
        &name,
    )
    .unwrap();
    let result = Cgroup::create(&p);
    let place = host.placement(&p.name);
    if !offered {
        let e = result.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "cannot apply --memory: the cgroup v2 memory controller is not available on this host"
            ),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 125);
        if let Some(place) = place {
            assert!(!place.cgroup.exists(), "nothing may be created on refusal");
        }
        return;
    }
    match result {
        Ok(Some(cg)) => {
            let path = cg.path().to_path_buf();
            assert_eq!(
                fs::read_to_string(path.join("memory.max")).unwrap().trim(),
                (64u64 << 20).to_string()
            );
            cg.remove().unwrap();
            assert!(!path.exists());
        }
        Ok(None) => panic!("an explicit --memory must either be applied or refused"),
        Err(e) => {
            assert!(!is_root(), "memory is offered and we are root, yet: {e}");
            assert!(!e.to_string().contains("not available"), "{e}");
        }
    }
}

#[test]
fn the_default_pids_cap_never_fails_a_run() {
    let name = format!("hosttest-default-{}", std::process::id());
    let p = plan(&Limits::default(), &name).unwrap();
    let offered = offered_by_host().iter().any(|c| c == "pids");
    match Cgroup::create(&p).unwrap() {
        None => assert!(
            !offered || !is_root(),
            "pids is offered and we are root: the default cap should be applied"
        ),
        Some(cg) => {
            assert!(offered);
            let path = cg.path().to_path_buf();
            assert_eq!(
                fs::read_to_string(path.join("pids.max")).unwrap().trim(),
                DEFAULT_PIDS_MAX.to_string()
            );
            drop(cg);
            assert!(!path.exists(), "drop removes the cgroup");
        }
    }
}

#[test]
fn no_limits_at_all_create_nothing() {
    let p = plan(
        &Limits {
            pids: Some(crabcan_cgroups::UNLIMITED),
            ..Limits::default()
        },
        "hosttest-none",
    )
    .unwrap();
    assert!(Cgroup::create(&p).unwrap().is_none());
}
