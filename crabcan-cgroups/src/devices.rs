//! Which device nodes a container may open or create: an ordered rule list (pure data), its
//! cgroup v1 form (lines for `devices.deny` / `devices.allow`), its cgroup v2 form (a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program), and the steps that apply them.
//!
//! Device nodes shipped in an image already fail to open through `nodev` mounts; this is the
//! second line of defence: even a node reachable through a mount without `nodev` opens only
//! when the container's cgroup allows its type and numbers.
//!
//! # Rule semantics
//!
//! A request is a device type (char or block), a major and minor number and the accesses it
//! needs (read, write, mknod; opening read-write asks for both at once). A [`DeviceRule`]
//! matches a request when its kind is [`DeviceKind::All`] or the request's type, its major
//! and minor are absent (any) or equal, and the request's accesses are all among the rule's.
//! The rules are read in order and **the last matching rule decides**; a request no rule
//! matches is denied. A rule for every device with every access therefore overrides all
//! rules before it, which is how a list starts from "deny everything".

use crate::host::Cgroup2Mount;
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The largest major number the kernel gives a device (12 bits).
pub const MAX_MAJOR: u32 = (1 << 12) - 1;

/// The largest minor number the kernel gives a device (20 bits).
pub const MAX_MINOR: u32 = (1 << 20) - 1;

/// Which device files a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character and block devices.
    All,
    /// Character devices.
    Char,
    /// Block devices.
    Block,
}

/// The accesses a rule grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Opening for reading.
    pub read: bool,
    /// Opening for writing.
    pub write: bool,
    /// Creating the node with mknod.
    pub mknod: bool,
}

impl Access {
    /// Read, write and mknod.
    pub const RWM: Access = Access {
        read: true,
        write: true,
        mknod: true,
    };

    /// Whether every access of `other` is also one of these.
    pub fn covers(self, other: Access) -> bool {
        (self.read || !other.read) && (self.write || !other.write) && (self.mknod || !other.mknod)
    }

    /// The `rwm` letters of the cgroup v1 files.
    pub fn letters(self) -> String {
        let mut s = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                s.push(c);
            }
        }
        s
    }

    /// The bits of `bpf_cgroup_dev_ctx.access_type >> 16` (mknod 1, read 2, write 4).
    pub fn bpf_bits(self) -> u32 {
        u32::from(self.mknod) | (u32::from(self.read) << 1) | (u32::from(self.write) << 2)
    }
}

/// One device rule: allow or deny `access` to the devices of `kind` with these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Whether a matching request is allowed (else denied).
    pub allow: bool,
    /// The device files it is about.
    pub kind: DeviceKind,
    /// The major number; `None` for any.
    pub major: Option<u32>,
    /// The minor number; `None` for any.
    pub minor: Option<u32>,
    /// The accesses it is about.
    pub access: Access,
}

impl DeviceRule {
    /// Allows every access to the character device `major:minor` (`None`: any minor).
    pub const fn allow_char(major: u32, minor: Option<u32>) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access: Access::RWM,
        }
    }

    /// Denies every access to every device.
    pub const DENY_ALL: DeviceRule = DeviceRule {
        allow: false,
        kind: DeviceKind::All,
        major: None,
        minor: None,
        access: Access::RWM,
    };

    /// Whether this rule matches a request for `access` to the device `kind major:minor`
    /// (`kind` is [`DeviceKind::Char`] or [`DeviceKind::Block`]).
    pub fn matches(&self, kind: DeviceKind, major: u32, minor: u32, access: Access) -> bool {
        (self.kind == DeviceKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && self.access.covers(access)
    }

    /// Whether some device is named by both rules (whatever their accesses).
    pub fn overlaps(&self, other: &DeviceRule) -> bool {
        let kinds = self.kind == DeviceKind::All
            || other.kind == DeviceKind::All
            || self.kind == other.kind;
        let same = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        kinds && same(self.major, other.major) && same(self.minor, other.minor)
    }

    /// Whether it matches every request (every device, every access): it overrides all
    /// rules before it.
    pub fn is_total(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == Access::RWM
    }

    /// The rule as in the cgroup v1 files: `a`, or `c 1:3 rwm` (`*` for any number).
    pub fn describe(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        format!(
            "{} {kind} {}:{} {}",
            if self.allow { "allow" } else { "deny" },
            num(self.major),
            num(self.minor),
            self.access.letters()
        )
    }
}

