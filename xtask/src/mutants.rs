//! `cargo xtask mutants [--jobs N] [CRATE…]`: mutation testing of the pure crates with their
//! own tests, by cargo-mutants (installed with `cargo install` when missing).
//!
//! Every mutant that survives must be listed in `xtask/mutants-equivalent.txt` with the reason
//! it cannot change behaviour; any other survivor (or a mutant that timed out) fails the task.
//! cargo-mutants works on copies of the tree (never in place: the tree may be in use), and
//! writes its reports to `target/mutants/CRATE/mutants.out/`.

use crate::util::{self, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

/// The crates under mutation testing and the files of each whose mutants count.
const CRATES: &[(&str, &[&str])] = &[
    ("crabcan-hostname", &["crabcan-hostname/src/lib.rs"]),
    ("crabcan-errors", &["crabcan-errors/src/lib.rs"]),
    ("crabcan-units", &["crabcan-units/src/lib.rs"]),
    ("crabcan-mounts", &["crabcan-mounts/src/plan.rs"]),
    (
        "crabcan-cgroups",
        &[
            "crabcan-cgroups/src/parse.rs",
            "crabcan-cgroups/src/plan.rs",
        ],
    ),
    (
        "crabcan-security",
        &[
            "crabcan-security/src/seccomp.rs",
            "crabcan-security/src/caps.rs",
        ],
    ),
];

/// The reviewed list of equivalent mutants, relative to the workspace root.
const EQUIVALENT_LIST: &str = "xtask/mutants-equivalent.txt";

const USAGE: &str = "usage: cargo xtask mutants [--jobs N] [CRATE…]
crates: crabcan-hostname crabcan-errors crabcan-units crabcan-mounts crabcan-cgroups crabcan-security
(default: all of them)";

/// Runs cargo-mutants on the chosen crates; returns whether no unexpected mutant survived.
pub fn run(args: &[String]) -> Result<bool> {
    let mut jobs = 2u32;
    let mut chosen: Vec<&(&str, &[&str])> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            "-j" | "--jobs" => {
                jobs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=2).contains(n))
                    .ok_or("--jobs takes 1 or 2 (the tree is shared with other work)")?;
            }
            name => {
                let c = CRATES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| format!("no mutation testing for '{name}'\n{USAGE}"))?;
                chosen.push(c);
            }
        }
    }
    if chosen.is_empty() {
        chosen = CRATES.iter().collect();
    }
    let equivalent = load_equivalent(&util::workspace_root().join(EQUIVALENT_LIST))?;
    ensure_cargo_mutants()?;

    let start = Instant::now();
    let mut all_ok = true;
    let mut used = BTreeSet::new();
    let mut table = Vec::new();
    for (name, files) in chosen {
        let t = Instant::now();
        let out_dir = util::target_dir().join("mutants").join(name);
        eprintln!("mutants: {name} ({})", files.join(", "));
        util::mkdir_p(&out_dir)?;
        // The copies of the tree go under target/ too, not /tmp: the end-to-end tests check
        // that /tmp is left as they found it, and may run meanwhile.
        let scratch = util::target_dir().join("mutants").join("tmp");
        util::mkdir_p(&scratch)?;
        let mut cmd = util::cargo();
        cmd.args(["mutants", "--package", name, "--no-shuffle", "--jobs"])
            .arg(jobs.to_string())
            .arg("--output")
            .arg(&out_dir)
            .env("TMPDIR", &scratch);
        for f in *files {
            cmd.args(["--file", f]);
        }
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cargo mutants: {e}"))?;
        // 0: all caught, 2: some missed, 3: some timed out; anything else is a failed run
        // (the unmutated tests fail, or a usage error), whose report would mean nothing.
        if !matches!(status.code(), Some(0 | 2 | 3)) {
            return Err(format!(
                "cargo mutants failed on {name} ({status}); see {}",
                out_dir.join("mutants.out/debug.log").display()
            ));
        }
        let report = Report::read(&out_dir.join("mutants.out"))?;
        let unexpected = unexpected(&report.missed, &equivalent, &mut used);
        let secs = t.elapsed().as_secs_f64();
        for m in &unexpected {
            eprintln!("mutants: SURVIVED: {m}");
        }
        for m in &report.timeout {
            eprintln!("mutants: TIMED OUT (a test hangs instead of failing): {m}");
        }
        let ok = unexpected.is_empty() && report.timeout.is_empty();
        all_ok &= ok;
        table.push(format!(
            "{name:<18} {:>4} mutants: {:>4} caught, {:>3} missed ({} equivalent, {} unexpected), \
             {:>3} unviable, {} timeouts, {secs:.0} s",
            report.total(),
            report.caught,
            report.missed.len(),
            report.missed.len() - unexpected.len(),
            unexpected.len(),
            report.unviable,
            report.timeout.len(),
        ));
    }
    eprintln!("mutants: summary");
    for line in &table {
        eprintln!("  {line}");
    }
    let scope: Vec<&str> = args
        .iter()
        .filter(|a| CRATES.iter().any(|(n, _)| n == a))
        .map(String::as_str)
        .collect();
    for key in equivalent.difference(&used) {
        let in_scope = scope.is_empty() || scope.iter().any(|c| key.starts_with(&format!("{c}/")));
        if in_scope {
            eprintln!("mutants: note: listed as equivalent but not missed (now caught?): {key}");
        }
    }
    eprintln!(
        "mutants: {} in {:.0} s",
        if all_ok {
            "no unexpected survivor"
        } else {
            "FAILED: unexpected survivors or timeouts"
        },
        start.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

/// The survivors in `missed` that the equivalent list does not name; the names it matched
/// are added to `used`.
fn unexpected(
    missed: &[String],
    equivalent: &BTreeSet<String>,
    used: &mut BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in missed {
        let key = without_position(m);
        if equivalent.contains(&key) {
            used.insert(key);
        } else {
            out.push(m.clone());
        }
    }
    out
}

/// What one cargo-mutants run found, from the text files of its output directory.
struct Report {
    caught: usize,
    unviable: usize,
    missed: Vec<String>,
    timeout: Vec<String>,
}

impl Report {
    fn read(dir: &Path) -> Result<Report> {
        let lines = |file: &str| -> Result<Vec<String>> {
            let path = dir.join(file);
            match fs::read_to_string(&path) {
                Ok(t) => Ok(t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            }
        };
        Ok(Report {
            caught: lines("caught.txt")?.len(),
            unviable: lines("unviable.txt")?.len(),
            missed: lines("missed.txt")?,
            timeout: lines("timeout.txt")?,
        })
    }

    fn total(&self) -> usize {
        self.caught + self.unviable + self.missed.len() + self.timeout.len()
    }
}

/// `path:LINE:COL: description` as `path: description`, so that the list survives edits
/// that move code around.
fn without_position(mutant: &str) -> String {
    let mut parts = mutant.splitn(4, ':');
    let (Some(path), Some(line), Some(col), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return mutant.trim().to_string();
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(line) && numeric(col) {
        format!("{path}: {}", rest.trim())
    } else {
        mutant.trim().to_string()
    }
}

/// Reads the equivalent list: `path: mutant description -- reason`, one per line; blank
/// lines and `#` comments are skipped. Every entry must give a reason.
fn load_equivalent(path: &Path) -> Result<BTreeSet<String>> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_equivalent(&text, path)
}

fn parse_equivalent(text: &str, path: &Path) -> Result<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((mutant, reason)) = line.rsplit_once(" -- ") else {
            return Err(format!(
                "{}:{}: expected 'path: mutant -- reason'",
                path.display(),
                n + 1
            ));
        };
        if reason.trim().is_empty() || !mutant.contains(": ") {
            return Err(format!(
                "{}:{}: expected 'path: mutant -- reason'",
                path.display(),
                n + 1
            ));
        }
        set.insert(without_position(mutant));
    }
    Ok(set)
}

