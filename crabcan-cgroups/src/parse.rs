//! Parsers for limit values as text: pure functions from the user's words to numbers. They
//! check the form only; ranges are checked once, by [`crate::Limits::resources`] and
//! [`crate::Resources::check`].

use crabcan_errors::{Errcode, Result};

/// The value meaning "no limit" for a process count or a memory+swap total.
pub const UNLIMITED: u64 = u64::MAX;

/// The cpu period in microseconds over which a number of CPUs becomes a quota.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The smallest memory limit accepted: below this not even a shell can be loaded.
pub const MIN_MEMORY: u64 = 1 << 20;

/// The smallest number of CPUs: the kernel refuses a quota under 1 ms.
pub const MIN_CPUS: f64 = 0.01;

/// The largest number of CPUs: no Linux kernel is built for more than this (NR_CPUS).
pub const MAX_CPUS: f64 = 8192.0;

/// Parses a byte size: digits with an optional binary suffix `k`, `m`, `g` or `t`
/// (case-insensitive, optionally followed by `b` or `ib`), or a bare `b`.
///
/// `"512m"` is 536870912. Fractions are refused so the value is exact. Errors say why, not
/// which value: the caller names it.
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

/// A size, or `unlimited`/`-1` for [`UNLIMITED`].
pub fn parse_size_or_unlimited(s: &str) -> Result<u64> {
    if is_unlimited(s) || s == "-1" {
        return Ok(UNLIMITED);
    }
    parse_size(s)
}

/// A whole number (digits only), or `unlimited`/`max` for [`UNLIMITED`].
pub fn parse_count_or_unlimited(s: &str) -> Result<u64> {
    if is_unlimited(s) || s.eq_ignore_ascii_case("max") {
        return Ok(UNLIMITED);
    }
    parse_count(s)
}

/// A whole number, digits only.
pub fn parse_count(s: &str) -> Result<u64> {
    parse_plain_u64(s)
        .ok_or_else(|| Errcode::usage("expected a whole number (digits only)".to_string()))
}

/// A plain decimal number such as 0.5 or 2 (no sign, exponent, inf or NaN).
pub fn parse_decimal(s: &str) -> Result<f64> {
    let bad = || Errcode::usage("expected a decimal number such as 0.5 or 2".to_string());
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(bad)
}

/// The cpu.max line for `cpus` CPUs: "quota period", e.g. "50000 100000" for 0.5.
pub fn cpu_max(cpus: f64) -> String {
    // Clamped so a value that bypassed parse_cpus still yields a line the kernel accepts.
    let quota = (cpus * CPU_PERIOD_US as f64)
        .round()
        .clamp(1000.0, MAX_CPUS * CPU_PERIOD_US as f64) as u64;
    format!("{quota} {CPU_PERIOD_US}")
}

pub(crate) fn is_unlimited(s: &str) -> bool {
    s.eq_ignore_ascii_case("unlimited")
}

/// Digits only: `str::parse` would also take a leading '+'.
pub(crate) fn parse_plain_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
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
        assert!(parse_size("16777216t").is_err());
        assert!(parse_size("17179869184g").is_err());
        assert_eq!(parse_size("16777215t").unwrap(), 16_777_215u64 << 40);
        let e = parse_size("99999999999999999999999").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn unlimited_forms() {
        assert_eq!(parse_size_or_unlimited("unlimited").unwrap(), UNLIMITED);
        assert_eq!(parse_size_or_unlimited("-1").unwrap(), UNLIMITED);
        assert_eq!(parse_size_or_unlimited("1g").unwrap(), 1 << 30);
        assert!(parse_size_or_unlimited("-2").is_err());
        assert_eq!(parse_count_or_unlimited("MAX").unwrap(), UNLIMITED);
        assert_eq!(parse_count_or_unlimited("Unlimited").unwrap(), UNLIMITED);
        assert_eq!(parse_count_or_unlimited("7").unwrap(), 7);
        for s in ["-1", "+5", "5k", "", "1.0"] {
            assert!(parse_count_or_unlimited(s).is_err(), "{s}");
        }
    }

    #[test]
    fn decimals_and_cpu_max() {
        assert_eq!(parse_decimal("0.5").unwrap(), 0.5);
        assert_eq!(parse_decimal(".5").unwrap(), 0.5);
        assert_eq!(parse_decimal("2").unwrap(), 2.0);
        assert_eq!(parse_decimal("2.").unwrap(), 2.0);
        assert_eq!(cpu_max(0.5), "50000 100000");
        assert_eq!(cpu_max(1.5), "150000 100000");
        assert_eq!(cpu_max(0.01), "1000 100000");
        for s in [
            "-1", "NaN", "nan", "inf", "infinity", "1e3", "+1", "1.5x", "", ".", "1..2", " 1",
        ] {
            assert!(parse_decimal(s).is_err(), "{s}");
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
        fn size_never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_size_or_unlimited(&s);
            let _ = parse_count_or_unlimited(&s);
            let _ = parse_decimal(&s);
            let _ = parse_count(&s);
        }

        #[test]
        fn cpus_round_trip_through_cpu_max(hundredths in 1u64..=819_200) {
            let s = format!("{}.{:02}", hundredths / 100, hundredths % 100);
            let v = parse_decimal(&s).unwrap();
            prop_assert_eq!(cpu_max(v), format!("{} 100000", hundredths * 1000));
        }
    }
}
