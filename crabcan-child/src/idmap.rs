//! The user namespace's id maps, as plain data.

use crabcan_errors::{Errcode, Result};
use std::path::Path;

/// Host ids as inclusive (first, last) ranges.
pub type HostRanges = Vec<(u32, u32)>;

/// Size of the id range mapped when crabcan runs as root.
pub const ROOT_RANGE: u32 = 65_536;

/// Where the setuid helpers that write multi-range maps for ordinary users live.
const HELPER_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// One line of an id map: `inside` maps to `outside`, for `count` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First id inside the container.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// How many ids.
    pub count: u32,
}

/// A subordinate id range of a user (`/etc/subuid`, `/etc/subgid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIds {
    /// First host id of the range.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

/// How container ids map to host ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// uid map lines.
    pub uids: Vec<Range>,
    /// gid map lines.
    pub gids: Vec<Range>,
    /// `setgroups` must be denied before writing the gid map (an unprivileged caller
    /// writing its own single-id map).
    pub deny_setgroups: bool,
    /// The maps are written by the setuid helpers `newuidmap`/`newgidmap` (an ordinary
    /// user with subordinate ids).
    pub use_helpers: bool,
}

fn single(outside: u32) -> Vec<Range> {
    vec![Range {
        inside: 0,
        outside,
        count: 1,
    }]
}

impl IdMap {
    /// The map for a caller: root maps container 0..65536 to host `base`.. (`--userns-base`);
    /// an ordinary user maps their own uid and gid to container 0, plus their subordinate
    /// ranges (`subids`, uid then gid) to container 1.. when they have both.
    pub fn for_caller(
        euid: u32,
        egid: u32,
        base: Option<u32>,
        subids: Option<(SubIds, SubIds)>,
    ) -> Result<IdMap> {
        if euid == 0 {
            let base = base.unwrap_or(0);
            if base.checked_add(ROOT_RANGE - 1).is_none() {
                return Err(Errcode::usage(format!(
                    "invalid --userns-base {base}: {base}+65535 exceeds the largest id"
                )));
            }
            let full = vec![Range {
                inside: 0,
                outside: base,
                count: ROOT_RANGE,
            }];
            return Ok(IdMap {
                uids: full.clone(),
                gids: full,
                deny_setgroups: false,
                use_helpers: false,
            });
        }
        if let Some(b) = base
            && b != euid
        {
            return Err(Errcode::usage(format!(
                "invalid --userns-base {b}: only root may map the container to other host ids"
            ))
            .with_hint(format!(
                "as uid {euid}, the container's root is your own uid"
            )));
        }
        let (mut uids, mut gids) = (single(euid), single(egid));
        let use_helpers = match subids {
            Some((su, sg))
                if su.count > 0
                    && sg.count > 0
                    && su.start.checked_add(su.count.min(sg.count)).is_some()
                    && sg.start.checked_add(su.count.min(sg.count)).is_some() =>
            {
                let count = su.count.min(sg.count).min(u32::MAX - 1);
                uids.push(Range {
                    inside: 1,
                    outside: su.start,
                    count,
                });
                gids.push(Range {
                    inside: 1,
                    outside: sg.start,
                    count,
                });
                true
            }
            _ => false,
        };
        Ok(IdMap {
            uids,
            gids,
            deny_setgroups: !use_helpers,
            use_helpers,
        })
    }

    /// Moves root's single full range onto host ids `uid`.. and `gid`.. (an allocated
    /// range); other maps are left as they are.
    pub fn rebase(&mut self, uid: u32, gid: u32) {
        if let ([u], [g]) = (self.uids.as_mut_slice(), self.gids.as_mut_slice())
            && u.count == ROOT_RANGE
            && g.count == ROOT_RANGE
        {
            u.outside = uid;
            g.outside = gid;
        }
    }

    /// The host ids the map covers, as inclusive (first, last) ranges: uids, then gids.
    pub fn host_ranges(&self) -> (HostRanges, HostRanges) {
        let spans = |r: &[Range]| {
            r.iter()
                .filter(|x| x.count > 0)
                .map(|x| (x.outside, x.outside.saturating_add(x.count - 1)))
                .collect()
        };
        (spans(&self.uids), spans(&self.gids))
    }

    /// How many consecutive ids from 0 are mapped (for both uids and gids).
    pub fn count(&self) -> u32 {
        let span = |r: &[Range]| r.iter().map(|x| x.count).fold(0u32, u32::saturating_add);
        span(&self.uids).min(span(&self.gids))
    }

    /// Whether `id` (inside the container) is mapped as a uid and as a gid.
    pub fn contains(&self, id: u32) -> bool {
        let has = |r: &[Range]| r.iter().any(|x| id >= x.inside && id - x.inside < x.count);
        has(&self.uids) && has(&self.gids)
    }

    /// Checks the `--uid` value against the map.
    pub fn check_uid(&self, uid: u32) -> Result<()> {
        if self.contains(uid) {
            return Ok(());
        }
        let e = Errcode::usage(format!(
            "invalid --uid {uid}: the container maps only ids 0..{}",
            self.count().saturating_sub(1)
        ));
        Err(if self.count() == 1 {
            e.with_hint(
                "without root, only uid 0 (your own uid) exists in the container; \
                 subordinate ids in /etc/subuid and /etc/subgid (with newuidmap) give more",
            )
        } else {
            e
        })
    }

    /// The text written to `/proc/PID/uid_map`.
    pub fn uid_map(&self) -> String {
        map_text(&self.uids)
    }

