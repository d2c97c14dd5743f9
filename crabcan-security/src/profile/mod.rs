//! OCI seccomp profiles (`linux.seccomp` of a runtime config) compiled to classic BPF.
//!
//! [`parse`] reads the JSON into a [`Profile`] (unknown keys are ignored; anything
//! malformed or unsupported is one [`ProfileError`] naming the JSON path inside the
//! profile), and [`compile`] turns it into a [`Compiled`] program:
//!
//! ```text
//!   load arch; one block per architecture group, anything else -> the bad-arch action
//!   load nr;   x32 bit split (x86_64 and x32 share AUDIT_ARCH_X86_64)
//!   binary search on nr over ranges with one leaf each (short runs as a row of
//!   comparisons when that is shorter; no call runs more than a few extra):
//!     a return | the syscall's rules (ORed), each a chain of ANDed conditions
//! ```
//!
//! The semantics follow libseccomp, so a profile behaves as it does under other runtimes:
//!
//! - arguments are compared as 64-bit values on x86_64 and as their low 32 bits on x86 and
//!   x32; `SCMP_CMP_MASKED_EQ` ignores datum bits outside the mask;
//! - a name unknown on an architecture is skipped there; a rule whose action is the
//!   default action is dropped;
//! - on x86, a rule on a socket or System V IPC call also applies to the `socketcall` or
//!   `ipc` multiplexer with the call's code as first argument;
//! - an unconditional rule for a syscall decides alone (the first one, if several);
//!   conditional rules that can match the same call with different actions are refused;
//! - an ABI the profile does not list gets [`BAD_ARCH_ACTION`] (kill the thread, the
//!   default runtimes keep), and so do x32 numbers on a filter without x32 (`-1`, a
//!   tracer's skipped call, excepted).
//!
//! ```
//! let p = crabcan_security::profile::parse(r#"{
//!     "defaultAction": "SCMP_ACT_ERRNO",
//!     "architectures": ["SCMP_ARCH_X86_64"],
//!     "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
//! }"#).unwrap();
//! let c = crabcan_security::profile::compile(&p).unwrap();
//! assert!(c.instructions.len() < 20);
//! ```

mod compile;
#[rustfmt::skip]
mod default_program;
pub mod interp;
mod sat;
#[rustfmt::skip]
pub mod syscalls;

pub use compile::{BAD_ARCH_ACTION, Compiled, compile};

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// Return values of a seccomp filter (`SECCOMP_RET_*`).
pub mod ret {
    /// Kill the calling thread.
    pub const KILL_THREAD: u32 = 0x0000_0000;
    /// Kill the whole process.
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    /// Send SIGSYS.
    pub const TRAP: u32 = 0x0003_0000;
    /// Fail with the errno in the low 16 bits.
    pub const ERRNO: u32 = 0x0005_0000;
    /// Notify a tracer, with the value in the low 16 bits.
    pub const TRACE: u32 = 0x7ff0_0000;
    /// Log, then run.
    pub const LOG: u32 = 0x7ffc_0000;
    /// Run.
    pub const ALLOW: u32 = 0x7fff_0000;
}

/// `AUDIT_ARCH_X86_64`, also the `arch` of x32 calls.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// The bit that marks an x32 syscall number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// EPERM: the errno of `SCMP_ACT_ERRNO` and the value of `SCMP_ACT_TRACE` when none is given.
const DEFAULT_ERRNO: u16 = 1;

/// A syscall ABI with its own numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// 64-bit x86 (`SCMP_ARCH_X86_64`).
    X86_64,
    /// 32-bit x86, i386 (`SCMP_ARCH_X86`).
    X86,
    /// x32: 64-bit registers, 32-bit pointers (`SCMP_ARCH_X32`).
    X32,
}

impl Arch {
    /// All supported architectures.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::X86, Arch::X32];

    /// The `arch` field of `seccomp_data` for this ABI.
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
        }
    }

    /// Arguments are compared as 64-bit values (else only their low 32 bits), as libseccomp.
    pub fn is_64bit(self) -> bool {
        self == Arch::X86_64
    }

    /// The syscall table, sorted by name.
    pub fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => syscalls::X86_64,
            Arch::X86 => syscalls::X86,
            Arch::X32 => syscalls::X32,
        }
    }

    /// The number of `name` on this ABI (x32 numbers include the x32 bit).
    pub fn syscall_nr(self, name: &str) -> Option<u32> {
        lookup(name).and_then(|nrs| nrs[self.slot()])
    }

    /// Position of this ABI in [`lookup`]'s answer.
    pub fn slot(self) -> usize {
        match self {
            Arch::X86_64 => 0,
            Arch::X86 => 1,
            Arch::X32 => 2,
        }
    }

    /// The profile spelling.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
        }
    }
}