/// Installs cargo-mutants unless `cargo mutants` already works.
fn ensure_cargo_mutants() -> Result<()> {
    let works = util::cargo()
        .args(["mutants", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    eprintln!("mutants: installing cargo-mutants (cargo install cargo-mutants --locked)");
    util::run_visible(util::cargo().args(["install", "cargo-mutants", "--locked"])).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_ignored() {
        assert_eq!(
            without_position("crabcan-cgroups/src/plan.rs:123:45: replace < with <= in plan"),
            "crabcan-cgroups/src/plan.rs: replace < with <= in plan"
        );
        assert_eq!(
            without_position("crabcan-cgroups/src/plan.rs: replace < with <= in plan"),
            "crabcan-cgroups/src/plan.rs: replace < with <= in plan"
        );
        assert_eq!(
            without_position("a.rs:1:2: replace f -> String with \"xyzzy\".into()"),
            "a.rs: replace f -> String with \"xyzzy\".into()"
        );
    }

    #[test]
    fn only_listed_survivors_are_forgiven() {
        let list = "# comment\n\n\
            a/src/x.rs:10:5: replace | with ^ in flags -- the constants share no bit\n\
            a/src/y.rs: replace f -> bool with true -- f is always true here\n";
        let eq = parse_equivalent(list, Path::new("list")).unwrap();
        let missed = [
            "a/src/x.rs:99:1: replace | with ^ in flags".to_string(),
            "a/src/x.rs:12:3: replace | with & in flags".to_string(),
        ];
        let mut used = BTreeSet::new();
        assert_eq!(
            unexpected(&missed, &eq, &mut used),
            ["a/src/x.rs:12:3: replace | with & in flags"]
        );
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            ["a/src/x.rs: replace | with ^ in flags"]
        );
    }

    #[test]
    fn list_entries_need_a_reason() {
        for bad in [
            "a/src/x.rs: replace | with ^ in flags\n",
            "a/src/x.rs: replace | with ^ in flags -- \n",
            "replace | with ^ in flags -- no path\n",
        ] {
            assert!(parse_equivalent(bad, Path::new("list")).is_err(), "{bad}");
        }
    }
}
