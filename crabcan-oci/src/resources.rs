//! `linux.resources` → the cgroup crate's [`Resources`], each value converted with its JSON
//! path in any error; the ranges are checked by the cgroup crate, in its words, with the
//! path added here.

use crate::field_error;
use crate::spec;
use crabcan_cgroups::{
    Access, BlockIo, Cpu, DeviceKind, DeviceRule, HugepageLimit, Memory, Network, Pids, Resources,
    ThrottleDevice, WeightDevice,
};
use crabcan_errors::{Errcode, Result};

fn num_u32(v: i64, at: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| field_error(at, format!("{v} is not a device number")))
}

fn throttle(v: &Option<Vec<spec::ThrottleDevice>>, at: &str) -> Result<Vec<ThrottleDevice>> {
    let mut out = Vec::new();
    for (i, d) in v.iter().flatten().enumerate() {
        out.push(ThrottleDevice {
            major: num_u32(d.major, &format!("{at}[{i}].major"))?,
            minor: num_u32(d.minor, &format!("{at}[{i}].minor"))?,
            rate: d.rate,
        });
    }
    Ok(out)
}

/// The device cgroup rules of `linux.resources.devices`.
fn device_rules(v: &[spec::DeviceRule]) -> Result<Vec<DeviceRule>> {
    let mut out = Vec::new();
    for (i, d) in v.iter().enumerate() {
        let at = format!("linux.resources.devices[{i}]");
        let kind = match d.kind {
            None | Some(spec::DeviceType::A) => DeviceKind::All,
            Some(spec::DeviceType::C) | Some(spec::DeviceType::U) => DeviceKind::Char,
            Some(spec::DeviceType::B) => DeviceKind::Block,
            Some(spec::DeviceType::P) => {
                return Err(field_error(
                    &format!("{at}.type"),
                    "\"p\" is not a device cgroup type (a, b, c)",
                ));
            }
        };
        let num = |v: Option<i64>, f: &str| -> Result<Option<u32>> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) => num_u32(n, &format!("{at}.{f}")).map(Some),
            }
        };
        let access = match d.access.as_deref() {
            None | Some("") => Access::RWM,
            Some(a) => {
                if !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                    return Err(field_error(
                        &format!("{at}.access"),
                        format!("{a:?}: only the letters r, w and m"),
                    ));
                }
                Access {
                    read: a.contains('r'),
                    write: a.contains('w'),
                    mknod: a.contains('m'),
                }
            }
        };
        out.push(DeviceRule {
            allow: d.allow,
            kind,
            major: num(d.major, "major")?,
            minor: num(d.minor, "minor")?,
            access,
        });
    }
    Ok(out)
}

/// Whether some request could match both rules.
pub(crate) fn overlaps(a: &DeviceRule, b: &DeviceRule) -> bool {
    let kinds = a.kind == DeviceKind::All || b.kind == DeviceKind::All || a.kind == b.kind;
    let num = |x: Option<u32>, y: Option<u32>| x.is_none() || y.is_none() || x == y;
    let access = (a.access.read && b.access.read)
        || (a.access.write && b.access.write)
        || (a.access.mknod && b.access.mknod);
    kinds && num(a.major, b.major) && num(a.minor, b.minor) && access
}

/// Drops the deny rules that change no decision: after the last rule about every device,
/// a deny that no allow between them overlaps denies what is denied already. Docker's
/// list ends with one (fuse, 10:229), which cgroup v1, a default plus exceptions, could
/// not express as written.
pub fn without_noop_denies(rules: Vec<DeviceRule>) -> Vec<DeviceRule> {
    let Some(start) = rules.iter().rposition(DeviceRule::is_total) else {
        return rules;
    };
    if rules[start].allow {
        return rules;
    }
    let mut out: Vec<DeviceRule> = rules[..=start].to_vec();
    for r in &rules[start + 1..] {
        let noop = !r.allow && !out[start + 1..].iter().any(|a| a.allow && overlaps(a, r));
        if !noop {
            out.push(*r);
        }
    }
    out
}

/// Appends an allow rule unless it changes no decision: an allow of the same devices
/// covering its access already decides them, and no deny after it takes any back.
/// (cgroup v1 would merge two exceptions with the same numbers.)
pub fn push_allow(rules: &mut Vec<DeviceRule>, r: DeviceRule) {
    let same = rules.iter().rposition(|x| {
        x.allow
            && x.kind == r.kind
            && x.major == r.major
            && x.minor == r.minor
            && x.access.covers(r.access)
    });
    if let Some(j) = same
        && !rules[j + 1..].iter().any(|x| !x.allow && overlaps(x, &r))
    {
        return;
    }
    rules.push(r);
}