/// The numbers of a syscall name on x86_64, x86 and x32 (see [`Arch::slot`]).
pub fn lookup(name: &str) -> Option<&'static [Option<u32>; 3]> {
    lookup_index(name).map(|i| &syscalls::NAMES[i].1)
}

/// Where a syscall name is in the table of names (below [`names_len`]), if it is there.
pub(crate) fn lookup_index(name: &str) -> Option<usize> {
    let mask = syscalls::INDEX.len() - 1;
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut slot = hash as usize & mask;
    // The index is at most half full, so an empty slot ends every probe.
    for _ in 0..=mask {
        let i = usize::from(syscalls::INDEX[slot]);
        let (n, _) = syscalls::NAMES.get(i)?;
        if *n == name {
            return Some(i);
        }
        slot = (slot + 1) & mask;
    }
    None
}

/// How many names the table has.
pub(crate) fn names_len() -> usize {
    syscalls::NAMES.len()
}

/// The numbers of the table's `i`th name ([`lookup_index`]).
pub(crate) fn numbers_at(i: usize) -> &'static [Option<u32>; 3] {
    &syscalls::NAMES[i].1
}

/// What the filter does with a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Run it.
    Allow,
    /// Fail it with this errno.
    Errno(u16),
    /// Kill the calling thread (`SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`).
    KillThread,
    /// Kill the process.
    KillProcess,
    /// Send SIGSYS.
    Trap,
    /// Stop for a ptrace tracer with this value (ENOSYS without one).
    Trace(u16),
    /// Log and run.
    Log,
}

impl Action {
    /// The filter's return value.
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => ret::ALLOW,
            Action::Errno(e) => ret::ERRNO | u32::from(e),
            Action::KillThread => ret::KILL_THREAD,
            Action::KillProcess => ret::KILL_PROCESS,
            Action::Trap => ret::TRAP,
            Action::Trace(v) => ret::TRACE | u32::from(v),
            Action::Log => ret::LOG,
        }
    }
}

/// How an argument is compared with the rule's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `arg != value`.
    Ne,
    /// `arg < value`.
    Lt,
    /// `arg <= value`.
    Le,
    /// `arg == value`.
    Eq,
    /// `arg >= value`.
    Ge,
    /// `arg > value`.
    Gt,
    /// `arg & value == valueTwo & value` (bits of valueTwo outside the mask do not count,
    /// as libseccomp).
    MaskedEq,
}

/// One condition on one syscall argument; unsigned comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Condition {
    /// Argument index, 0..=5.
    pub index: u8,
    /// The comparison.
    pub op: Op,
    /// The value (the mask for [`Op::MaskedEq`]).
    pub value: u64,
    /// The datum for [`Op::MaskedEq`]; unused otherwise.
    pub value_two: u64,
}

impl Condition {
    /// Whether an argument value satisfies the condition, as the filter decides on `arch`.
    pub fn holds(&self, arg: u64, arch: Arch) -> bool {
        let m = if arch.is_64bit() {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let (a, v, w) = (arg & m, self.value & m, self.value_two & m);
        match self.op {
            Op::Ne => a != v,
            Op::Lt => a < v,
            Op::Le => a <= v,
            Op::Eq => a == v,
            Op::Ge => a >= v,
            Op::Gt => a > v,
            Op::MaskedEq => a & v == w & v,
        }
    }
}

/// One entry of `syscalls`: its names share the action and the ANDed conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Syscall names.
    pub names: Vec<String>,
    /// The action when every condition holds.
    pub action: Action,
    /// Conditions, all of which must hold.
    pub args: Vec<Condition>,
}

/// Filter flags the installer passes to `seccomp(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `SECCOMP_FILTER_FLAG_TSYNC`: every thread of the process gets the filter.
    Tsync,
    /// `SECCOMP_FILTER_FLAG_LOG`: log every action but ALLOW.
    Log,
    /// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: keep speculative store bypass mitigation off.
    SpecAllow,
}

