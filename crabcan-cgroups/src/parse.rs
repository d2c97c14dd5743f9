//! Parsers for the resource flags: pure functions from the user's text to checked numbers.

use crabcan_errors::{Errcode, Result};

/// The value meaning "no limit" for `--pids` and `--memory-swap` (written as `max`).
pub const UNLIMITED: u64 = u64::MAX;

/// The cpu.max period in microseconds; `--cpus` is turned into a quota over it.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The smallest `--memory` accepted: below this not even a shell can be loaded.
pub const MIN_MEMORY: u64 = 1 << 20;

/// The largest `--pids` the kernel accepts for pids.max (PID_MAX_LIMIT).
pub const MAX_PIDS: u64 = 4 * 1024 * 1024;

/// The smallest `--cpus`: the kernel refuses a cpu.max quota under 1 ms.
pub const MIN_CPUS: f64 = 0.01;

/// The largest `--cpus`: no Linux kernel is built for more CPUs than this (NR_CPUS).
pub const MAX_CPUS: f64 = 8192.0;

/// Parses a byte size: digits with an optional binary suffix `k`, `m`, `g` or `t`
/// (case-insensitive, optionally followed by `b` or `ib`), or a bare `b`.
///
/// `"512m"` is 536870912. Fractions are refused so the value is exact.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = |why: &str| Errcode::usage(format!("invalid size '{s}': {why}"));
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
                "unknown unit '{suffix}' (use k, m, g or t, optionally followed by b or ib)"
            )));
        }
    };
    let n: u64 = digits.parse().map_err(|_| bad("the number is too large"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&v| v != UNLIMITED)
        .ok_or_else(|| bad("the number is too large"))
}

/// Parses `--memory`: a size of at least [`MIN_MEMORY`].
pub fn parse_memory(s: &str) -> Result<u64> {
    let v = parse_size(s).map_err(|e| e.context("invalid --memory"))?;
    if v < MIN_MEMORY {
        return Err(Errcode::usage(format!(
            "invalid --memory '{s}': must be at least 1m (a smaller limit cannot even start a program)"
        )));
    }
    Ok(v)
}

/// Parses `--memory-swap`: the memory+swap total (a size), or `unlimited`/`-1` for no swap cap.
pub fn parse_memory_swap(s: &str) -> Result<u64> {
    if is_unlimited(s) || s == "-1" {
        return Ok(UNLIMITED);
    }
    let v = parse_size(s).map_err(|e| e.context("invalid --memory-swap"))?;
    if v == 0 {
        return Err(Errcode::usage(format!(
            "invalid --memory-swap '{s}': it is the memory+swap total and must be at least --memory"
        )));
    }
    Ok(v)
}

/// Parses `--pids`: 1..=[`MAX_PIDS`], or `unlimited`/`max` to lift the default cap.
pub fn parse_pids(s: &str) -> Result<u64> {
    if is_unlimited(s) || s.eq_ignore_ascii_case("max") {
        return Ok(UNLIMITED);
    }
    let n = parse_plain_u64(s).ok_or_else(|| {
        Errcode::usage(format!(
            "invalid --pids '{s}': expected a number of processes or 'unlimited'"
        ))
    })?;
    if n == 0 || n > MAX_PIDS {
        return Err(Errcode::usage(format!(
            "invalid --pids '{s}': must be between 1 and {MAX_PIDS}, or 'unlimited'"
        )));
    }
    Ok(n)
}

/// Parses `--cpus`: a decimal number of CPUs between [`MIN_CPUS`] and [`MAX_CPUS`].
///
/// More CPUs than the host has is accepted: the quota then never throttles, and the same
/// plan may run on a bigger machine.
pub fn parse_cpus(s: &str) -> Result<f64> {
    let bad = |why: &str| Errcode::usage(format!("invalid --cpus '{s}': {why}"));
    // Only plain decimals: the float parser would also take "inf", "NaN", "1e3" and "+1".
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad("expected a decimal number of CPUs such as 0.5 or 2"));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| bad("expected a decimal number of CPUs such as 0.5 or 2"))?;
    if !v.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&v) {
        return Err(bad(&format!("must be between {MIN_CPUS} and {MAX_CPUS}")));
    }
    Ok(v)
}