    /// The text written to `/proc/PID/gid_map`.
    pub fn gid_map(&self) -> String {
        map_text(&self.gids)
    }

    /// Arguments after the pid for `newuidmap`/`newgidmap`.
    pub fn helper_args(ranges: &[Range]) -> Vec<String> {
        ranges
            .iter()
            .flat_map(|r| [r.inside, r.outside, r.count])
            .map(|n| n.to_string())
            .collect()
    }
}

fn map_text(ranges: &[Range]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// The first range of `/etc/subuid`-style `text` for the user `name` or numeric `id`.
pub fn parse_subids(text: &str, name: Option<&str>, id: u32) -> Option<SubIds> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() || !(Some(who) == name || who.parse::<u32>() == Ok(id)) {
            return None;
        }
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (count > 0).then_some(SubIds { start, count })
    })
}

/// The caller's subordinate uid and gid ranges, when both exist and the helpers that can
/// write them are installed.
pub fn lookup_subids(uid: u32) -> Option<(SubIds, SubIds)> {
    let helpers_present = ["newuidmap", "newgidmap"]
        .iter()
        .all(|h| helper_path(h).is_some());
    if !helpers_present {
        return None;
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    let read = |p| std::fs::read_to_string(p).ok();
    let su = parse_subids(&read("/etc/subuid")?, name.as_deref(), uid)?;
    let sg = parse_subids(&read("/etc/subgid")?, name.as_deref(), uid)?;
    Some((su, sg))
}

/// Full path of a setuid id-map helper, searched in the usual system directories only
/// (never the caller's PATH: a setuid helper must be the system's).
pub fn helper_path(name: &str) -> Option<std::path::PathBuf> {
    HELPER_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn root_maps_a_full_range() {
        let m = IdMap::for_caller(0, 0, None, None).unwrap();
        assert_eq!(m.uid_map(), "0 0 65536\n");
        assert_eq!(m.gid_map(), "0 0 65536\n");
        assert!(!m.deny_setgroups && !m.use_helpers);
        assert!(m.check_uid(65535).is_ok());
        let e = m.check_uid(65536).unwrap_err().to_string();
        assert!(e.contains("--uid 65536") && e.contains("0..65535"), "{e}");
    }

    #[test]
    fn userns_base_moves_the_range() {
        let m = IdMap::for_caller(0, 0, Some(100_000), None).unwrap();
        assert_eq!(m.uid_map(), "0 100000 65536\n");
        assert!(IdMap::for_caller(0, 0, Some(u32::MAX - 10), None).is_err());
    }

    #[test]
    fn unprivileged_caller_maps_itself_to_root() {
        let m = IdMap::for_caller(1000, 100, None, None).unwrap();
        assert_eq!(m.uid_map(), "0 1000 1\n");
        assert_eq!(m.gid_map(), "0 100 1\n");
        assert!(m.deny_setgroups && !m.use_helpers);
        assert!(m.check_uid(0).is_ok());
        let e = m.check_uid(1).unwrap_err().to_string();
        assert!(e.contains("only uid 0"), "{e}");
        assert!(IdMap::for_caller(1000, 100, Some(5), None).is_err());
        assert!(IdMap::for_caller(1000, 100, Some(1000), None).is_ok());
    }

    #[test]
    fn subordinate_ids_extend_the_map() {
        let su = SubIds {
            start: 100_000,
            count: 65_536,
        };
        let sg = SubIds {
            start: 200_000,
            count: 1000,
        };
        let m = IdMap::for_caller(1000, 100, None, Some((su, sg))).unwrap();
        assert_eq!(m.uid_map(), "0 1000 1\n1 100000 1000\n");
        assert_eq!(m.gid_map(), "0 100 1\n1 200000 1000\n");
        assert!(m.use_helpers && !m.deny_setgroups);
        assert!(m.check_uid(1000).is_ok());
        assert!(m.check_uid(1001).is_err());
        assert_eq!(
            IdMap::helper_args(&m.uids),
            ["0", "1000", "1", "1", "100000", "1000"]
        );
    }

    #[test]
    fn subid_files_parse_by_name_or_id() {
        let text = "alice:100000:65536\n# comment\n1001:300000:10\nbob:5:0\n";
        assert_eq!(
            parse_subids(text, Some("alice"), 7),
            Some(SubIds {
                start: 100_000,
                count: 65_536
            })
        );
        assert_eq!(
            parse_subids(text, None, 1001),
            Some(SubIds {
                start: 300_000,
                count: 10
            })
        );
        assert_eq!(parse_subids(text, Some("bob"), 2), None, "empty range");
        assert_eq!(parse_subids(text, Some("carol"), 3), None);
        assert_eq!(parse_subids("x:1:2:3\n", Some("x"), 0), None);
        assert_eq!(parse_subids("x:a:2\n", Some("x"), 0), None);
    }

    proptest! {
        #[test]
        fn maps_never_overflow(euid in any::<u32>(), egid in any::<u32>(),
                               base in proptest::option::of(any::<u32>()),
                               s in proptest::option::of((any::<u32>(), any::<u32>()))) {
            let sub = s.map(|(start, count)| (SubIds { start, count }, SubIds { start, count }));
            if let Ok(m) = IdMap::for_caller(euid, egid, base, sub) {
                prop_assert!(m.contains(0));
                prop_assert_eq!(m.uid_map().lines().count(), m.uids.len());
                let _ = m.check_uid(u32::MAX);
            }
        }

        #[test]
        fn parse_subids_never_panics(text in "\\PC{0,60}", id in any::<u32>()) {
            let _ = parse_subids(&text, Some("a"), id);
        }
    }
}