impl Flag {
    /// The flag bit for `seccomp(SECCOMP_SET_MODE_FILTER, flags, …)`.
    pub fn bits(self) -> u32 {
        match self {
            Flag::Tsync => 1,
            Flag::Log => 2,
            Flag::SpecAllow => 4,
        }
    }
}

/// A parsed, validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The action for calls no rule matches.
    pub default_action: Action,
    /// ABIs the filter lets through (empty: x86_64 only); others get the bad-arch action.
    pub architectures: Vec<Arch>,
    /// Flags for the installer.
    pub flags: Vec<Flag>,
    /// The rules, in profile order.
    pub syscalls: Vec<Rule>,
}

/// Why a profile cannot be used: the JSON path inside the profile and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// Path of the offending value, e.g. `syscalls[12].args[0].op` (empty: the whole profile).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ProfileError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> ProfileError {
        ProfileError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The path below `base`, the place of the profile in a bigger document:
    /// `linux.seccomp` gives `linux.seccomp.syscalls[12].args[0].op`.
    pub fn path_under(&self, base: &str) -> String {
        match (base.is_empty(), self.path.is_empty()) {
            (true, _) => self.path.clone(),
            (false, true) => base.to_string(),
            (false, false) if self.path.starts_with('[') => format!("{base}{}", self.path),
            (false, false) => format!("{base}.{}", self.path),
        }
    }

    /// One line naming the source, the path of the value below `base` and the reason, e.g.
    /// `config.json linux.seccomp.syscalls[12].args[0].op: unknown op "SCMP_CMP_FOO"`.
    pub fn describe_in(&self, source: &str, base: &str) -> String {
        let path = self.path_under(base);
        match (source.is_empty(), path.is_empty()) {
            (true, true) => self.reason.clone(),
            (true, false) => format!("{path}: {}", self.reason),
            (false, true) => format!("{source}: {}", self.reason),
            (false, false) => format!("{source} {path}: {}", self.reason),
        }
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe_in("", ""))
    }
}

impl std::error::Error for ProfileError {}

type PResult<T> = std::result::Result<T, ProfileError>;

/// The small top-level fields of `LinuxSeccomp`; values stay raw so errors can name
/// their path. The rules are read in place.
#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "defaultAction")]
    default_action: Option<Value>,
    #[serde(rename = "defaultErrnoRet")]
    default_errno_ret: Option<Value>,
    architectures: Option<Value>,
    flags: Option<Value>,
    #[serde(rename = "listenerPath")]
    listener_path: Option<Value>,
}

/// A JSON path inside the profile, spelled out only for an error.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'static str),
    Index(&'a At<'a>, usize),
}

const ROOT: At<'static> = At::Root;