/// Translates `linux.resources`.
pub fn resources(r: &spec::Resources) -> Result<Resources> {
    // Engines write 0 (and false) for what they leave unset, and runc reads them so:
    // a zero limit, weight or period is no value at all.
    let nz = |v: Option<i64>| v.filter(|v| *v != 0);
    let nzu = |v: Option<u64>| v.filter(|v| *v != 0);
    let memory = r.memory.as_ref().map(|m| Memory {
        limit: nz(m.limit),
        reservation: nz(m.reservation),
        swap: nz(m.swap),
        kernel: nz(m.kernel),
        kernel_tcp: nz(m.kernel_tcp),
        swappiness: m.swappiness,
        disable_oom_killer: m.disable_oom_killer.filter(|d| *d),
    });
    if let Some(m) = &r.memory {
        if m.use_hierarchy.is_some() {
            return Err(field_error(
                "linux.resources.memory.useHierarchy",
                "not supported",
            ));
        }
        if m.check_before_update.is_some() {
            return Err(field_error(
                "linux.resources.memory.checkBeforeUpdate",
                "not supported",
            ));
        }
    }
    let cpu = match &r.cpu {
        None => None,
        Some(c) => {
            if c.idle.is_some_and(|v| v != 0) {
                return Err(field_error("linux.resources.cpu.idle", "not supported"));
            }
            if c.burst.is_some() {
                return Err(field_error("linux.resources.cpu.burst", "not supported"));
            }
            Some(Cpu {
                shares: nzu(c.shares),
                weight: None,
                quota: nz(c.quota),
                period: nzu(c.period),
                realtime_runtime: nz(c.realtime_runtime),
                realtime_period: nzu(c.realtime_period),
                cpus: c.cpus.clone().filter(|s| !s.is_empty()),
                mems: c.mems.clone().filter(|s| !s.is_empty()),
            })
        }
    };
    let pids = r
        .pids
        .as_ref()
        .filter(|p| p.limit != 0)
        .map(|p| Pids { limit: p.limit });
    let block_io = match &r.block_io {
        None => None,
        Some(b) => {
            if b.leaf_weight.is_some() {
                return Err(field_error(
                    "linux.resources.blockIO.leafWeight",
                    "not supported",
                ));
            }
            let mut weight_device = Vec::new();
            for (i, d) in b.weight_device.iter().flatten().enumerate() {
                let at = format!("linux.resources.blockIO.weightDevice[{i}]");
                if d.leaf_weight.is_some() {
                    return Err(field_error(&format!("{at}.leafWeight"), "not supported"));
                }
                let Some(w) = d.weight else { continue };
                weight_device.push(WeightDevice {
                    major: num_u32(d.major, &format!("{at}.major"))?,
                    minor: num_u32(d.minor, &format!("{at}.minor"))?,
                    weight: w,
                });
            }
            Some(BlockIo {
                weight: b.weight.filter(|w| *w != 0),
                weight_device,
                throttle_read_bps: throttle(
                    &b.throttle_read_bps_device,
                    "linux.resources.blockIO.throttleReadBpsDevice",
                )?,
                throttle_write_bps: throttle(
                    &b.throttle_write_bps_device,
                    "linux.resources.blockIO.throttleWriteBpsDevice",
                )?,
                throttle_read_iops: throttle(
                    &b.throttle_read_iops_device,
                    "linux.resources.blockIO.throttleReadIOPSDevice",
                )?,
                throttle_write_iops: throttle(
                    &b.throttle_write_iops_device,
                    "linux.resources.blockIO.throttleWriteIOPSDevice",
                )?,
            })
        }
    };
    let hugepage_limits = match &r.hugepage_limits {
        None => None,
        Some(v) => {
            let mut out = Vec::new();
            for (i, h) in v.iter().enumerate() {
                let limit = u64::try_from(h.limit).map_err(|_| {
                    field_error(
                        &format!("linux.resources.hugepageLimits[{i}].limit"),
                        format!("{} is negative", h.limit),
                    )
                })?;
                out.push(HugepageLimit {
                    page_size: h.page_size.clone(),
                    limit,
                });
            }
            Some(out)
        }
    };
    let network = r.network.as_ref().map(|n| Network {
        class_id: n.class_id,
        priorities: n
            .priorities
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.priority))
            .collect(),
    });
    let unified = r
        .unified
        .as_ref()
        .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let devices = match &r.devices {
        None => None,
        Some(d) => Some(without_noop_denies(device_rules(d)?)),
    };
    let res = Resources {
        memory,
        cpu,
        pids,
        block_io,
        hugepage_limits,
        network,
        unified,
        devices,
    };
    res.check()
        .map_err(|e| e.context(format!("{} linux.resources", crate::CONFIG_FILE)))?;
    Ok(res)
}