/// The rules of a default container: deny everything, then allow the standard nodes of its
/// `/dev` — null, zero, full, random, urandom, tty, ptmx and the pty slaves — with every
/// access.
pub fn default_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule::DENY_ALL,
        DeviceRule::allow_char(1, Some(3)),
        DeviceRule::allow_char(1, Some(5)),
        DeviceRule::allow_char(1, Some(7)),
        DeviceRule::allow_char(1, Some(8)),
        DeviceRule::allow_char(1, Some(9)),
        DeviceRule::allow_char(5, Some(0)),
        DeviceRule::allow_char(5, Some(2)),
        DeviceRule::allow_char(136, None),
    ]
}

/// Whether `rules` allow `access` to the device `kind major:minor`: the last matching rule
/// decides, no match denies (the semantics every form of the rules must keep).
pub fn allowed(
    rules: &[DeviceRule],
    kind: DeviceKind,
    major: u32,
    minor: u32,
    access: Access,
) -> bool {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(kind, major, minor, access))
        .is_some_and(|r| r.allow)
}

/// Checks that every number in `rules` is one the kernel can give a device.
pub fn check_rules(rules: &[DeviceRule]) -> Result<()> {
    for (i, r) in rules.iter().enumerate() {
        if let Some(m) = r.major.filter(|&m| m > MAX_MAJOR) {
            return Err(Errcode::usage(format!(
                "device rule {i} ({}): major {m} is above {MAX_MAJOR}",
                r.describe()
            )));
        }
        if let Some(m) = r.minor.filter(|&m| m > MAX_MINOR) {
            return Err(Errcode::usage(format!(
                "device rule {i} ({}): minor {m} is above {MAX_MINOR}",
                r.describe()
            )));
        }
    }
    Ok(())
}

/// One write to a file of a cgroup v1 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Write {
    /// `devices.deny`, `devices.allow`, `pids.max`, …
    pub file: &'static str,
    /// The line: `a`, `c 1:3 rwm`, `4096`.
    pub value: String,
}

/// The cgroup v1 writes that give a fresh devices cgroup exactly the decisions of `rules`.
///
/// cgroup v1 keeps a default (allow or deny) and a list of exceptions, not an ordered list,
/// so only rule lists of that shape translate exactly: rules before the last total rule (see
/// [`DeviceRule::is_total`]) are overridden and left out; that total rule must deny (no
/// total rule: deny, as with no match); every rule after it must allow, and no two of them
/// may name the same device numbers (the kernel would merge their accesses into one
/// exception that grants more than either). A last total rule that allows (a privileged
/// container) becomes v1's allow-everything default with deny exceptions, see
/// `v1_writes_allowing`. Other lists are refused, naming the rule.
pub fn v1_writes(rules: &[DeviceRule]) -> Result<Vec<V1Write>> {
    check_rules(rules)?;
    let start = rules.iter().rposition(DeviceRule::is_total);
    if let Some(i) = start
        && rules[i].allow
    {
        return v1_writes_allowing(rules, i);
    }
    let first = start.map_or(0, |i| i + 1);
    let mut out = vec![V1Write {
        file: "devices.deny",
        value: "a".into(),
    }];
    let mut seen: Vec<(char, Option<u32>, Option<u32>)> = Vec::new();
    for (i, r) in rules.iter().enumerate().skip(first) {
        // Every real request asks for at least one access, so a rule naming none can never
        // match one (and v1 has no line for it).
        if r.access.letters().is_empty() {
            continue;
        }
        if !r.allow {
            return Err(v1_refused(
                i,
                r,
                "cgroup v1 can only add exceptions to its default, not take part of one back",
            ));
        }
        for line in v1_lines(r) {
            let key = (line.0, r.major, r.minor);
            if seen.contains(&key) {
                return Err(v1_refused(
                    i,
                    r,
                    "an earlier rule names the same device numbers and cgroup v1 would merge them",
                ));
            }
            seen.push(key);
            out.push(V1Write {
                file: "devices.allow",
                value: line.1,
            });
        }
    }
    Ok(out)
}

/// The v1 lines of a list whose last total rule (at `total`) allows everything (a privileged
/// container): `devices.allow a`, then each later deny as an exception. With that default
/// the kernel refuses a request that shares any access with a deny exception, so only denies
/// of every access keep the rules' meaning (last match decides); an allow after a deny it
/// overlaps would have to take part of that exception back, which v1 cannot. Allows that
/// overlap no earlier deny change nothing and are left out.
fn v1_writes_allowing(rules: &[DeviceRule], total: usize) -> Result<Vec<V1Write>> {
    let mut out = vec![V1Write {
        file: "devices.allow",
        value: "a".into(),
    }];
    let mut denied: Vec<&DeviceRule> = Vec::new();
    for (i, r) in rules.iter().enumerate().skip(total + 1) {
        if r.access.letters().is_empty() {
            continue;
        }
        if r.allow {
            if denied.iter().any(|d| d.overlaps(r)) {
                return Err(v1_refused(
                    i,
                    r,
                    "after allowing everything, cgroup v1 cannot allow again part of what a deny took back",
                ));
            }
            continue;
        }
        if r.access != Access::RWM {
            return Err(v1_refused(
                i,
                r,
                "after allowing everything, cgroup v1 denies a device for every access or none",
            ));
        }
        denied.push(r);
        out.extend(v1_lines(r).into_iter().map(|(_, value)| V1Write {
            file: "devices.deny",
            value,
        }));
    }
    Ok(out)
}

