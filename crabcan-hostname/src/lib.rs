//! Container hostnames: a random `adjective-noun-N`, validation of a user's choice, and
//! `sethostname` in the container's own UTS namespace.
//!
//! ```
//! let name = crabcan_hostname::generate(&mut rand::rng());
//! assert!(crabcan_hostname::validate(&name).is_ok());
//! ```

use crabcan_errors::{Errcode, Result, SysContext};
use rand::RngExt;

/// Longest RFC 1123 label (the kernel itself accepts 64 bytes).
pub const MAX_LEN: usize = 63;

/// Largest number appended to a generated name (exclusive).
pub const MAX_SUFFIX: u32 = 10_000;

/// Adjectives for generated names: short, lowercase ASCII, no hyphens.
pub const ADJECTIVES: &[&str] = &[
    "able", "agile", "amber", "ample", "azure", "bold", "brave", "brisk", "bright", "calm",
    "clever", "cosmic", "crisp", "curious", "dapper", "daring", "deft", "eager", "early", "easy",
    "elder", "epic", "fair", "fancy", "fast", "fierce", "fine", "fond", "free", "fresh", "frosty",
    "gentle", "giddy", "glad", "golden", "grand", "happy", "hardy", "hazy", "honest", "humble",
    "icy", "ideal", "jolly", "keen", "kind", "lively", "lone", "loud", "loyal", "lucid", "lucky",
    "mellow", "merry", "mighty", "misty", "modest", "neat", "nimble", "noble", "odd", "olive",
    "placid", "plucky", "polite", "proud", "quick", "quiet", "rapid", "rare", "ready", "regal",
    "rosy", "rusty", "sandy", "savvy", "shiny", "silent", "silver", "sleek", "smart", "snowy",
    "solid", "spry", "steady", "stoic", "sunny", "swift", "tidy", "tiny", "tough", "vast", "vivid",
    "warm", "wild", "wise", "witty", "young", "zany", "zesty",
];

/// Nouns for generated names: short, lowercase ASCII, no hyphens.
pub const NOUNS: &[&str] = &[
    "acorn", "badger", "beacon", "bison", "breeze", "brook", "cactus", "canyon", "cedar", "comet",
    "coral", "crab", "crane", "creek", "dingo", "dolphin", "dune", "eagle", "ember", "falcon",
    "fern", "finch", "fjord", "fox", "gecko", "glacier", "grove", "harbor", "hawk", "heron",
    "hill", "ibis", "iris", "island", "jackal", "jaguar", "kelp", "kestrel", "koala", "lagoon",
    "lark", "lemur", "lichen", "lotus", "lynx", "maple", "marmot", "meadow", "meteor", "moose",
    "moth", "newt", "nova", "oak", "ocelot", "orca", "otter", "owl", "panda", "pebble", "pine",
    "plover", "pond", "puffin", "quail", "quartz", "raven", "reef", "river", "robin", "salmon",
    "shrimp", "sparrow", "spruce", "squid", "stork", "summit", "swan", "thistle", "tiger",
    "toucan", "trout", "tulip", "tundra", "urchin", "valley", "viper", "walrus", "willow",
    "wombat", "wren", "yak", "yarrow", "zebra", "zephyr",
];

/// A random `adjective-noun-N` hostname (always a valid RFC 1123 label).
pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R) -> String {
    let adj = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.random_range(0..NOUNS.len())];
    let n = rng.random_range(0..MAX_SUFFIX);
    format!("{adj}-{noun}-{n}")
}

/// How many distinct names [`generate`] can produce.
pub fn name_space() -> u64 {
    ADJECTIVES.len() as u64 * NOUNS.len() as u64 * u64::from(MAX_SUFFIX)
}