/// Parses `--cpu-weight`: 1..=10000 (the kernel's default weight is 100).
pub fn parse_cpu_weight(s: &str) -> Result<u64> {
    match parse_plain_u64(s) {
        Some(n @ 1..=10_000) => Ok(n),
        _ => Err(Errcode::usage(format!(
            "invalid --cpu-weight '{s}': must be a whole number between 1 and 10000 (default 100)"
        ))),
    }
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
    fn size_garbage_is_refused_with_the_value() {
        for s in [
            "", "m", "-1", "+1", "1.5g", "1.5x", "12q", "1 m", " 1m", "1m ", "1mm", "1ib", "0x10",
            "１",
        ] {
            let e = parse_size(s).unwrap_err();
            assert!(e.to_string().contains(&format!("'{s}'")), "{s}: {e}");
            assert_eq!(e.exit_code(), 125);
        }
        assert!(
            parse_size("1.5g")
                .unwrap_err()
                .to_string()
                .contains("1536m")
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
    fn memory_names_the_flag_and_refuses_zero() {
        let e = parse_memory("0").unwrap_err().to_string();
        assert!(e.contains("--memory") && e.contains("'0'"), "{e}");
        let e = parse_memory("12x").unwrap_err().to_string();
        assert!(e.contains("--memory") && e.contains("'12x'"), "{e}");
        assert!(parse_memory("1023k").is_err());
        assert_eq!(parse_memory("1m").unwrap(), 1 << 20);
    }

    #[test]
    fn memory_swap_accepts_unlimited() {
        assert_eq!(parse_memory_swap("unlimited").unwrap(), UNLIMITED);
        assert_eq!(parse_memory_swap("-1").unwrap(), UNLIMITED);
        assert_eq!(parse_memory_swap("1g").unwrap(), 1 << 30);
        assert!(
            parse_memory_swap("0")
                .unwrap_err()
                .to_string()
                .contains("--memory-swap")
        );
        assert!(parse_memory_swap("-2").is_err());
    }

    #[test]
    fn pids_bounds() {
        assert_eq!(parse_pids("1").unwrap(), 1);
        assert_eq!(parse_pids("4194304").unwrap(), MAX_PIDS);
        assert_eq!(parse_pids("unlimited").unwrap(), UNLIMITED);
        assert_eq!(parse_pids("MAX").unwrap(), UNLIMITED);
        for s in ["0", "4194305", "-1", "+5", "5k", "", "1.0"] {
            let e = parse_pids(s).unwrap_err().to_string();
            assert!(e.contains("--pids") && e.contains(&format!("'{s}'")), "{e}");
        }
    }

    #[test]
    fn cpus_and_cpu_max() {
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        assert_eq!(parse_cpus(".5").unwrap(), 0.5);
        assert_eq!(parse_cpus("2").unwrap(), 2.0);
        assert_eq!(parse_cpus("2.").unwrap(), 2.0);
        assert_eq!(cpu_max(0.5), "50000 100000");
        assert_eq!(cpu_max(1.5), "150000 100000");
        assert_eq!(cpu_max(0.01), "1000 100000");
        assert_eq!(cpu_max(2.0), "200000 100000");
        assert_eq!(parse_cpus("8192").unwrap(), 8192.0);
        for s in [
            "0", "0.0", "0.001", "-1", "NaN", "nan", "inf", "infinity", "1e3", "+1", "1.5x", "",
            ".", "1..2", "8193", " 1",
        ] {
            let e = parse_cpus(s).unwrap_err().to_string();
            assert!(e.contains("--cpus") && e.contains(&format!("'{s}'")), "{e}");
        }
    }

    #[test]
    fn cpu_weight_bounds() {
        assert_eq!(parse_cpu_weight("1").unwrap(), 1);
        assert_eq!(parse_cpu_weight("10000").unwrap(), 10_000);
        for s in ["0", "10001", "-5", "abc", "", "1.0"] {
            let e = parse_cpu_weight(s).unwrap_err().to_string();
            assert!(
                e.contains("--cpu-weight") && e.contains(&format!("'{s}'")),
                "{e}"
            );
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
            let _ = parse_memory(&s);
            let _ = parse_memory_swap(&s);
            let _ = parse_pids(&s);
            let _ = parse_cpus(&s);
            let _ = parse_cpu_weight(&s);
        }

        #[test]
        fn cpus_round_trip_through_cpu_max(hundredths in 1u64..=819_200) {
            let s = format!("{}.{:02}", hundredths / 100, hundredths % 100);
            let v = parse_cpus(&s).unwrap();
            prop_assert_eq!(cpu_max(v), format!("{} 100000", hundredths * 1000));
        }
    }
}