/// The v1 lines (`c 1:3 rwm`) of one rule, with its kind letter: an all-kinds rule is a
/// char and a block line.
fn v1_lines(r: &DeviceRule) -> Vec<(char, String)> {
    let kinds: &[char] = match r.kind {
        DeviceKind::All => &['c', 'b'],
        DeviceKind::Char => &['c'],
        DeviceKind::Block => &['b'],
    };
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    kinds
        .iter()
        .map(|&k| {
            (
                k,
                format!(
                    "{k} {}:{} {}",
                    num(r.major),
                    num(r.minor),
                    r.access.letters()
                ),
            )
        })
        .collect()
}

fn v1_refused(i: usize, r: &DeviceRule, why: &str) -> Errcode {
    Errcode::usage(format!(
        "device rule {i} ({}) cannot be expressed in cgroup v1: {why}",
        r.describe()
    ))
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    /// The opcode.
    pub code: u8,
    /// Destination register in the low four bits, source register in the high four.
    pub regs: u8,
    /// Jump offset or memory offset.
    pub off: i16,
    /// The immediate operand.
    pub imm: i32,
}

/// The opcodes the device programs use (class | operation | source).
pub mod op {
    /// `dst = *(u32 *)(src + off)`.
    pub const LDX_W: u8 = 0x61;
    /// `dst = src` (64 bits).
    pub const MOV_X: u8 = 0xbf;
    /// `dst = imm` (64 bits).
    pub const MOV_K: u8 = 0xb7;
    /// `dst &= imm` (64 bits).
    pub const AND_K: u8 = 0x57;
    /// `dst >>= imm` (64 bits, logical).
    pub const RSH_K: u8 = 0x77;
    /// `if dst != imm goto pc + off`.
    pub const JNE_K: u8 = 0x55;
    /// `return r0`.
    pub const EXIT: u8 = 0x95;
}

/// Registers the programs use: r1 holds the context, r2 the type, r3 the accesses, r4 the
/// major, r5 the minor, r6 scratch.
mod reg {
    pub const CTX: u8 = 1;
    pub const TYPE: u8 = 2;
    pub const ACCESS: u8 = 3;
    pub const MAJOR: u8 = 4;
    pub const MINOR: u8 = 5;
    pub const SCRATCH: u8 = 6;
}

/// `bpf_cgroup_dev_ctx.access_type & 0xffff` for a block device.
pub const BPF_DEVCG_DEV_BLOCK: u32 = 1;
/// `bpf_cgroup_dev_ctx.access_type & 0xffff` for a character device.
pub const BPF_DEVCG_DEV_CHAR: u32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

