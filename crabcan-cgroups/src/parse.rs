//! Parsers for limit values as text: pure functions from the user's words to numbers. They
//! check the form only; ranges are checked once, by [`crate::Limits::resources`] and
//! [`crate::Resources::check`].

use crabcan_errors::{Errcode, Result};
use crabcan_units::{is_unlimited, parse_digits, parse_size};

/// The value meaning "no limit" for a process count or a memory+swap total.
pub use crabcan_units::UNLIMITED;

/// The cpu period in microseconds over which a number of CPUs becomes a quota.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The smallest memory limit accepted: below this not even a shell can be loaded.
pub const MIN_MEMORY: u64 = 1 << 20;

/// The smallest number of CPUs: the kernel refuses a quota under 1 ms.
pub const MIN_CPUS: f64 = 0.01;

/// The largest number of CPUs: no Linux kernel is built for more than this (NR_CPUS).
pub const MAX_CPUS: f64 = 8192.0;

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
    parse_digits(s)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        fn never_panics(s in ".{0,24}") {
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
