//! The compiler: a [`Profile`] to a classic BPF program.

use std::collections::BTreeMap;

use super::interp::{ALU_AND_K, JA, JEQ, JGE, JGT, LD_W_ABS, MAX_INSNS, RET};
use super::sat::satisfiable;
use super::{Action, Arch, Condition, Flag, Op, PResult, Profile, ProfileError, X32_SYSCALL_BIT};
use crate::seccomp::BpfInsn;

/// The verdict for a call from an ABI the profile does not list.
///
/// libseccomp's default (kill the thread), which runtimes built on it keep: the same call
/// gets the same verdict under crabcan as under them.
pub const BAD_ARCH_ACTION: Action = Action::KillThread;

/// A compiled profile: the program and the flags to install it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The instructions, ready for `SECCOMP_SET_MODE_FILTER`.
    pub instructions: Vec<BpfInsn>,
    /// Flags the profile asks for.
    pub flags: Vec<Flag>,
}

impl Compiled {
    /// The flags as the bit set `seccomp(2)` takes.
    pub fn flag_bits(&self) -> u32 {
        self.flags.iter().fold(0, |b, f| b | f.bits())
    }
}

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn off_hi(i: u8) -> u32 {
    off_lo(i) + 4
}

const fn stmt(code: u16, k: u32) -> BpfInsn {
    BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Compiles a profile. Pure. An unconditional rule for a syscall wins over every other
/// rule for it (the first one if several, as libseccomp); conditional rules that can match
/// the same call with different actions are refused (there is no rule to choose).
pub fn compile(p: &Profile) -> PResult<Compiled> {
    let arches: Vec<Arch> = if p.architectures.is_empty() {
        vec![Arch::X86_64]
    } else {
        p.architectures.clone()
    };
    let default = p.default_action.ret();
    let mut out = vec![stmt(LD_W_ABS, OFF_ARCH)];
    let has = |a| arches.contains(&a);
    let mut groups = Vec::new();
    if has(Arch::X86_64) || has(Arch::X32) {
        let x64 = if has(Arch::X86_64) {
            Some(tree(&leaves(p, Arch::X86_64)?, default)?)
        } else {
            None
        };
        let x32 = if has(Arch::X32) {
            Some(tree(&leaves(p, Arch::X32)?, default)?)
        } else {
            None
        };
        let mut g = vec![stmt(LD_W_ABS, OFF_NR)];
        match (x64, x32) {
            (Some(t64), None) => {
                // x32 numbers are not x86_64 calls: the bad-arch action, but for -1,
                // which a tracer sets to skip a call.
                g.push(jump(JGE, X32_SYSCALL_BIT, 0, 2));
                g.push(jump(JEQ, u32::MAX, 1, 0));
                g.push(stmt(RET, BAD_ARCH_ACTION.ret()));
                g.extend(t64);
            }
            (None, Some(t32)) => {
                g.push(jump(JGE, X32_SYSCALL_BIT, 1, 0));
                g.push(stmt(RET, BAD_ARCH_ACTION.ret()));
                g.extend(t32);
            }
            (Some(t64), Some(t32)) => {
                g.push(jump(JGE, X32_SYSCALL_BIT, 0, 1));
                g.push(stmt(JA, len_u32(t64.len())));
                g.extend(t64);
                g.extend(t32);
            }
            // The enclosing test makes one of them present.
            (None, None) => {}
        }
        groups.push((Arch::X86_64.audit_arch(), g));
    }
    if has(Arch::X86) {
        let mut g = vec![stmt(LD_W_ABS, OFF_NR)];
        g.extend(tree(&leaves(p, Arch::X86)?, default)?);
        groups.push((Arch::X86.audit_arch(), g));
    }
    for (audit, g) in groups {
        match u8::try_from(g.len()) {
            Ok(skip) => out.push(jump(JEQ, audit, 0, skip)),
            Err(_) => {
                out.push(jump(JEQ, audit, 1, 0));
                out.push(stmt(JA, len_u32(g.len())));
            }
        }
        out.extend(g);
    }
    out.push(stmt(RET, BAD_ARCH_ACTION.ret()));
    if out.len() > MAX_INSNS {
        return Err(ProfileError::new(
            "",
            format!(
                "the compiled filter has {} instructions, more than the kernel's {MAX_INSNS}",
                out.len()
            ),
        ));
    }
    Ok(Compiled {
        instructions: out,
        flags: p.flags.clone(),
    })
}

fn len_u32(n: usize) -> u32 {
    // Programs are capped at MAX_INSNS long before this could truncate.
    u32::try_from(n).unwrap_or(u32::MAX)
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// What the search ends in for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Block(Vec<BpfInsn>),
}

/// The leaf of every number that has rules on `arch`, after the overlap check.
fn leaves(p: &Profile, arch: Arch) -> PResult<BTreeMap<u32, Leaf>> {
    let default = p.default_action;
    let mut by_nr: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in p.syscalls.iter().enumerate() {
        // A rule with the default action changes nothing; libseccomp refuses it, and
        // runtimes drop it before it gets there.
        if r.action == default {
            continue;
        }
        for name in &r.names {
            if let Some(nr) = arch.syscall_nr(name) {
                let rules = by_nr.entry(nr).or_default();
                if rules.last() != Some(&i) {
                    rules.push(i);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (nr, rules) in by_nr {
        // An unconditional rule decides alone, the first one if several: libseccomp keeps
        // the first and treats conditional rules as covered by it. Engines' shipped
        // profiles rely on this (an allow list, then the same name refused).
        if let Some(&i) = rules.iter().find(|&&i| p.syscalls[i].args.is_empty()) {
            out.insert(nr, Leaf::Ret(p.syscalls[i].action.ret()));
            continue;
        }
        for (k, &j) in rules.iter().enumerate() {
            for &i in &rules[..k] {
                let (a, b) = (&p.syscalls[i], &p.syscalls[j]);
                if a.action == b.action {
                    continue;
                }
                let both: Vec<&Condition> = a.args.iter().chain(&b.args).collect();
                if satisfiable(&both, arch.is_64bit()) {
                    let name = b
                        .names
                        .iter()
                        .find(|n| arch.syscall_nr(n) == Some(nr))
                        .map_or("", String::as_str);
                    let width = if arch.is_64bit() {
                        ""
                    } else {
                        " (arguments compare as their low 32 bits there)"
                    };
                    return Err(ProfileError::new(
                        format!("syscalls[{j}]"),
                        format!(
                            "the rule for {name:?} can match the same call as syscalls[{i}] \
                             on {}{width}, with a different action",
                            arch.name()
                        ),
                    ));
                }
            }
        }
        let leaf = Leaf::Block(rules_block(p, &rules, arch)?);
        out.insert(nr, leaf);
    }
    Ok(out)
}

/// Where a condition's jump goes.
#[derive(Debug, Clone, Copy)]
enum To {
    /// The next instruction of the condition (offset 0).
    Next,
    /// Past the condition: it holds.
    Pass,
    /// The next rule: it fails.
    Fail,
}

struct Cond {
    code: Vec<(BpfInsn, To, To)>,
}

impl Cond {
    fn load(&mut self, off: u32) {
        self.code.push((stmt(LD_W_ABS, off), To::Next, To::Next));
    }
    fn and(&mut self, m: u32) {
        if m != u32::MAX {
            self.code.push((stmt(ALU_AND_K, m), To::Next, To::Next));
        }
    }
    fn jmp(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.code.push((jump(code, k, 0, 0), jt, jf));
    }
    fn fail(&mut self) {
        self.code.push((stmt(JA, 0), To::Fail, To::Fail));
    }
}

/// One condition: falls through when it holds, jumps to Fail otherwise.
fn cond_code(c: &Condition, arch: Arch) -> Cond {
    let mut k = Cond { code: Vec::new() };
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    let (wh, wl) = ((c.value_two >> 32) as u32, c.value_two as u32);
    let (hi, lo) = (off_hi(c.index), off_lo(c.index));
    use To::{Fail, Next, Pass};
    if !arch.is_64bit() {
        match c.op {
            Op::Eq => {
                k.load(lo);
                k.jmp(JEQ, vl, Pass, Fail);
            }
            Op::Ne => {
                k.load(lo);
                k.jmp(JEQ, vl, Fail, Pass);
            }
            Op::Gt => {
                k.load(lo);
                k.jmp(JGT, vl, Pass, Fail);
            }
            Op::Ge => {
                k.load(lo);
                k.jmp(JGE, vl, Pass, Fail);
            }
            Op::Lt => {
                k.load(lo);
                k.jmp(JGE, vl, Fail, Pass);
            }
            Op::Le => {
                k.load(lo);
                k.jmp(JGT, vl, Fail, Pass);
            }
            Op::MaskedEq => masked_half(&mut k, lo, vl, wl, true),
        }
        return k;
    }
    match c.op {
        Op::Eq => {
            k.load(hi);
            k.jmp(JEQ, vh, Next, Fail);
            k.load(lo);
            k.jmp(JEQ, vl, Pass, Fail);
        }
        Op::Ne => {
            k.load(hi);
            k.jmp(JEQ, vh, Next, Pass);
            k.load(lo);
            k.jmp(JEQ, vl, Fail, Pass);
        }
        Op::Gt | Op::Ge => {
            k.load(hi);
            k.jmp(JGT, vh, Pass, Next);
            // Not above: hi == 0 already means equal.
            if vh != 0 {
                k.jmp(JEQ, vh, Next, Fail);
            }
            k.load(lo);
            let op = if c.op == Op::Gt { JGT } else { JGE };
            k.jmp(op, vl, Pass, Fail);
        }
        Op::Lt | Op::Le => {
            k.load(hi);
            k.jmp(JGT, vh, Fail, Next);
            if vh != 0 {
                k.jmp(JEQ, vh, Next, Pass);
            }
            k.load(lo);
            let op = if c.op == Op::Lt { JGE } else { JGT };
            k.jmp(op, vl, Fail, Pass);
        }
        Op::MaskedEq => {
            masked_half(&mut k, hi, vh, wh, false);
            masked_half(&mut k, lo, vl, wl, true);
        }
    }
    k
}

/// `word & m == d` for one 32-bit half; `last` means success ends the condition.
fn masked_half(k: &mut Cond, off: u32, m: u32, d: u32, last: bool) {
    if m == 0 {
        // Nothing to load: the half is 0 after the mask, whatever the argument.
        if d != 0 {
            k.fail();
        }
        return;
    }
    k.load(off);
    k.and(m);
    k.jmp(JEQ, d, if last { To::Pass } else { To::Next }, To::Fail);
}

/// The rules of one syscall (all conditional), ORed, then the default action.
fn rules_block(p: &Profile, rules: &[usize], arch: Arch) -> PResult<Vec<BpfInsn>> {
    let mut out = Vec::new();
    for &i in rules {
        let r = &p.syscalls[i];
        // Lay out the conditions first to know where Fail (after the return) lands.
        let conds: Vec<Cond> = r.args.iter().map(|c| cond_code(c, arch)).collect();
        let body: usize = conds.iter().map(|c| c.code.len()).sum();
        let fail = out.len() + body + 1;
        let too_long = || {
            ProfileError::new(
                format!("syscalls[{i}].args"),
                "too many conditions in one rule (its code exceeds a jump's 255 instructions)",
            )
        };
        for c in conds {
            let start = out.len();
            let pass = start + c.code.len();
            for (n, (mut ins, jt, jf)) in c.code.into_iter().enumerate() {
                let pc = start + n;
                let target = |t: To| match t {
                    To::Next => pc + 1,
                    To::Pass => pass,
                    To::Fail => fail,
                };
                if ins.code == JA {
                    ins.k = len_u32(target(jt) - pc - 1);
                } else if ins.code != LD_W_ABS && ins.code != ALU_AND_K {
                    ins.jt = u8::try_from(target(jt) - pc - 1).map_err(|_| too_long())?;
                    ins.jf = u8::try_from(target(jf) - pc - 1).map_err(|_| too_long())?;
                }
                out.push(ins);
            }
        }
        out.push(stmt(RET, r.action.ret()));
    }
    out.push(stmt(RET, p.default_action.ret()));
    Ok(out)
}

/// A binary search on the syscall number (in A) over every number, ending in leaves.
fn tree(leaves: &BTreeMap<u32, Leaf>, default: u32) -> PResult<Vec<BpfInsn>> {
    // Contiguous ranges covering 0..=u32::MAX; equal returns merge.
    let mut ranges: Vec<(u32, Leaf)> = Vec::with_capacity(2 * leaves.len() + 1);
    let push = |start: u32, leaf: Leaf, ranges: &mut Vec<(u32, Leaf)>| {
        let merge =
            matches!((ranges.last(), &leaf), (Some((_, Leaf::Ret(a))), Leaf::Ret(b)) if a == b);
        if !merge {
            ranges.push((start, leaf));
        }
    };
    let mut next: Option<u32> = Some(0);
    for (&nr, leaf) in leaves {
        if let Some(n) = next
            && n < nr
        {
            push(n, Leaf::Ret(default), &mut ranges);
        }
        push(nr, leaf.clone(), &mut ranges);
        next = nr.checked_add(1);
    }
    if let Some(n) = next {
        push(n, Leaf::Ret(default), &mut ranges);
    }
    let mut out = Vec::new();
    emit_tree(&ranges, &mut out);
    Ok(out)
}

/// Each node is `jge pivot`: the lower half follows it, the upper half after that; every
/// path ends in a return, so nothing jumps back.
fn emit_tree(ranges: &[(u32, Leaf)], out: &mut Vec<BpfInsn>) {
    match ranges {
        [] => out.push(stmt(RET, super::ret::KILL_THREAD)),
        [(_, Leaf::Ret(r))] => out.push(stmt(RET, *r)),
        [(_, Leaf::Block(b))] => out.extend_from_slice(b),
        _ => {
            let mid = ranges.len() / 2;
            let node = out.len();
            out.push(jump(JGE, ranges[mid].0, 0, 0));
            let start = out.len();
            emit_tree(&ranges[..mid], out);
            let left = out.len() - start;
            match u8::try_from(left) {
                Ok(jt) => out[node].jt = jt,
                Err(_) => {
                    // Conditional offsets are 8 bits: hop over the lower half with `ja`.
                    out.insert(start, stmt(JA, len_u32(left)));
                    out[node].jt = 0;
                    out[node].jf = 1;
                }
            }
            emit_tree(&ranges[mid..], out);
        }
    }
}