/// The `BPF_PROG_TYPE_CGROUP_DEVICE` program that decides as [`allowed`] does over `rules`.
///
/// The program reads `bpf_cgroup_dev_ctx` (access_type: type in the low 16 bits, accesses
/// above; major; minor), tests the rules from the last to the first, and returns 1 (allow)
/// or 0 (deny) for the first that matches; 0 when none does. It calls no helper.
pub fn bpf_program(rules: &[DeviceRule]) -> Result<Vec<BpfInsn>> {
    use op::*;
    use reg::*;
    check_rules(rules)?;
    let mut p = vec![
        insn(LDX_W, TYPE, CTX, 0, 0),
        insn(MOV_X, ACCESS, TYPE, 0, 0),
        insn(AND_K, TYPE, 0, 0, 0xffff),
        insn(RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_W, MAJOR, CTX, 4, 0),
        insn(LDX_W, MINOR, CTX, 8, 0),
    ];
    // From the last rule back, so the first match is the last matching rule. A rule that
    // matches everything ends the program: what comes before it can never decide.
    for r in rules.iter().rev() {
        let mut tests: Vec<(u8, i32, Option<BpfInsn>)> = Vec::new();
        match r.kind {
            DeviceKind::All => {}
            DeviceKind::Char => tests.push((TYPE, BPF_DEVCG_DEV_CHAR as i32, None)),
            DeviceKind::Block => tests.push((TYPE, BPF_DEVCG_DEV_BLOCK as i32, None)),
        }
        if r.access != Access::RWM {
            // The request matches only if it asks for nothing outside the rule's accesses.
            let outside = 0b111 & !r.access.bpf_bits();
            tests.push((SCRATCH, 0, Some(insn(AND_K, SCRATCH, 0, 0, outside as i32))));
        }
        // check_rules bounded the numbers, so they fit an i32 immediate unchanged.
        if let Some(m) = r.major {
            tests.push((MAJOR, m as i32, None));
        }
        if let Some(m) = r.minor {
            tests.push((MINOR, m as i32, None));
        }
        // Each test is one jump (two more instructions for the access mask); then
        // `r0 = allow; exit`. A failed test jumps past the block.
        let block: usize = tests
            .iter()
            .map(|t| if t.2.is_some() { 3 } else { 1 })
            .sum::<usize>()
            + 2;
        let mut used = 0usize;
        for (dst, imm, pre) in tests {
            if let Some(pre) = pre {
                p.push(insn(MOV_X, SCRATCH, ACCESS, 0, 0));
                p.push(pre);
                used += 2;
            }
            used += 1;
            let skip = i16::try_from(block - used).map_err(|_| too_long())?;
            p.push(insn(JNE_K, dst, 0, skip, imm));
        }
        p.push(insn(MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if r.is_total() {
            return Ok(p);
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

fn too_long() -> Errcode {
    Errcode::usage("device rules: one rule's program block is too long for a jump")
}

/// `bpf(2)` commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel takes a shorter
/// attribute than its own and reads the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields of `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// The license the programs are loaded under: they call no GPL-only helper, so the kernel
/// does not require a GPL-compatible one.
const LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

/// Loads `insns` as a cgroup device program; the kernel's verifier checks it. On a refusal
/// the error carries the verifier's last line.
pub fn load_program(insns: &[BpfInsn]) -> Result<OwnedFd> {
    // Without a log first: a log that outgrows its buffer would fail a good program.
    match prog_load(insns, None) {
        Ok(fd) => Ok(fd),
        Err(errno) => {
            let mut log = vec![0u8; 256 * 1024];
            let again = prog_load(insns, Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let last = text
                .trim_end_matches('\0')
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            if let Ok(fd) = again {
                return Ok(fd);
            }
            let e = Errcode::sys(
                "load the device rules' eBPF program (bpf BPF_PROG_LOAD)",
                errno,
            );
            Err(if last.is_empty() {
                e
            } else {
                e.with_hint(format!("the verifier said: {last}"))
            })
        }
    }
}

fn prog_load(insns: &[BpfInsn], log: Option<&mut [u8]>) -> std::result::Result<OwnedFd, Errno> {
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"crabcan_device");
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix whose pointers (instructions, license, log
    // buffer with its size) stay alive for the call; the kernel writes only into the log.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: a non-negative return of BPF_PROG_LOAD is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches the device program `prog` to the cgroup v2 directory `dir`. The attachment lives
/// as long as the cgroup: nothing to undo but removing the cgroup.
pub fn attach_program(prog: &OwnedFd, dir: &Path) -> Result<()> {
    let cg = fs::File::open(dir).sys_ctx(|| format!("open cgroup {}", dir.display()))?;
    let fd = |f: i32| u32::try_from(f).unwrap_or(u32::MAX);
    let attr = ProgAttachAttr {
        target_fd: fd(cg.as_raw_fd()),
        attach_bpf_fd: fd(prog.as_raw_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for BPF_PROG_ATTACH with two open descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if r < 0 {
        return Err(Errno::last()).sys_ctx(|| {
            format!(
                "attach the device rules' eBPF program to cgroup {} (bpf BPF_PROG_ATTACH)",
                dir.display()
            )
        });
    }
    Ok(())
}

/// Generates, loads and attaches the program for `rules` to the cgroup v2 directory `dir`.
pub fn confine_v2(rules: &[DeviceRule], dir: &Path) -> Result<()> {
    let prog = load_program(&bpf_program(rules)?)?;
    attach_program(&prog, dir)
}

/// The cgroup v1 hierarchy holding the devices controller (mount point and which cgroup is
/// at it), from the text of /proc/self/mountinfo.
pub fn v1_devices_mount(mountinfo: &str) -> Option<Cgroup2Mount> {
    v1_controller_mount(mountinfo, "devices")
}

/// The cgroup v1 hierarchy holding `controller` (mount point and which cgroup is at it),
/// from the text of /proc/self/mountinfo.
pub fn v1_controller_mount(mountinfo: &str, controller: &str) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") || !r.nth(1)?.split(',').any(|o| o == controller) {
            return None;
        }
        let mut l = left.split_whitespace();
        let root = l.nth(3)?;
        let mount_point = crate::host::v1_mount_of(line, controller)?;
        Some(Cgroup2Mount {
            mount_point,
            root: root.to_string(),
        })
    })
}

/// The caller's cgroup path in the v1 hierarchy of `controller`, from /proc/self/cgroup.
pub fn own_v1_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
        (ctls.split(',').any(|c| c == controller) && path.starts_with('/'))
            .then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: DeviceKind = DeviceKind::Char;
    const B: DeviceKind = DeviceKind::Block;
    const R: Access = Access {
        read: true,
        write: false,
        mknod: false,
    };
    const W: Access = Access {
        read: false,
        write: true,
        mknod: false,
    };
    const M: Access = Access {
        read: false,
        write: false,
        mknod: true,
    };
    const RW: Access = Access {
        read: true,
        write: true,
        mknod: false,
    };

    /// A small interpreter for the instructions [`bpf_program`] emits, over a
    /// `bpf_cgroup_dev_ctx`; panics on anything else (a test failure).
    fn run(prog: &[BpfInsn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let (dst, src) = (usize::from(i.regs & 0x0f), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                op::LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    let off = usize::try_from(i.off).unwrap();
                    assert_eq!(off % 4, 0);
                    r[dst] = u64::from(ctx[off / 4]);
                }
                op::MOV_X => r[dst] = r[src],
                op::MOV_K => r[dst] = i.imm as i64 as u64,
                op::AND_K => r[dst] &= i.imm as i64 as u64,
                op::RSH_K => r[dst] >>= i.imm,
                op::JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc = pc.checked_add_signed(isize::from(i.off)).unwrap();
                    }
                }
                op::EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("the program did not end");
    }

    fn access_type(kind: DeviceKind, a: Access) -> u32 {
        let t = match kind {
            DeviceKind::Block => BPF_DEVCG_DEV_BLOCK,
            _ => BPF_DEVCG_DEV_CHAR,
        };
        (a.bpf_bits() << 16) | t
    }

    fn prog_allows(p: &[BpfInsn], kind: DeviceKind, major: u32, minor: u32, a: Access) -> bool {
        match run(p, access_type(kind, a), major, minor) {
            0 => false,
            1 => true,
            v => panic!("the program returned {v}"),
        }
    }

    #[test]
    fn default_rules_allow_the_standard_nodes_only() {
        let rules = default_rules();
        let p = bpf_program(&rules).unwrap();
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
            for a in [R, W, M, RW, Access::RWM] {
                assert!(allowed(&rules, C, major, minor, a), "c {major}:{minor}");
                assert!(prog_allows(&p, C, major, minor, a), "c {major}:{minor}");
                assert!(!allowed(&rules, B, major, minor, a), "b {major}:{minor}");
                assert!(!prog_allows(&p, B, major, minor, a), "b {major}:{minor}");
            }
        }
        for minor in [0, 1, 255, MAX_MINOR] {
            assert!(prog_allows(&p, C, 136, minor, RW));
        }
        // kmsg, mem, the fuse and kvm nodes, console, a disk.
        for (kind, major, minor) in [
            (C, 1, 11),
            (C, 1, 1),
            (C, 10, 229),
            (C, 10, 232),
            (C, 5, 1),
            (B, 8, 0),
            (C, 137, 0),
            (C, 135, 0),
        ] {
            assert!(!allowed(&rules, kind, major, minor, R));
            assert!(!prog_allows(&p, kind, major, minor, R));
            assert!(!prog_allows(&p, kind, major, minor, M));
        }
    }

    #[test]
    fn literal_program_of_one_rule() {
        use op::*;
        let p = bpf_program(&[DeviceRule {
            allow: true,
            kind: C,
            major: Some(1),
            minor: None,
            access: R,
        }])
        .unwrap();
        let head = [
            insn(LDX_W, 2, 1, 0, 0),
            insn(MOV_X, 3, 2, 0, 0),
            insn(AND_K, 2, 0, 0, 0xffff),
            insn(RSH_K, 3, 0, 0, 16),
            insn(LDX_W, 4, 1, 4, 0),
            insn(LDX_W, 5, 1, 8, 0),
        ];
        let body = [
            insn(JNE_K, 2, 0, 6, 2),
            insn(MOV_X, 6, 3, 0, 0),
            insn(AND_K, 6, 0, 0, 0b101),
            insn(JNE_K, 6, 0, 3, 0),
            insn(JNE_K, 4, 0, 2, 1),
            insn(MOV_K, 0, 0, 0, 1),
            insn(EXIT, 0, 0, 0, 0),
            insn(MOV_K, 0, 0, 0, 0),
            insn(EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, [&head[..], &body[..]].concat());
        // bpf_cgroup_dev_ctx inputs: (access << 16 | type, major, minor).
        assert_eq!(run(&p, (2 << 16) | 2, 1, 3), 1);
        assert_eq!(run(&p, (6 << 16) | 2, 1, 3), 0);
        assert_eq!(run(&p, (2 << 16) | 1, 1, 3), 0);
        assert_eq!(run(&p, (2 << 16) | 2, 2, 3), 0);
        assert_eq!(run(&p, (1 << 16) | 2, 1, 3), 0);
    }

    #[test]
    fn the_default_program_ends_at_the_deny_all() {
        let p = bpf_program(&default_rules()).unwrap();
        // Six loads; seven rules of three tests (type, major, minor) and `r0 = 1; exit`; the
        // pts rule of two tests; the deny-all's `r0 = 0; exit`.
        assert_eq!(p.len(), 6 + 7 * 5 + 4 + 2);
        assert_eq!(p[p.len() - 2], insn(op::MOV_K, 0, 0, 0, 0));
        assert_eq!(run(&p, (6 << 16) | 2, 5, 2), 1);
        assert_eq!(run(&p, (6 << 16) | 2, 5, 3), 0);
        assert_eq!(run(&p, (1 << 16) | 2, 136, 4), 1);
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        let deny_kmsg = DeviceRule {
            allow: false,
            kind: C,
            major: Some(1),
            minor: Some(11),
            access: Access::RWM,
        };
        let allow_mem_class = DeviceRule::allow_char(1, None);
        // Allow all of major 1, then take kmsg back.
        let rules = [allow_mem_class, deny_kmsg];
        let p = bpf_program(&rules).unwrap();
        assert!(prog_allows(&p, C, 1, 3, RW));
        assert!(!prog_allows(&p, C, 1, 11, R));
        // The other way round, the wildcard wins again.
        let rules = [deny_kmsg, allow_mem_class];
        let p = bpf_program(&rules).unwrap();
        assert!(prog_allows(&p, C, 1, 11, R));
        // A total rule at the end overrides everything before it.
        let rules = [allow_mem_class, DeviceRule::DENY_ALL];
        let p = bpf_program(&rules).unwrap();
        assert!(!prog_allows(&p, C, 1, 3, R));
        assert_eq!(p.len(), 6 + 2);
        // Allow everything, then deny block devices for writing only.
        let rules = [
            DeviceRule {
                allow: true,
                ..DeviceRule::DENY_ALL
            },
            DeviceRule {
                allow: false,
                kind: B,
                major: None,
                minor: None,
                access: W,
            },
        ];
        let p = bpf_program(&rules).unwrap();
        assert!(prog_allows(&p, B, 8, 0, R));
        assert!(!prog_allows(&p, B, 8, 0, W));
        // Asking for read-write is more than the deny rule names: it does not match.
        assert!(prog_allows(&p, B, 8, 0, RW));
        assert!(prog_allows(&p, C, 8, 0, W));
        // No rule: nothing matches, everything is denied.
        let p = bpf_program(&[]).unwrap();
        assert!(!prog_allows(&p, C, 1, 3, R));
    }

    #[test]
    fn v1_lines_of_the_default_rules() {
        let w = v1_writes(&default_rules()).unwrap();
        let lines: Vec<String> = w
            .iter()
            .map(|w| format!("{} {}", w.file, w.value))
            .collect();
        assert_eq!(
            lines,
            [
                "devices.deny a",
                "devices.allow c 1:3 rwm",
                "devices.allow c 1:5 rwm",
                "devices.allow c 1:7 rwm",
                "devices.allow c 1:8 rwm",
                "devices.allow c 1:9 rwm",
                "devices.allow c 5:0 rwm",
                "devices.allow c 5:2 rwm",
                "devices.allow c 136:* rwm",
            ]
        );
    }

    #[test]
    fn v1_refuses_what_it_cannot_express_exactly() {
        let allow_all = DeviceRule {
            allow: true,
            ..DeviceRule::DENY_ALL
        };
        let deny_one = DeviceRule {
            allow: false,
            ..DeviceRule::allow_char(1, Some(3))
        };
        let e = v1_writes(&[DeviceRule::allow_char(1, None), deny_one])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("device rule 1 (deny c 1:3 rwm)"), "{e}");
        let read_only = DeviceRule {
            access: R,
            ..DeviceRule::allow_char(1, Some(3))
        };
        let e = v1_writes(&[DeviceRule::allow_char(1, Some(3)), read_only])
            .unwrap_err()
            .to_string();
        assert!(e.contains("same device numbers"), "{e}");
        // Rules before the last total rule are overridden and left out.
        // After allowing everything: whole-device denies only, and no allow taking one back.
        let deny_read = DeviceRule {
            allow: false,
            ..read_only
        };
        let e = v1_writes(&[allow_all, deny_read]).unwrap_err().to_string();
        assert!(e.starts_with("device rule 1 (deny c 1:3 r)"), "{e}");
        let e = v1_writes(&[allow_all, deny_one, read_only])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("device rule 2 (allow c 1:3 r)"), "{e}");
        let w = v1_writes(&[allow_all, deny_one, DeviceRule::DENY_ALL, read_only]).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].value, "c 1:3 r");
        // An all-kinds rule becomes a char and a block line.
        let any = DeviceRule {
            allow: true,
            kind: DeviceKind::All,
            major: Some(7),
            minor: None,
            access: RW,
        };
        let w = v1_writes(&[any]).unwrap();
        let v: Vec<&str> = w.iter().map(|w| w.value.as_str()).collect();
        assert_eq!(v, ["a", "c 7:* rw", "b 7:* rw"]);
    }

    #[test]
    fn v1_lines_of_a_privileged_container() {
        let allow_all = DeviceRule {
            allow: true,
            ..DeviceRule::DENY_ALL
        };
        let lines = |rules: &[DeviceRule]| -> Vec<String> {
            v1_writes(rules)
                .unwrap()
                .iter()
                .map(|w| format!("{} {}", w.file, w.value))
                .collect()
        };
        // docker's and kubelet's privileged containers send this rule alone.
        assert_eq!(lines(&[allow_all]), ["devices.allow a"]);
        // Rules before it are overridden; allows after it change nothing.
        let kmsg = DeviceRule {
            allow: false,
            ..DeviceRule::allow_char(1, Some(11))
        };
        assert_eq!(
            lines(&[
                DeviceRule::DENY_ALL,
                allow_all,
                DeviceRule::allow_char(1, Some(3)),
                kmsg
            ]),
            ["devices.allow a", "devices.deny c 1:11 rwm"]
        );
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let big = DeviceRule::allow_char(MAX_MAJOR + 1, None);
        let e = bpf_program(&[big]).unwrap_err().to_string();
        assert!(e.contains("major 4096"), "{e}");
        let big = DeviceRule::allow_char(1, Some(MAX_MINOR + 1));
        assert!(v1_writes(&[big]).is_err());
        assert!(bpf_program(&[DeviceRule::allow_char(MAX_MAJOR, Some(MAX_MINOR))]).is_ok());
    }

    #[test]
    fn where_the_v1_devices_hierarchy_is() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let m = v1_devices_mount(mi).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/devices"));
        assert_eq!(m.root, "/");
        let pc = "9:name=systemd:/\n5:devices:/system.slice/x.service\n4:memory:/a\n0::/\n";
        let own = own_v1_path(pc, "devices").unwrap();
        assert_eq!(own, "/system.slice/x.service");
        let dir = crate::host::own_cgroup_dir(&m, &own).unwrap();
        assert_eq!(
            dir,
            Path::new("/sys/fs/cgroup/devices/system.slice/x.service")
        );
        assert_eq!(own_v1_path("0::/\n", "devices"), None);
        assert_eq!(own_v1_path("5:devices:rel\n", "devices"), None);
        assert_eq!(
            v1_devices_mount("41 31 0:38 / /x rw - cgroup2 cgroup2 rw\n"),
            None
        );
        let joint =
            "40 31 0:37 /lxc /sys/fs/cgroup/cpu,devices rw - cgroup cgroup rw,cpu,devices\n";
        let m = v1_devices_mount(joint).unwrap();
        assert_eq!(m.root, "/lxc");
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/cpu,devices"));
    }

    fn kind() -> impl Strategy<Value = DeviceKind> {
        prop_oneof![Just(DeviceKind::All), Just(C), Just(B)]
    }

    fn access() -> impl Strategy<Value = Access> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(read, write, mknod)| Access {
            read,
            write,
            mknod,
        })
    }

    /// What a real request asks for: at least one access.
    fn request() -> impl Strategy<Value = Access> {
        access().prop_filter("a request asks for something", |a| a.bpf_bits() != 0)
    }

    /// The kernel's decision on cgroup v1 lines: after `devices.deny a` a request needs an
    /// allow exception holding every access it asks for; after `devices.allow a` it is
    /// refused when a deny exception shares any access with it.
    fn v1_decides(w: &[V1Write], block: bool, major: u32, minor: u32, a: Access) -> bool {
        let k = if block { 'b' } else { 'c' };
        let hits = |w: &V1Write, every: bool| {
            let f: Vec<&str> = w.value.split([' ', ':']).collect();
            let num = |s: &str, n: u32| s == "*" || s == n.to_string();
            let asked = [('r', a.read), ('w', a.write), ('m', a.mknod)];
            let access = if every {
                asked.iter().all(|&(c, on)| !on || f[3].contains(c))
            } else {
                asked.iter().any(|&(c, on)| on && f[3].contains(c))
            };
            f[0].starts_with(k) && num(f[1], major) && num(f[2], minor) && access
        };
        if w[0].file == "devices.deny" {
            w[1..].iter().any(|w| hits(w, true))
        } else {
            !w[1..].iter().any(|w| hits(w, false))
        }
    }

    fn rule() -> impl Strategy<Value = DeviceRule> {
        (
            any::<bool>(),
            kind(),
            prop::option::of(0u32..4),
            prop::option::of(0u32..4),
            access(),
        )
            .prop_map(|(allow, kind, major, minor, access)| DeviceRule {
                allow,
                kind,
                major,
                minor,
                access,
            })
    }

    proptest! {
        /// The program decides every request as the reference semantics do.
        #[test]
        fn program_agrees_with_the_rules(
            rules in prop::collection::vec(rule(), 0..8),
            block: bool,
            major in 0u32..5,
            minor in 0u32..5,
            a in access(),
        ) {
            let k = if block { B } else { C };
            let p = bpf_program(&rules).unwrap();
            prop_assert_eq!(prog_allows(&p, k, major, minor, a), allowed(&rules, k, major, minor, a));
        }

        /// Whenever the v1 lines exist, the kernel's v1 decision (default deny, allowed
        /// when one exception covers the request) agrees with the rules.
        #[test]
        fn v1_lines_agree_with_the_rules(
            rules in prop::collection::vec(rule(), 0..6),
            block: bool,
            major in 0u32..5,
            minor in 0u32..5,
            a in request(),
        ) {
            let Ok(w) = v1_writes(&rules) else { return Ok(()); };
            prop_assert_eq!(&w[0].value, "a");
            let kind = if block { B } else { C };
            prop_assert_eq!(v1_decides(&w, block, major, minor, a), allowed(&rules, kind, major, minor, a));
        }

        /// The same on lists of the shape v1 takes (deny everything, then allows), which
        /// random lists seldom have.
        #[test]
        fn v1_lines_agree_on_deny_then_allow_lists(
            lead: bool,
            allows in prop::collection::vec(rule(), 0..6),
            block: bool,
            major in 0u32..5,
            minor in 0u32..5,
            a in request(),
        ) {
            let mut rules: Vec<DeviceRule> = lead.then_some(DeviceRule::DENY_ALL).into_iter().collect();
            rules.extend(allows.into_iter().map(|r| DeviceRule { allow: true, ..r }));
            let Ok(w) = v1_writes(&rules) else { return Ok(()); };
            let kind = if block { B } else { C };
            prop_assert_eq!(v1_decides(&w, block, major, minor, a), allowed(&rules, kind, major, minor, a));
        }

        /// Lists that allow everything then take devices back agree with the kernel's v1
        /// model of that default: a request is refused when a deny exception shares an
        /// access with it.
        #[test]
        fn v1_lines_agree_on_allow_then_deny_lists(
            rest in prop::collection::vec(rule(), 0..6),
            block: bool,
            major in 0u32..5,
            minor in 0u32..5,
            a in request(),
        ) {
            let mut rules = vec![DeviceRule { allow: true, ..DeviceRule::DENY_ALL }];
            rules.extend(rest);
            let Ok(w) = v1_writes(&rules) else { return Ok(()); };
            let kind = if block { B } else { C };
            prop_assert_eq!(v1_decides(&w, block, major, minor, a), allowed(&rules, kind, major, minor, a));
        }

        #[test]
        fn any_numbers_never_panic(major: u32, minor: u32, allow: bool) {
            let r = DeviceRule { allow, kind: C, major: Some(major), minor: Some(minor), access: R };
            let _ = bpf_program(&[r]);
            let _ = v1_writes(&[r]);
        }
    }
}
