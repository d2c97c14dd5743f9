//! The `crabcan` binary: arguments → configuration → container → exit code.

// Used as the global allocator of the static build only; compiled everywhere for its tests.
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
mod alloc;
mod cli;
mod config;
mod exec;
mod features;
mod handover;
mod launch;
mod oci;
mod ops;
mod terminal;

use crabcan_errors::{Errcode, Result};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

/// musl's allocator hands freed memory back at once: a create made about 110 mmap and 100
/// munmap calls, each new mapping faulted in again. dlmalloc keeps its 64 KiB segments.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: alloc::FlagLocked = alloc::FlagLocked::new();

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if oci::is_oci(&args) {
        std::process::exit(oci::main(args));
    }
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crabcan: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// The one line a clap error becomes: its first line, and where that line only announces a
/// list (the missing required arguments), the list's items after it, so that the line says
/// which.
pub(crate) fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    let Some(first) = lines.next() else {
        return "invalid arguments".to_string();
    };
    let first = first.trim_start_matches("error: ").trim_end();
    if !first.ends_with(':') {
        return first.to_string();
    }
    let items: Vec<&str> = lines
        .take_while(|l| l.starts_with(char::is_whitespace) && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    if items.is_empty() {
        first.trim_end_matches(':').to_string()
    } else {
        format!("{first} {}", items.join(", "))
    }
}

/// `T::try_parse_from`, without tearing down the parser's command tree afterwards: the
/// process is short-lived, and dropping the tree (every argument's definition, cloned into
/// each subcommand for the global flags) cost as much as a third of the parse.
pub(crate) fn parse_keeping_command<T: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> std::result::Result<T, clap::Error> {
    let mut cmd = T::command();
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|mut m| T::from_arg_matches_mut(&mut m));
    std::mem::forget(cmd);
    parsed
}

/// Writes `text` to stdout. A reader that went away (a closed pipe, as `| head` leaves)
/// ends the output quietly instead of a panic; any other failure is an error naming stdout.
pub(crate) fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Errcode::setup(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn real_main() -> Result<i32> {
    let (debug, args) = match cli::parse(std::env::args_os().collect())? {
        cli::Parsed::Print(text) => {
            emit(&text)?;
            return Ok(0);
        }
        cli::Parsed::Run { debug, args } => (debug, args),
    };
    init_logging(debug);
    let euid = nix::unistd::geteuid().as_raw();
    let caller = config::Caller {
        euid,
        egid: nix::unistd::getegid().as_raw(),
        cwd: std::env::current_dir()
            .map_err(|e| Errcode::setup(format!("cannot read the working directory: {e}")))?,
        term: std::env::var("TERM").ok(),
        // Root maps a full range itself; only others need their subordinate ids.
        subids: if euid == 0 {
            None
        } else {
            crabcan_child::lookup_subids(euid)
        },
        xdg_runtime_dir: std::env::var("XDG_RUNTIME_DIR").ok(),
    };
    let cfg = config::build(&args, &caller, || {
        crabcan_hostname::generate(&mut hostname_rng())
    })?;
    launch::run(cfg)
}

/// The generator of the random hostname: a small one seeded by the kernel. The name needs
/// no cryptographic generator, and the thread-local ChaCha one checks the CPU's features at
/// its first use (three `cpuid` instructions, each a trap to the hypervisor in a virtual
/// machine: ~20 µs of every start here). Should the kernel give no random bytes, the clock
/// and pid seed it: a name still differs from run to run.
fn hostname_rng() -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    rand::rngs::SmallRng::try_from_rng(&mut rand::rngs::SysRng).unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        rand::rngs::SmallRng::seed_from_u64(now ^ (u64::from(std::process::id()) << 32))
    })
}

fn init_logging(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    };
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    // A second init can only fail if a logger is already set; nothing to do then.
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Auto);
}
