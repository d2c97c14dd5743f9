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
