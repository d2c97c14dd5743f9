//! Numbers as people write them: byte sizes with binary suffixes, plain whole numbers and the
//! word "unlimited". Shared by the crates that take limits (cgroups, rlimits), so a size or a
//! count reads the same wherever it is given.
//!
//! The parsers check the form only; what range a value may take is the caller's to say.
//!
//! ```
//! assert_eq!(crabcan_units::parse_size("512m").unwrap(), 512 << 20);
//! assert_eq!(crabcan_units::parse_digits("+5"), None);
//! assert!(crabcan_units::is_unlimited("Unlimited"));
//! ```

use crabcan_errors::{Errcode, Result};

/// The value meaning "no limit" (the kernel's `RLIM_INFINITY`, cgroups' "max"); no size or
/// count parsed here ever equals it.
pub const UNLIMITED: u64 = u64::MAX;

/// Parses a byte size: digits with an optional binary suffix `k`, `m`, `g` or `t`
/// (case-insensitive, optionally followed by `b` or `ib`), or a bare `b`.
///
/// `"512m"` is 536870912. Fractions are refused so the value is exact, and so is a size of
/// [`UNLIMITED`] or more. Errors say why, not which value: the caller names it.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = |why: &str| Errcode::usage(why.to_string());
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad(
            "expected a whole number of bytes with an optional k, m, g or t suffix",
        ));
    }
    if suffix.starts_with('.') {
        return Err(bad(
            "fractions are not accepted; use a smaller unit (1536m, not 1.5g)",
        ));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(bad(&format!(
                "unknown unit '{}' (use k, m, g or t, optionally followed by b or ib)",
                suffix.escape_debug()
            )));
        }
    };
    let n: u64 = digits.parse().map_err(|_| bad("the number is too large"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&v| v != UNLIMITED)
        .ok_or_else(|| bad("the number is too large"))
}

/// A whole number written with digits only; `None` otherwise (`str::parse` would also take
/// a leading '+').
pub fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `s` is the word "unlimited", in any case.
pub fn is_unlimited(s: &str) -> bool {
    s.eq_ignore_ascii_case("unlimited")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("512m").unwrap(), 536_870_912);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512b").unwrap(), 512);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert_eq!(parse_size("3g").unwrap(), 3 << 30);
        assert_eq!(parse_size("1Gib").unwrap(), 1 << 30);
        assert_eq!(parse_size("1t").unwrap(), 1 << 40);
        assert_eq!(parse_size("0").unwrap(), 0);
    }

    #[test]
    fn size_garbage_is_refused_saying_why() {
        for s in [
            "", "m", "-1", "+1", "1.5g", "1.5x", "12q", "1 m", " 1m", "1m ", "1mm", "1ib", "0x10",
            "１",
        ] {
            let e = parse_size(s).unwrap_err();
            assert_eq!(e.exit_code(), 125);
            assert!(!e.to_string().is_empty());
        }
        assert!(
            parse_size("1.5g")
                .unwrap_err()
                .to_string()
                .contains("1536m")
        );
        assert!(
            parse_size("12q")
                .unwrap_err()
                .to_string()
                .contains("unknown unit 'q'")
        );
    }

    #[test]
    fn size_overflow_is_refused() {
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("18446744073709551615").is_err());
        assert!(parse_size("16777216t").is_err());
        assert!(parse_size("17179869184g").is_err());
        assert_eq!(parse_size("16777215t").unwrap(), 16_777_215u64 << 40);
        assert_eq!(
            parse_size("18446744073709551614").unwrap(),
            18_446_744_073_709_551_614
        );
        let e = parse_size("99999999999999999999999").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn digits_and_the_unlimited_word() {
        assert_eq!(parse_digits("0"), Some(0));
        assert_eq!(parse_digits("4096"), Some(4096));
        assert_eq!(
            parse_digits("18446744073709551615"),
            Some(18_446_744_073_709_551_615)
        );
        for s in [
            "",
            "+5",
            "-1",
            "5k",
            "1.0",
            " 1",
            "1 ",
            "18446744073709551616",
            "１",
        ] {
            assert_eq!(parse_digits(s), None, "{s}");
        }
        for s in ["unlimited", "UNLIMITED", "Unlimited"] {
            assert!(is_unlimited(s), "{s}");
        }
        for s in ["", "unlimit", "unlimited ", "max", "-1", "inf"] {
            assert!(!is_unlimited(s), "{s}");
        }
    }

    proptest! {
        #[test]
        fn size_round_trips(n in 0u64..(1 << 23), unit in 0usize..5, tail in 0usize..3, upper: bool) {
            let names = ["", "k", "m", "g", "t"];
            let tails = ["", "b", "ib"];
            let tail = if unit == 0 { "" } else { tails[tail] };
            let mut s = format!("{n}{}{tail}", names[unit]);
            if upper { s = s.to_uppercase(); }
            prop_assert_eq!(parse_size(&s).unwrap(), n << (10 * unit));
        }

        #[test]
        fn digits_round_trip(n: u64) {
            prop_assert_eq!(parse_digits(&n.to_string()), Some(n));
        }

        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_digits(&s);
            let _ = is_unlimited(&s);
        }
    }
}
