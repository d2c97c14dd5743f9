//! Where in each hierarchy a container's cgroup goes.

use crabcan_errors::{Errcode, Result};

/// The longest cgroup path accepted (PATH_MAX less room for the mount point).
const MAX_PATH: usize = 3072;

/// A container's cgroup path, the same in every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    /// From the hierarchy's root ("/docker/0123…").
    Absolute(String),
    /// Under the caller's own cgroup in each hierarchy, as runc places a relative path
    /// ("machine/box" → "`<own>`/machine/box").
    Relative(String),
    /// crabcan run's own place for `leaf`, its [`crate::run_leaf`] directory. On cgroup
    /// v2 it goes beside the caller's cgroup (under its parent) unless the caller is at the
    /// root: a v2 cgroup holding processes may not give controllers to children. On v1 it
    /// goes under the caller's cgroup, so the container stays inside whatever limits enclose
    /// the caller there. No shared directory holds it: one would be one more cgroup to make
    /// and remove in every hierarchy at each run (a tenth of a start).
    Run(String),
}

impl CgroupPath {
    /// Parses a cgroupfs path: absolute ("/a/b") or relative ("a/b"). Empty, `.` and `..`
    /// components and the systemd `slice:prefix:name` form are refused.
    pub fn parse(s: &str) -> Result<CgroupPath> {
        let bad = |why: &str| {
            Errcode::usage(format!("invalid cgroup path '{}': {why}", s.escape_debug()))
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains(':') {
            return Err(bad(
                "this is the systemd form (slice:prefix:name), which needs the systemd cgroup manager; \
                 this host has no systemd: give a cgroupfs path",
            ));
        }
        if s.len() > MAX_PATH {
            return Err(bad(&format!("longer than {MAX_PATH} bytes")));
        }
        if s.bytes().any(|b| b == 0 || b == b'\n') {
            return Err(bad("it contains a NUL or newline character"));
        }
        let absolute = s.starts_with('/');
        let mut parts = Vec::new();
        for part in s.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(bad("'.' and '..' components are not allowed"));
            }
            if part.len() > 255 {
                return Err(bad("a component is longer than 255 bytes"));
            }
            parts.push(part);
        }
        if parts.is_empty() {
            return Err(bad(
                "it names the root cgroup, which cannot hold a container",
            ));
        }
        let clean = parts.join("/");
        Ok(if absolute {
            CgroupPath::Absolute(format!("/{clean}"))
        } else {
            CgroupPath::Relative(clean)
        })
    }

    /// crabcan run's placement for the cgroup directory `leaf` (see [`CgroupPath::Run`]).
    pub fn run(leaf: &str) -> Result<CgroupPath> {
        match CgroupPath::parse(leaf)? {
            CgroupPath::Relative(p) if !p.contains('/') => Ok(CgroupPath::Run(p)),
            _ => Err(Errcode::usage(format!(
                "invalid cgroup name '{}': one path component expected",
                leaf.escape_debug()
            ))),
        }
    }

    /// The absolute path in a hierarchy where the caller's cgroup is `own`, for a v1
    /// (`v2 = false`) or the v2 hierarchy.
    pub fn resolve(&self, own: &str, v2: bool) -> String {
        let join = |base: &str, rel: &str| {
            let base = base.trim_end_matches('/');
            format!("{base}/{rel}")
        };
        match self {
            CgroupPath::Absolute(p) => p.clone(),
            CgroupPath::Relative(p) => join(own, p),
            CgroupPath::Run(leaf) => {
                let base = if v2 && own != "/" {
                    own.rsplit_once('/').map_or("/", |(parent, _)| parent)
                } else {
                    own
                };
                join(base, leaf)
            }
        }
    }

    /// Whether this is crabcan run's placement (crashed runs are swept beside it).
    pub fn is_run(&self) -> bool {
        matches!(self, CgroupPath::Run(_))
    }
}

impl std::fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupPath::Absolute(p) | CgroupPath::Relative(p) => f.write_str(p),
            CgroupPath::Run(leaf) => f.write_str(leaf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn absolute_and_relative() {
        assert_eq!(
            CgroupPath::parse("/docker/abc").unwrap(),
            CgroupPath::Absolute("/docker/abc".into())
        );
        assert_eq!(
            CgroupPath::parse("//libpod_parent//libpod-1/").unwrap(),
            CgroupPath::Absolute("/libpod_parent/libpod-1".into())
        );
        let rel = CgroupPath::parse("machine/box").unwrap();
        assert_eq!(rel, CgroupPath::Relative("machine/box".into()));
        assert_eq!(
            rel.resolve("/user.slice/s.scope", true),
            "/user.slice/s.scope/machine/box"
        );
        assert_eq!(rel.resolve("/", false), "/machine/box");
        assert_eq!(
            CgroupPath::parse("/default/x")
                .unwrap()
                .resolve("/elsewhere", false),
            "/default/x"
        );
    }

    #[test]
    fn the_systemd_form_is_refused_by_name() {
        let e = CgroupPath::parse("system.slice:docker:abc").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("systemd form") && s.contains("system.slice:docker:abc"),
            "{s}"
        );
        assert_eq!(e.exit_code(), 125);
    }

    #[test]
    fn refused_forms() {
        for s in ["", "/", "//", "/a/../b", "./a", "a/.", "a\nb", "a\0b"] {
            assert!(CgroupPath::parse(s).is_err(), "{s:?}");
        }
        assert!(CgroupPath::parse(&"a".repeat(256)).is_err());
        assert!(CgroupPath::parse(&"a/".repeat(2000)).is_err());
    }

    #[test]
    fn run_placement_per_hierarchy() {
        let p = CgroupPath::run("crabcan-web-12").unwrap();
        assert!(p.is_run());
        assert_eq!(p.resolve("/", true), "/crabcan-web-12");
        assert_eq!(
            p.resolve("/user.slice/s.scope", true),
            "/user.slice/crabcan-web-12"
        );
        assert_eq!(p.resolve("/init.scope", true), "/crabcan-web-12");
        assert_eq!(p.resolve("/", false), "/crabcan-web-12");
        assert_eq!(
            p.resolve("/session/10db", false),
            "/session/10db/crabcan-web-12"
        );
        assert!(CgroupPath::run("a/b").is_err());
        assert!(CgroupPath::run("/a").is_err());
        assert_eq!(p.to_string(), "crabcan-web-12");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_is_clean(s in "[a-z/.:\\-]{0,30}") {
            if let Ok(p) = CgroupPath::parse(&s) {
                let text = p.to_string();
                prop_assert!(!text.contains("//") && !text.ends_with('/'));
                prop_assert!(!text.split('/').any(|c| c == "." || c == ".."));
                prop_assert_eq!(CgroupPath::parse(&text).unwrap(), p.clone());
                let r = p.resolve("/own", false);
                prop_assert!(r.starts_with('/') && !r.contains("//"));
            }
        }

        #[test]
        fn components_survive(parts in proptest::collection::vec("[a-zA-Z0-9_-]{1,12}", 1..6), abs: bool) {
            let s = format!("{}{}", if abs { "/" } else { "" }, parts.join("/"));
            let p = CgroupPath::parse(&s).unwrap();
            prop_assert_eq!(p.to_string(), s);
        }
    }
}