impl<'a> At<'a> {
    fn key(&'a self, k: &'static str) -> At<'a> {
        At::Key(self, k)
    }

    fn idx(&'a self, i: usize) -> At<'a> {
        At::Index(self, i)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(At::Root, k) => f.write_str(k),
            At::Key(p, k) => write!(f, "{p}.{k}"),
            At::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

impl From<At<'_>> for String {
    fn from(a: At<'_>) -> String {
        a.to_string()
    }
}

/// crabcan's own default profile, as data: the allow list of `crabcan run`.
pub const CRABCAN_DEFAULT_JSON: &str = include_str!("crabcan-default.json");

static CRABCAN_DEFAULT: std::sync::LazyLock<std::result::Result<Profile, ProfileError>> =
    std::sync::LazyLock::new(|| parse(CRABCAN_DEFAULT_JSON));

impl Profile {
    /// crabcan's default profile ([`CRABCAN_DEFAULT_JSON`]), parsed once.
    ///
    /// x86_64 calls only (x86 and x32 calls kill the thread, so the ia32 `socketcall`
    /// multiplexer cannot go around the socket rules); ENOSYS for anything not listed; an
    /// allow list; EPERM for mount, namespaces (unshare, setns, and clone with a namespace
    /// flag), ptrace, keys, bpf, perf, io_uring, module and clock calls and more; EPERM for
    /// setuid/setgid modes in chmod, fchmod, fchmodat(2), creat, open(at) and mknod(at),
    /// for AF_VSOCK sockets, and for TIOCSTI and TIOCLINUX; ENOSYS for personalities other
    /// than the usual ones, and for clone3 and openat2, whose flags a filter cannot read.
    pub fn crabcan_default() -> Profile {
        match &*CRABCAN_DEFAULT {
            Ok(p) => p.clone(),
            // The JSON is part of the crate and a test parses it: this cannot happen in a
            // build that passed its tests.
            Err(e) => unreachable!("the embedded default profile is invalid: {e}"),
        }
    }
}

/// [`CRABCAN_DEFAULT_JSON`] as [`compile`] makes it, compiled when crabcan was built: the
/// program `crabcan run` loads by default. Parsing and compiling the profile at each
/// start took about 0.7 ms, a tenth of a `crabcan run`; a test compiles the JSON and
/// checks that this is its program (`CRABCAN_BLESS=1` on that test writes it again after
/// a change to the JSON or to the compiler).
pub fn crabcan_default_program() -> Compiled {
    Compiled {
        instructions: default_program::PROGRAM.to_vec(),
        flags: Vec::new(),
    }
}

/// Parses a `LinuxSeccomp` JSON object.
pub fn parse(json: &str) -> PResult<Profile> {
    let v = crate::json::parse_strict(json)
        .map_err(|e| ProfileError::new(ROOT, format!("invalid JSON: {e}")))?;
    from_value(&v)
}

/// Reads a `LinuxSeccomp` already parsed as JSON (e.g. from inside a whole config).
pub fn from_value(v: &Value) -> PResult<Profile> {
    if !v.is_object() {
        return Err(ProfileError::new(
            ROOT,
            format!("expected an object, found {}", kind(v)),
        ));
    }
    let raw = RawProfile::deserialize(v)
        .map_err(|e| ProfileError::new(ROOT, format!("invalid profile: {e}")))?;
    let default_errno = opt_errno(raw.default_errno_ret.as_ref(), ROOT.key("defaultErrnoRet"))?;
    let default_action = action(
        raw.default_action.as_ref(),
        default_errno,
        ROOT.key("defaultAction"),
        raw.listener_path.as_ref(),
    )?;
    let mut architectures = Vec::new();
    let arch_path = ROOT.key("architectures");
    for (i, a) in array(raw.architectures.as_ref(), arch_path)?
        .iter()
        .enumerate()
    {
        let path = arch_path.idx(i);
        let arch = match string(a, path)? {
            "SCMP_ARCH_X86_64" => Arch::X86_64,
            "SCMP_ARCH_X86" => Arch::X86,
            "SCMP_ARCH_X32" => Arch::X32,
            other => {
                return Err(ProfileError::new(
                    path,
                    format!(
                        "unsupported architecture {other:?} (supported: SCMP_ARCH_X86_64, \
                         SCMP_ARCH_X86, SCMP_ARCH_X32)"
                    ),
                ));
            }
        };
        if !architectures.contains(&arch) {
            architectures.push(arch);
        }
    }
    let mut flags = Vec::new();
    let flags_path = ROOT.key("flags");
    for (i, f) in array(raw.flags.as_ref(), flags_path)?.iter().enumerate() {
        let path = flags_path.idx(i);
        let flag = match string(f, path)? {
            "SECCOMP_FILTER_FLAG_TSYNC" => Flag::Tsync,
            "SECCOMP_FILTER_FLAG_LOG" => Flag::Log,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => Flag::SpecAllow,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => {
                return Err(ProfileError::new(
                    path,
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to SCMP_ACT_NOTIFY, \
                     which is not supported",
                ));
            }
            other => return Err(ProfileError::new(path, format!("unknown flag {other:?}"))),
        };
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    let mut syscalls = Vec::new();
    let rules_path = ROOT.key("syscalls");
    let rules = array(v.get("syscalls"), rules_path)?;
    syscalls.reserve(rules.len());
    for (i, s) in rules.iter().enumerate() {
        syscalls.push(rule(s, rules_path.idx(i))?);
    }
    Ok(Profile {
        default_action,
        architectures,
        flags,
        syscalls,
    })
}

fn rule(v: &Value, path: At<'_>) -> PResult<Rule> {
    let obj = v
        .as_object()
        .ok_or_else(|| ProfileError::new(path, format!("expected an object, found {}", kind(v))))?;
    let names_path = path.key("names");
    let mut names = Vec::new();
    for (i, n) in array(obj.get("names"), names_path)?.iter().enumerate() {
        let p = names_path.idx(i);
        let name = string(n, p)?;
        if name.is_empty() {
            return Err(ProfileError::new(p, "empty syscall name"));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(ProfileError::new(names_path, "no syscall names"));
    }
    let errno = opt_errno(obj.get("errnoRet"), path.key("errnoRet"))?;
    let action = action(
        obj.get("action"),
        errno,
        path.key("action"),
        obj.get("listenerPath"),
    )?;
    let mut args = Vec::new();
    let args_path = path.key("args");
    for (i, a) in array(obj.get("args"), args_path)?.iter().enumerate() {
        args.push(condition(a, args_path.idx(i))?);
    }
    Ok(Rule {
        names,
        action,
        args,
    })
}

fn condition(v: &Value, path: At<'_>) -> PResult<Condition> {
    let obj = v
        .as_object()
        .ok_or_else(|| ProfileError::new(path, format!("expected an object, found {}", kind(v))))?;
    let index_path = path.key("index");
    let index = match obj.get("index") {
        None => return Err(ProfileError::new(index_path, "missing")),
        Some(i) => match i.as_u64() {
            Some(n @ 0..=5) => n as u8,
            _ => {
                return Err(ProfileError::new(
                    index_path,
                    format!("expected an argument index 0..=5, found {i}"),
                ));
            }
        },
    };
    let value_two = u64_field(obj.get("valueTwo"), path.key("valueTwo"))?.unwrap_or(0);
    let op_path = path.key("op");
    let op = match obj.get("op") {
        None => return Err(ProfileError::new(op_path, "missing")),
        Some(o) => match string(o, op_path)? {
            "SCMP_CMP_NE" => Op::Ne,
            "SCMP_CMP_LT" => Op::Lt,
            "SCMP_CMP_LE" => Op::Le,
            "SCMP_CMP_EQ" => Op::Eq,
            "SCMP_CMP_GE" => Op::Ge,
            "SCMP_CMP_GT" => Op::Gt,
            "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
            other => return Err(ProfileError::new(op_path, format!("unknown op {other:?}"))),
        },
    };
    // Required, as the spec has it: a misspelt key must not read as a comparison with 0.
    let value = u64_field(obj.get("value"), path.key("value"))?
        .ok_or_else(|| ProfileError::new(path.key("value"), "missing"))?;
    Ok(Condition {
        index,
        op,
        value,
        value_two,
    })
}

fn action(
    v: Option<&Value>,
    errno: Option<u16>,
    path: At<'_>,
    listener: Option<&Value>,
) -> PResult<Action> {
    let Some(v) = v else {
        return Err(ProfileError::new(path, "missing"));
    };
    let value = errno.unwrap_or(DEFAULT_ERRNO);
    Ok(match string(v, path)? {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(value),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_TRACE" => Action::Trace(value),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => {
            let with = match listener {
                Some(Value::String(p)) => format!(" (listenerPath {p:?})"),
                Some(_) => " (with a listenerPath)".to_string(),
                None => String::new(),
            };
            return Err(ProfileError::new(
                path,
                format!("SCMP_ACT_NOTIFY{with} is not supported: no seccomp agent can be attached"),
            ));
        }
        other => return Err(ProfileError::new(path, format!("unknown action {other:?}"))),
    })
}

fn opt_errno(v: Option<&Value>, path: At<'_>) -> PResult<Option<u16>> {
    match u64_field(v, path)? {
        None => Ok(None),
        Some(n) => u16::try_from(n)
            .map(Some)
            .map_err(|_| ProfileError::new(path, format!("{n} is out of range (at most 65535)"))),
    }
}

fn u64_field(v: Option<&Value>, path: At<'_>) -> PResult<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(Some).ok_or_else(|| {
            ProfileError::new(
                path,
                format!("expected an unsigned 64-bit integer, found {n}"),
            )
        }),
    }
}

fn array<'a>(v: Option<&'a Value>, path: At<'_>) -> PResult<&'a [Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ProfileError::new(
            path,
            format!("expected an array, found {}", kind(other)),
        )),
    }
}

fn string<'a>(v: &'a Value, path: At<'_>) -> PResult<&'a str> {
    v.as_str()
        .ok_or_else(|| ProfileError::new(path, format!("expected a string, found {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