/// Checks that `name` is a valid hostname: one RFC 1123 label of 1 to 63 characters,
/// ASCII letters, digits and hyphens, not starting or ending with a hyphen.
pub fn validate(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Errcode::usage(format!(
            "invalid --hostname '{name}': {why}"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_LEN {
        return bad(&format!(
            "it is {} characters long, the limit is {MAX_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return bad(&format!(
            "'{}' is not allowed (only letters, digits and '-')",
            c.escape_default()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it must not start or end with '-'");
    }
    Ok(())
}

/// Sets the hostname of the calling process's UTS namespace.
pub fn apply(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).sys_ctx(|| format!("set the hostname to {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn is_word(w: &str) -> bool {
        !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())
    }

    #[test]
    fn word_lists_are_clean_and_unique() {
        for list in [ADJECTIVES, NOUNS] {
            assert!(list.iter().all(|w| is_word(w)), "non-lowercase word");
            let mut v = list.to_vec();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), list.len(), "duplicate word");
        }
    }

    #[test]
    fn name_space_makes_collisions_rare() {
        // With n names in use, the chance a new one collides is n / name_space; the
        // tutorial's 16*8*256 = 32768 collided within a few hundred containers.
        assert!(name_space() >= 50_000_000, "only {} names", name_space());
    }

    #[test]
    fn validate_rejects_bad_names_with_a_reason() {
        for (name, why) in [
            ("", "empty"),
            ("-abc", "start or end"),
            ("abc-", "start or end"),
            ("a_b", "'_'"),
            ("a.b", "'.'"),
            ("a b", "' '"),
            ("é", "not allowed"),
        ] {
            let e = validate(name).unwrap_err().to_string();
            assert!(e.contains(why), "{name:?}: {e}");
            assert!(e.starts_with("invalid --hostname"), "{e}");
        }
        let long = "a".repeat(64);
        assert!(
            validate(&long)
                .unwrap_err()
                .to_string()
                .contains("64 characters")
        );
        assert!(validate(&"a".repeat(63)).is_ok());
        assert!(validate("a").is_ok());
        assert!(validate("web-01").is_ok());
    }

    #[test]
    fn generated_names_vary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let names: std::collections::HashSet<String> =
            (0..1000).map(|_| generate(&mut rng)).collect();
        assert!(names.len() > 990, "only {} distinct of 1000", names.len());
    }

    /// Set by [`apply_sets_the_hostname_of_its_own_uts_namespace`] for the copy of this test
    /// binary it starts in a fresh UTS namespace: the name to apply there.
    const CHILD_NAME: &str = "CRABCAN_HOSTNAME_TEST_APPLY";
    /// The UTS namespace of the test that started the copy, which the copy must not be in.
    const CHILD_PARENT_NS: &str = "CRABCAN_HOSTNAME_TEST_PARENT_UTS";

    fn uts_ns() -> String {
        std::fs::read_link("/proc/self/ns/uts")
            .expect("read /proc/self/ns/uts")
            .to_string_lossy()
            .into_owned()
    }

    fn current_hostname() -> String {
        nix::unistd::gethostname()
            .expect("gethostname")
            .to_string_lossy()
            .into_owned()
    }

    /// The re-executed half of the `apply` test; does nothing in an ordinary test run.
    #[test]
    fn apply_child_in_a_fresh_uts_namespace() {
        let Ok(name) = std::env::var(CHILD_NAME) else {
            return;
        };
        let parent = std::env::var(CHILD_PARENT_NS).expect("the parent's UTS namespace");
        // Never touch the hostname of the namespace the tests were started in.
        assert_ne!(uts_ns(), parent, "not in a UTS namespace of its own");
        apply(&name).expect("apply");
        // On a line of its own: the harness has already printed the test's name.
        println!("\nhostname-after-apply={}", current_hostname());
    }

    /// Writes `text` to the file `path` with raw syscalls (safe between fork and exec).
    fn write_proc(path: &std::ffi::CStr, text: &[u8]) -> std::io::Result<()> {
        // SAFETY: plain open/write/close on a NUL-terminated path and a live buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != text.len() as isize {
                return Err(err);
            }
        }
        Ok(())
    }

    #[test]
    fn apply_sets_the_hostname_of_its_own_uts_namespace() {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        if std::env::var_os(CHILD_NAME).is_some() {
            return; // the re-executed copy runs only its own half
        }
        let root = nix::unistd::geteuid().is_root();
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        let uid_map = format!("0 {uid} 1");
        let gid_map = format!("0 {gid} 1");
        let name = format!("apply-test-{}", std::process::id());
        let host_before = current_hostname();
        let mut cmd = Command::new(std::env::current_exe().expect("own test binary"));
        cmd.args([
            "--exact",
            "tests::apply_child_in_a_fresh_uts_namespace",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_NAME, &name)
        .env(CHILD_PARENT_NS, uts_ns())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: between fork and exec only syscalls run (unshare, open, write, close) on
        // buffers made before the fork; nothing allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || {
                if root {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)?;
                } else {
                    // A user namespace owning the new UTS namespace, with the caller as its
                    // root, so that the copy keeps CAP_SYS_ADMIN there across exec.
                    nix::sched::unshare(
                        nix::sched::CloneFlags::CLONE_NEWUSER
                            | nix::sched::CloneFlags::CLONE_NEWUTS,
                    )?;
                    write_proc(c"/proc/self/setgroups", b"deny")?;
                    write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
                    write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if !root => {
                eprintln!("skipped: not root and no user namespace for this test ({e})");
                return;
            }
            Err(e) => panic!("cannot start the test binary in a new UTS namespace: {e}"),
        };
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let (mut o, mut e) = (String::new(), String::new());
            let _ = out.read_to_string(&mut o);
            let _ = err.read_to_string(&mut e);
            (o, e)
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for the copy") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the copy in a new UTS namespace did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (stdout, stderr) = reader.join().expect("output reader");
        assert!(status.success(), "{status}\n{stdout}\n{stderr}");
        let seen: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("hostname-after-apply="))
            .collect();
        assert_eq!(seen, [name.as_str()], "{stdout}\n{stderr}");
        assert_eq!(
            current_hostname(),
            host_before,
            "the test's own hostname changed"
        );
    }

    proptest! {
        #[test]
        fn generated_names_are_always_valid(seed in any::<u64>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let name = generate(&mut rng);
            prop_assert!(validate(&name).is_ok(), "{}", name);
            let parts: Vec<&str> = name.split('-').collect();
            prop_assert_eq!(parts.len(), 3);
            prop_assert!(ADJECTIVES.contains(&parts[0]));
            prop_assert!(NOUNS.contains(&parts[1]));
            prop_assert!(parts[2].parse::<u32>().is_ok_and(|n| n < MAX_SUFFIX));
        }

        #[test]
        fn validate_never_panics_and_accepts_only_labels(s in "\\PC{0,80}") {
            let ok = validate(&s).is_ok();
            let label = !s.is_empty() && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !s.starts_with('-') && !s.ends_with('-');
            prop_assert_eq!(ok, label);
        }
    }
}