/// Parses the LinuxResources JSON that `update --resources` reads (what engines send: unset
/// fields as 0, which mean "leave as is", as runc reads them). Device rules are not
/// changed by an update, as with runc, so they are dropped here.
pub fn parse_update(text: &[u8]) -> Result<Resources> {
    let bad = |e: &dyn std::fmt::Display| Errcode::usage(format!("invalid resources JSON: {e}"));
    let text = std::str::from_utf8(text).map_err(|e| bad(&e))?;
    let value = crabcan_security::json::parse_strict(text).map_err(|e| bad(&e))?;
    let r: spec::Resources = serde_path_to_error::deserialize(&value).map_err(|e| bad(&e))?;
    let mut res = resources(&r)?;
    res.devices = None;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(allow: bool, kind: u8, major: Option<u32>, minor: Option<u32>, acc: u8) -> DeviceRule {
        DeviceRule {
            allow,
            kind: match kind % 3 {
                0 => DeviceKind::All,
                1 => DeviceKind::Char,
                _ => DeviceKind::Block,
            },
            major,
            minor,
            access: Access {
                read: acc & 1 != 0,
                write: acc & 2 != 0,
                mknod: acc & 4 != 0,
            },
        }
    }

    #[test]
    fn dockers_update_sets_only_the_pids_limit() {
        // docker's `update --pids-limit 33` as its shim hands it over: unset fields are 0.
        let text = br#"{"memory":{"limit":0,"reservation":0,"kernel":0},"cpu":{"shares":0,"quota":0,"period":0},"pids":{"limit":33},"blockIO":{"weight":0}}"#;
        let r = parse_update(text).unwrap();
        assert_eq!(r.pids, Some(Pids { limit: 33 }));
        assert_eq!(r.memory.as_ref().unwrap().limit, None);
        assert_eq!(r.cpu.as_ref().unwrap().shares, None);
        assert_eq!(r.cpu.as_ref().unwrap().quota, None);
        assert_eq!(r.block_io.as_ref().unwrap().weight, None);
    }

    #[test]
    fn update_json_errors_are_one_line() {
        let e = parse_update(b"{not json").unwrap_err().to_string();
        assert!(e.starts_with("invalid resources JSON"), "{e}");
        let e = parse_update(br#"{"memory":{"limit":5}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory limit 5"), "{e}");
        let r = parse_update(br#"{"devices":[{"allow":true,"access":"rwm"}]}"#).unwrap();
        assert_eq!(r.devices, None);
    }

    #[test]
    fn dockers_trailing_fuse_deny_goes() {
        let rules = vec![
            DeviceRule::DENY_ALL,
            DeviceRule::allow_char(1, Some(3)),
            rule(false, 1, Some(10), Some(229), 7),
            rule(true, 1, Some(10), None, 1),
            rule(false, 1, Some(10), Some(200), 1),
        ];
        let out = without_noop_denies(rules.clone());
        assert_eq!(out.len(), 4);
        assert!(!out.contains(&rules[2]));
        assert!(out.contains(&rules[4]), "overlaps the allow before it");
    }

    proptest! {
        /// Dropping them changes no decision, for any request.
        #[test]
        fn decisions_are_kept(
            raw in proptest::collection::vec(
                (any::<bool>(), 0u8..3, proptest::option::of(0u32..3),
                 proptest::option::of(0u32..3), 1u8..8), 0..8),
            kind in 1u8..3, major in 0u32..3, minor in 0u32..3, acc in 0u8..3,
        ) {
            let mut rules = vec![DeviceRule::DENY_ALL];
            rules.extend(raw.iter().map(|&(a, k, ma, mi, ac)| rule(a, k, ma, mi, ac)));
            let kind = if kind == 1 { DeviceKind::Char } else { DeviceKind::Block };
            let access = rule(true, 0, None, None, 1 << acc).access;
            let before = crabcan_cgroups::allowed(&rules, kind, major, minor, access);
            let after = crabcan_cgroups::allowed(&without_noop_denies(rules), kind, major, minor, access);
            prop_assert_eq!(before, after);
        }

        /// An allow skipped as redundant changes no decision either.
        #[test]
        fn redundant_allows_are_skipped_exactly(
            raw in proptest::collection::vec(
                (any::<bool>(), 0u8..3, proptest::option::of(0u32..3),
                 proptest::option::of(0u32..3), 1u8..8), 0..8),
            new in (0u8..3, proptest::option::of(0u32..3), proptest::option::of(0u32..3), 1u8..8),
            kind in 1u8..3, major in 0u32..3, minor in 0u32..3, acc in 0u8..3,
        ) {
            let mut rules = vec![DeviceRule::DENY_ALL];
            rules.extend(raw.iter().map(|&(a, k, ma, mi, ac)| rule(a, k, ma, mi, ac)));
            let r = rule(true, new.0, new.1, new.2, new.3);
            let mut plain = rules.clone();
            plain.push(r);
            push_allow(&mut rules, r);
            let kind = if kind == 1 { DeviceKind::Char } else { DeviceKind::Block };
            let access = rule(true, 0, None, None, 1 << acc).access;
            prop_assert_eq!(
                crabcan_cgroups::allowed(&plain, kind, major, minor, access),
                crabcan_cgroups::allowed(&rules, kind, major, minor, access)
            );
        }
    }
}
