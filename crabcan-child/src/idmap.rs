//! The user namespace's id maps, as plain data.

use crabcan_errors::{Errcode, Result};

/// Size of the id range mapped when crabcan runs as root.
pub const ROOT_RANGE: u32 = 65_536;

/// How container ids map to host ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Host uid that container uid 0 maps to.
    pub host_uid: u32,
    /// Host gid that container gid 0 maps to.
    pub host_gid: u32,
    /// How many consecutive ids are mapped (from 0 inside).
    pub count: u32,
    /// `setgroups` must be denied before writing the gid map (an unprivileged caller).
    pub deny_setgroups: bool,
}

impl IdMap {
    /// The map for a caller: root maps container 0..65536 to host `base`.. (`--userns-base`);
    /// anyone else maps their own uid and gid to container 0 (no privileges needed).
    pub fn for_caller(euid: u32, egid: u32, base: Option<u32>) -> Result<IdMap> {
        if euid == 0 {
            let base = base.unwrap_or(0);
            if base.checked_add(ROOT_RANGE - 1).is_none() {
                return Err(Errcode::usage(format!(
                    "invalid --userns-base {base}: {base}+65535 exceeds the largest id"
                )));
            }
            Ok(IdMap {
                host_uid: base,
                host_gid: base,
                count: ROOT_RANGE,
                deny_setgroups: false,
            })
        } else {
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
            Ok(IdMap {
                host_uid: euid,
                host_gid: egid,
                count: 1,
                deny_setgroups: true,
            })
        }
    }

    /// Whether `id` (inside the container) is mapped.
    pub fn contains(&self, id: u32) -> bool {
        id < self.count
    }

    /// Checks the `--uid` value against the map.
    pub fn check_uid(&self, uid: u32) -> Result<()> {
        if self.contains(uid) {
            return Ok(());
        }
        let e = Errcode::usage(format!(
            "invalid --uid {uid}: the container maps only ids 0..{}",
            self.count - 1
        ));
        Err(if self.count == 1 {
            e.with_hint("without root, only uid 0 (your own uid) exists in the container")
        } else {
            e
        })
    }

    /// The text written to `/proc/PID/uid_map`.
    pub fn uid_map(&self) -> String {
        format!("0 {} {}\n", self.host_uid, self.count)
    }

    /// The text written to `/proc/PID/gid_map`.
    pub fn gid_map(&self) -> String {
        format!("0 {} {}\n", self.host_gid, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn root_maps_a_full_range() {
        let m = IdMap::for_caller(0, 0, None).unwrap();
        assert_eq!(m.uid_map(), "0 0 65536\n");
        assert_eq!(m.gid_map(), "0 0 65536\n");
        assert!(!m.deny_setgroups);
        assert!(m.check_uid(65535).is_ok());
        let e = m.check_uid(65536).unwrap_err().to_string();
        assert!(e.contains("--uid 65536") && e.contains("0..65535"), "{e}");
    }

    #[test]
    fn userns_base_moves_the_range() {
        let m = IdMap::for_caller(0, 0, Some(100_000)).unwrap();
        assert_eq!(m.uid_map(), "0 100000 65536\n");
        assert!(IdMap::for_caller(0, 0, Some(u32::MAX - 10)).is_err());
    }

    #[test]
    fn unprivileged_caller_maps_itself_to_root() {
        let m = IdMap::for_caller(1000, 100, None).unwrap();
        assert_eq!(m.uid_map(), "0 1000 1\n");
        assert_eq!(m.gid_map(), "0 100 1\n");
        assert!(m.deny_setgroups);
        assert!(m.check_uid(0).is_ok());
        let e = m.check_uid(1).unwrap_err().to_string();
        assert!(e.contains("only uid 0"), "{e}");
        assert!(IdMap::for_caller(1000, 100, Some(5)).is_err());
        assert!(IdMap::for_caller(1000, 100, Some(1000)).is_ok());
    }

    proptest! {
        #[test]
        fn maps_are_one_line_and_never_overflow(euid in any::<u32>(), egid in any::<u32>(), base in proptest::option::of(any::<u32>())) {
            if let Ok(m) = IdMap::for_caller(euid, egid, base) {
                prop_assert!(u64::from(m.host_uid) + u64::from(m.count) - 1 <= u64::from(u32::MAX));
                prop_assert_eq!(m.uid_map().lines().count(), 1);
                prop_assert!(m.contains(0));
            }
        }
    }
}
