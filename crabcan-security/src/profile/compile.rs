//! The compiler: a [`Profile`] to a classic BPF program.

use super::interp::{ALU_AND_K, JA, JEQ, JGE, JGT, LD_IMM, LD_W_ABS, MAX_INSNS, RET, RET_A};
use super::sat::satisfiable;
use super::{Action, Arch, Condition, Flag, Op, PResult, Profile, ProfileError, X32_SYSCALL_BIT};
use crate::seccomp::BpfInsn;
use std::borrow::Cow;

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

    /// The program as bytes to send to another process: the flag bits (u32, little
    /// endian), then each instruction as the kernel lays it out (code, jt, jf, k).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.instructions.len());
        out.extend_from_slice(&self.flag_bits().to_le_bytes());
        for i in &self.instructions {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.extend_from_slice(&[i.jt, i.jf]);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out
    }

    /// Reads [`Compiled::to_bytes`]; `None` for anything else (unknown flag bits, a partial
    /// instruction, no instruction or more than the kernel takes).
    pub fn from_bytes(b: &[u8]) -> Option<Compiled> {
        let (bits, rest) = b.split_first_chunk::<4>()?;
        let bits = u32::from_le_bytes(*bits);
        let flags: Vec<Flag> = [Flag::Tsync, Flag::Log, Flag::SpecAllow]
            .into_iter()
            .filter(|f| bits & f.bits() != 0)
            .collect();
        if flags.iter().fold(0, |a, f| a | f.bits()) != bits
            || rest.is_empty()
            || rest.len() % 8 != 0
            || rest.len() / 8 > MAX_INSNS
        {
            return None;
        }
        let instructions = rest
            .chunks_exact(8)
            .map(|c| BpfInsn {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Compiled {
            instructions,
            flags,
        })
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
///
/// The search on the syscall number keeps every call's path short. libseccomp lays a small
/// profile out as plain rows of comparisons instead, which can be a little shorter when
/// most calls have a verdict of their own: for a profile naming few syscalls both layouts
/// are made (it is cheap there) and the shorter kept.
pub fn compile(p: &Profile) -> PResult<Compiled> {
    let search = compile_layout(p, CHAIN_TESTS_MAX)?;
    let names: usize = p.syscalls.iter().map(|r| r.names.len()).sum();
    if names > SMALL_PROFILE {
        return Ok(search);
    }
    match compile_layout(p, ROW_TESTS_MAX) {
        Ok(rows) if rows.instructions.len() < search.instructions.len() => Ok(rows),
        _ => Ok(search),
    }
}

/// Profiles naming at most this many syscalls are also compiled as rows. Past it, the
/// search is the shorter in practice (engines' profiles name 300 and more) and a second
/// compilation would double the time.
const SMALL_PROFILE: usize = 64;

/// Comparisons a row may hold in the rows layout.
const ROW_TESTS_MAX: usize = 64;

/// [`compile`] with rows of comparisons of at most `row_tests` where the search is longer.
fn compile_layout(p: &Profile, row_tests: usize) -> PResult<Compiled> {
    let arches: Vec<Arch> = if p.architectures.is_empty() {
        vec![Arch::X86_64]
    } else {
        p.architectures.clone()
    };
    let default = p.default_action.ret();
    // One lookup per name gives its number on every ABI.
    let mut named: Vec<Named<'_>> = Vec::with_capacity(512);
    // The last rule (plus one) each name of the table was seen in: a name a rule repeats
    // adds nothing but work (the overlap check is quadratic).
    let mut seen_in = vec![0usize; super::names_len()];
    for (i, r) in p.syscalls.iter().enumerate() {
        // A rule with the default action changes nothing; libseccomp refuses it, and
        // runtimes drop it before it gets there.
        if r.action == p.default_action {
            continue;
        }
        // Names without a number of their own seen in this rule (a few at most).
        let mut seen_unnumbered: Vec<&str> = Vec::new();
        for name in &r.names {
            if let Some(at) = super::lookup_index(name) {
                if seen_in[at] == i + 1 {
                    continue;
                }
                seen_in[at] = i + 1;
                named.push((super::numbers_at(at), i, name));
            } else if multiplexed(name).is_some() && !seen_unnumbered.contains(&name.as_str()) {
                // `send` and `recv` exist only behind x86's socketcall: no number of
                // their own.
                const NOWHERE: [Option<u32>; 3] = [None; 3];
                seen_unnumbered.push(name);
                named.push((&NOWHERE, i, name));
            }
        }
    }
    let has = |a| arches.contains(&a);
    let tree_for = |a: Arch| -> PResult<Option<Vec<BpfInsn>>> {
        if has(a) {
            Ok(Some(tree(leaves(p, &named, a)?, default, row_tests)))
        } else {
            Ok(None)
        }
    };
    // Each group: its AUDIT_ARCH value, its code, and (in the first group) the
    // instructions whose false branch goes to the bad-arch return at the very end.
    let mut groups: Vec<(u32, Vec<BpfInsn>)> = Vec::new();
    let mut bad_arch_jumps: Vec<usize> = Vec::new();
    if has(Arch::X86_64) || has(Arch::X32) {
        let mut g = vec![stmt(LD_W_ABS, OFF_NR)];
        match (tree_for(Arch::X86_64)?, tree_for(Arch::X32)?) {
            (Some(t64), None) => {
                // x32 numbers are not x86_64 calls: the bad-arch action, but for -1,
                // which a tracer sets to skip a call.
                g.push(jump(JGE, X32_SYSCALL_BIT, 0, 1));
                g.push(jump(JEQ, u32::MAX, 0, 0));
                bad_arch_jumps.push(g.len() - 1);
                g.extend(t64);
            }
            (None, Some(t32)) => {
                g.push(jump(JGE, X32_SYSCALL_BIT, 0, 0));
                bad_arch_jumps.push(g.len() - 1);
                g.extend(t32);
            }
            (Some(t64), Some(t32)) => {
                match u8::try_from(t64.len()) {
                    Ok(skip) => g.push(jump(JGE, X32_SYSCALL_BIT, skip, 0)),
                    Err(_) => {
                        g.push(jump(JGE, X32_SYSCALL_BIT, 0, 1));
                        g.push(stmt(JA, len_u32(t64.len())));
                    }
                }
                g.extend(t64);
                g.extend(t32);
            }
            // The enclosing test makes one of them present.
            (None, None) => {}
        }
        groups.push((Arch::X86_64.audit_arch(), g));
    }
    if let Some(t) = tree_for(Arch::X86)? {
        let mut g = vec![stmt(LD_W_ABS, OFF_NR)];
        g.extend(t);
        groups.push((Arch::X86.audit_arch(), g));
    }
    let dispatch_len = |g: &[BpfInsn]| if u8::try_from(g.len()).is_ok() { 1 } else { 2 };
    let later: usize = groups
        .iter()
        .skip(1)
        .map(|(_, g)| dispatch_len(g) + g.len())
        .sum();
    if let Some((_, g)) = groups.first_mut()
        && !bad_arch_jumps.is_empty()
    {
        let distance = |g: &[BpfInsn], at: usize| g.len() - at - 1 + later;
        if bad_arch_jumps
            .iter()
            .all(|&at| u8::try_from(distance(g, at)).is_ok())
        {
            for &at in &bad_arch_jumps {
                g[at].jf = distance(g, at) as u8;
            }
        } else {
            // Too far: a return of its own right after the jump, the tree one further.
            for &at in bad_arch_jumps.iter().rev() {
                g.insert(at + 1, stmt(RET, BAD_ARCH_ACTION.ret()));
                g[at].jt = 1;
                if at == 2 {
                    // x86_64 only: `jge` skips the `jeq` and now the return too.
                    g[1].jf = 2;
                }
            }
        }
    }
    let mut out = vec![stmt(LD_W_ABS, OFF_ARCH)];
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
    let out = share_tails(&out);
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

/// The program with identical code kept once: the rule blocks of several ABIs, or of
/// several syscalls, often end alike (the same comparisons leading to the same returns).
///
/// Two instructions are the same when they have the same opcode and constant and their
/// successors are the same; jumps only go forward, so this is decided from the end. Each
/// jump then goes to the last copy of its target. A copy stays where an instruction
/// without a jump (a load, an `and`) runs into it, and where the shared copy is out of a
/// conditional jump's reach. The result decides every call as the input does.
fn share_tails(prog: &[BpfInsn]) -> Vec<BpfInsn> {
    let n = prog.len();
    let falls = |code: u16| matches!(code, LD_W_ABS | ALU_AND_K | LD_IMM);
    let targets = |i: usize| -> [Option<usize>; 2] {
        let ins = prog[i];
        match ins.code {
            c if falls(c) => [Some(i + 1), None],
            JA => [Some(i + 1 + ins.k as usize), None],
            RET | RET_A => [None, None],
            _ => [
                Some(i + 1 + usize::from(ins.jt)),
                Some(i + 1 + usize::from(ins.jf)),
            ],
        }
    };
    // The last instruction of each class of equal ones.
    let mut canon: Vec<usize> = (0..n).collect();
    let mut seen: FastMap<(u16, u32, usize, usize), usize> =
        FastMap::with_capacity_and_hasher(n, MixState::default());
    for i in (0..n).rev() {
        let ins = prog[i];
        let c = |t: Option<usize>| t.filter(|&t| t < n).map_or(usize::MAX, |t| canon[t]);
        let [t, f] = targets(i);
        if ins.code == JA {
            // An unconditional jump does what its target does.
            if let Some(t) = t.filter(|&t| t < n) {
                canon[i] = canon[t];
            }
            continue;
        }
        canon[i] = *seen.entry((ins.code, ins.k, c(t), c(f))).or_insert(i);
    }
    let mut keep: Vec<bool> = (0..n).map(|i| canon[i] == i).collect();
    // Where a target is dropped, each jump goes to its class's kept copy.
    let redirect = |keep: &[bool], t: usize| if keep[t] { t } else { canon[t] };
    loop {
        // The first instruction and whatever a kept load or `and` runs into stay.
        if let Some(k) = keep.first_mut() {
            *k = true;
        }
        for i in 0..n.saturating_sub(1) {
            if keep[i] && falls(prog[i].code) {
                keep[i + 1] = true;
            }
        }
        let mut at = vec![0usize; n];
        let mut next = 0;
        for i in 0..n {
            at[i] = next;
            next += usize::from(keep[i]);
        }
        // Shared targets out of a conditional jump's reach: keep the jumps' own. All of
        // this pass at once (keeping more copies is always correct), so that a long
        // program takes a few passes, not one per far jump.
        let mut far = Vec::new();
        for i in (0..n).filter(|&i| keep[i]) {
            let code = prog[i].code;
            if falls(code) || matches!(code, JA | RET | RET_A) {
                continue;
            }
            far.extend(targets(i).into_iter().flatten().filter(|&t| {
                !keep[t] && at[redirect(&keep, t)] - at[i] - 1 > usize::from(u8::MAX)
            }));
        }
        if !far.is_empty() {
            for t in far {
                keep[t] = true;
            }
            continue;
        }
        let mut out = Vec::with_capacity(next);
        for i in (0..n).filter(|&i| keep[i]) {
            let mut ins = prog[i];
            let dist = |t: usize| at[redirect(&keep, t)] - at[i] - 1;
            match ins.code {
                c if falls(c) => {}
                RET | RET_A => {}
                JA => ins.k = len_u32(dist(i + 1 + ins.k as usize)),
                _ => {
                    // In reach: checked above.
                    ins.jt = dist(i + 1 + usize::from(ins.jt)) as u8;
                    ins.jf = dist(i + 1 + usize::from(ins.jf)) as u8;
                }
            }
            out.push(ins);
        }
        return out;
    }
}

/// A hash map for the compiler's own keys: instruction fields and positions, of which the
/// profile chooses the constants. std's default hasher costs several times more here; this
/// one is seeded at random for each process (a profile cannot be made offline to collide)
/// and folds every bit into the ones the table indexes by.
type FastMap<K, V> = std::collections::HashMap<K, V, MixState>;

/// Makes [`Mix`] hashers from one random seed.
#[derive(Clone)]
struct MixState(u64);

impl Default for MixState {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // std's hasher is keyed at random per process: what it makes of nothing is a
        // random word.
        MixState(std::hash::RandomState::new().build_hasher().finish())
    }
}

impl std::hash::BuildHasher for MixState {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(self.0)
    }
}

/// A multiply-rotate hasher over the words it is given: each word is folded into the state
/// and mixed by one multiplication by an odd constant.
struct Mix(u64);

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        // A multiplication carries each bit upwards only: the high half is folded into the
        // low one, where the table takes its index.
        let z = (self.0 ^ (self.0 >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^ (z >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn len_u32(n: usize) -> u32 {
    // Programs are capped at MAX_INSNS long before this could truncate.
    u32::try_from(n).unwrap_or(u32::MAX)
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// A rule name found in the tables: its numbers, the rule's index, the name.
type Named<'a> = (&'static [Option<u32>; 3], usize, &'a str);

/// What the search ends in for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Block(Block),
}

/// One rule as it applies to one syscall number on one ABI.
struct Entry<'a> {
    nr: u32,
    origin: usize,
    name: &'a str,
    action: Action,
    args: Cow<'a, [Condition]>,
    /// Reached through a multiplexer (x86 `socketcall` or `ipc`), named here.
    via: Option<&'static str>,
}

/// x86 reaches socket and System V IPC calls through a multiplexer whose first argument
/// names the call. libseccomp adds a rule on the multiplexer for every such name, with
/// the first argument fixed to the call's code (the rule's own conditions on the first
/// argument give way; the others stay): do the same, so a refused `socket` cannot be
/// reached through `socketcall`.
fn multiplexed(name: &str) -> Option<(&'static str, u64)> {
    let socketcall = |code| Some(("socketcall", code));
    let ipc = |code| Some(("ipc", code));
    match name {
        "socket" => socketcall(1),
        "bind" => socketcall(2),
        "connect" => socketcall(3),
        "listen" => socketcall(4),
        "accept" => socketcall(5),
        "getsockname" => socketcall(6),
        "getpeername" => socketcall(7),
        "socketpair" => socketcall(8),
        "send" => socketcall(9),
        "recv" => socketcall(10),
        "sendto" => socketcall(11),
        "recvfrom" => socketcall(12),
        "shutdown" => socketcall(13),
        "setsockopt" => socketcall(14),
        "getsockopt" => socketcall(15),
        "sendmsg" => socketcall(16),
        "recvmsg" => socketcall(17),
        "accept4" => socketcall(18),
        "recvmmsg" => socketcall(19),
        "sendmmsg" => socketcall(20),
        "semop" => ipc(1),
        "semget" => ipc(2),
        "semctl" => ipc(3),
        "semtimedop" => ipc(4),
        "msgsnd" => ipc(11),
        "msgrcv" => ipc(12),
        "msgget" => ipc(13),
        "msgctl" => ipc(14),
        "shmat" => ipc(21),
        "shmdt" => ipc(22),
        "shmget" => ipc(23),
        "shmctl" => ipc(24),
        _ => None,
    }
}

/// Pairs of rules with different actions the overlap check compares at most, per ABI. An
/// engine's profile needs a few thousand; a profile past this is refused rather than
/// checked for minutes (the check is quadratic in the rules of a call).
const OVERLAP_CHECKS_MAX: usize = 1 << 22;

/// The leaf of every number that has rules on `arch`, sorted by number, after the
/// overlap check.
fn leaves(p: &Profile, named: &[Named<'_>], arch: Arch) -> PResult<Vec<(u32, Leaf)>> {
    let mut entries: Vec<Entry<'_>> = Vec::with_capacity(named.len() + 8);
    for &(nrs, origin, name) in named {
        let rule = &p.syscalls[origin];
        if let Some(nr) = nrs[arch.slot()] {
            entries.push(Entry {
                nr,
                origin,
                name,
                action: rule.action,
                args: Cow::Borrowed(&rule.args),
                via: None,
            });
        }
        if arch == Arch::X86
            && let Some((mux, code)) = multiplexed(name)
            && let Some(nr) = arch.syscall_nr(mux)
        {
            let mut args = vec![Condition {
                index: 0,
                op: Op::Eq,
                value: code,
                value_two: 0,
            }];
            args.extend(rule.args.iter().filter(|c| c.index != 0));
            entries.push(Entry {
                nr,
                origin,
                name,
                action: rule.action,
                args: Cow::Owned(args),
                via: Some(mux),
            });
        }
    }
    // By number, and within one by rule: the order they were pushed in is the rules' order,
    // so the position breaks ties as the rule's index would. Sorted as plain keys, each
    // entry then moved once.
    let mut order: Vec<u64> = entries
        .iter()
        .enumerate()
        .map(|(at, e)| (u64::from(e.nr) << 32) | at as u64)
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<Entry<'_>>> = entries.into_iter().map(Some).collect();
    let entries: Vec<Entry<'_>> = order
        .iter()
        .filter_map(|k| slots[(k & u64::from(u32::MAX)) as usize].take())
        .collect();
    let mut out = Vec::new();
    let mut checks = 0usize;
    for group in entries.chunk_by(|a, b| a.nr == b.nr) {
        // An unconditional rule decides alone, the first one if several: libseccomp keeps
        // the first and treats conditional rules as covered by it. Engines' shipped
        // profiles rely on this (an allow list, then the same name refused).
        if let Some(e) = group.iter().find(|e| e.args.is_empty()) {
            out.push((e.nr, Leaf::Ret(e.action.ret())));
            continue;
        }
        // Every distinct conditional rule of a call takes an instruction at least: more
        // of them than the kernel takes in a whole filter are refused before any work.
        // (Counted only for a group that long: an engine's profile never pays for it.)
        let too_many = group.len() > 4 * MAX_INSNS
            || group.len() > MAX_INSNS
                && group
                    .iter()
                    .map(|e| (e.action.ret(), e.args.as_ref()))
                    .collect::<std::collections::HashSet<(u32, &[Condition])>>()
                    .len()
                    > MAX_INSNS;
        if too_many {
            let last = &group[group.len() - 1];
            return Err(ProfileError::new(
                format!("syscalls[{}]", last.origin),
                format!(
                    "{} conditional rules for {:?} on {}: the filter would be longer than \
                     the kernel's {MAX_INSNS} instructions",
                    group.len(),
                    last.name,
                    arch.name()
                ),
            ));
        }
        for (k, b) in group.iter().enumerate() {
            for a in &group[..k] {
                if a.action == b.action {
                    continue;
                }
                checks += 1;
                if checks > OVERLAP_CHECKS_MAX {
                    return Err(ProfileError::new(
                        format!("syscalls[{}]", b.origin),
                        format!(
                            "more than {OVERLAP_CHECKS_MAX} pairs of rules with different \
                             actions on {} to check for overlap: shorten the profile",
                            arch.name()
                        ),
                    ));
                }
                let both: Vec<&Condition> = a.args.iter().chain(b.args.iter()).collect();
                if satisfiable(&both, arch.is_64bit()) {
                    return Err(overlap(a, b, arch));
                }
            }
        }
        out.push((group[0].nr, Leaf::Block(rules_block(p, group, arch)?)));
    }
    Ok(out)
}

fn overlap(a: &Entry<'_>, b: &Entry<'_>, arch: Arch) -> ProfileError {
    let via = |e: &Entry<'_>| e.via.map_or(String::new(), |m| format!(" (through {m})"));
    let width = if arch.is_64bit() {
        ""
    } else {
        " (arguments compare as their low 32 bits there)"
    };
    let same = if a.origin == b.origin {
        "itself".to_string()
    } else {
        format!("syscalls[{}]", a.origin)
    };
    ProfileError::new(
        format!("syscalls[{}]", b.origin),
        format!(
            "the rule for {:?}{} can match the same call as {same} for {:?}{} on {}{width}, \
             with a different action",
            b.name,
            via(b),
            a.name,
            via(a),
            arch.name()
        ),
    )
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
}

/// One condition: falls through when it holds, jumps to Fail otherwise.
fn cond_code(c: &Condition, arch: Arch) -> Cond {
    let mut k = Cond { code: Vec::new() };
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    // Datum bits outside the mask do not count (libseccomp masks the datum).
    let datum = c.value_two & c.value;
    let (wh, wl) = ((datum >> 32) as u32, datum as u32);
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

/// `word & m == d` for one 32-bit half (`d` within `m`); `last` means success ends the
/// condition.
fn masked_half(k: &mut Cond, off: u32, m: u32, d: u32, last: bool) {
    if m == 0 {
        // Nothing to compare: the half is 0 after the mask, and so is the datum; falling
        // off the end of the condition is passing it.
        return;
    }
    k.load(off);
    k.and(m);
    k.jmp(JEQ, d, if last { To::Pass } else { To::Next }, To::Fail);
}

/// A jump target in a block: an instruction of the block, or a return of this value
/// (placed where the block is laid out, shared with other code where it can be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tgt {
    At(usize),
    Ret(u32),
}

/// The rules of one syscall number, with symbolic returns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    code: Vec<(BpfInsn, Tgt, Tgt)>,
    /// Where each unit's code ends, and the return values of its actions.
    ends: Vec<(usize, Vec<u32>)>,
    /// The return value when no rule matches.
    default: u32,
}

impl Block {
    /// The return values the block jumps to, in order of first use.
    fn rets(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for &(_, jt, jf) in &self.code {
            for t in [jt, jf] {
                if let Tgt::Ret(r) = t
                    && !v.contains(&r)
                {
                    v.push(r);
                }
            }
        }
        v
    }

    /// Appends the block as if it started at `base`; `ret_at` gives the index of a
    /// `ret v` after it. `None` if a jump does not reach.
    fn place(
        &self,
        base: usize,
        ret_at: &dyn Fn(u32) -> usize,
        out: &mut Vec<BpfInsn>,
    ) -> Option<()> {
        for (n, &(mut ins, jt, jf)) in self.code.iter().enumerate() {
            let pc = base + n;
            let target = |t: Tgt| match t {
                Tgt::At(i) => base + i,
                Tgt::Ret(v) => ret_at(v),
            };
            match ins.code {
                LD_W_ABS | ALU_AND_K | RET => {}
                JA => ins.k = u32::try_from(target(jt).checked_sub(pc + 1)?).ok()?,
                _ => {
                    ins.jt = u8::try_from(target(jt).checked_sub(pc + 1)?).ok()?;
                    ins.jf = u8::try_from(target(jf).checked_sub(pc + 1)?).ok()?;
                }
            }
            out.push(ins);
        }
        Some(())
    }

    /// Drops loads of a word A already holds on every path that reaches them (rules on
    /// the same argument, one after another).
    fn drop_reloads(mut self) -> Block {
        let n = self.code.len();
        // What A holds before each instruction: None = not reached yet; Some(None) =
        // unknown; Some(Some(k)) = the word at offset k. Jumps only go forward, so every
        // predecessor of an instruction comes before it.
        let mut state: Vec<Option<Option<u32>>> = vec![None; n];
        if n > 0 {
            state[0] = Some(None);
        }
        let mut keep = vec![true; n];
        for i in 0..n {
            let Some(a) = state[i] else { continue };
            let (ins, jt, jf) = self.code[i];
            if ins.code == LD_W_ABS && a == Some(ins.k) {
                keep[i] = false;
            }
            let after = match ins.code {
                LD_W_ABS => Some(ins.k),
                ALU_AND_K => None,
                _ => a,
            };
            let mut flow = |t: usize| {
                if t < n {
                    state[t] = Some(match state[t] {
                        None => after,
                        Some(x) if x == after => x,
                        Some(_) => None,
                    });
                }
            };
            match ins.code {
                LD_W_ABS | ALU_AND_K => flow(i + 1),
                _ => {
                    for t in [jt, jf] {
                        if let Tgt::At(t) = t {
                            flow(t);
                        }
                    }
                }
            }
        }
        // A dropped load's jumps land on the instruction after it.
        let mut new_index = Vec::with_capacity(n + 1);
        let mut kept = 0;
        for &k in &keep {
            new_index.push(kept);
            kept += usize::from(k);
        }
        new_index.push(kept);
        let remap = |t: Tgt| match t {
            Tgt::At(i) => Tgt::At(new_index[i]),
            r => r,
        };
        self.code = self
            .code
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(&(ins, jt, jf), _)| (ins, remap(jt), remap(jf)))
            .collect();
        for e in &mut self.ends {
            e.0 = new_index[e.0];
        }
        self
    }

    /// The block with each rule's return right after it and the default return last:
    /// every jump stays within a rule, however many rules there are.
    fn inline_local(&self) -> Option<Vec<BpfInsn>> {
        let n = self.code.len();
        let mut map = vec![0usize; n + 1];
        let mut owner = vec![0usize; n];
        // Index of the first local return of each unit.
        let mut unit_rets = Vec::with_capacity(self.ends.len());
        let mut at = 0;
        let mut start = 0;
        for (k, (end, rets)) in self.ends.iter().enumerate() {
            for i in start..*end {
                map[i] = at;
                owner[i] = k;
                at += 1;
            }
            unit_rets.push(at);
            at += rets.len();
            start = *end;
        }
        map[n] = at;
        let final_ret = at;
        let mut out = Vec::with_capacity(at + 1);
        let mut first = 0;
        for (end, rets) in &self.ends {
            for i in first..*end {
                let (mut ins, jt, jf) = self.code[i];
                let pc = map[i];
                let unit = owner[i];
                let target = |t: Tgt| match t {
                    Tgt::At(j) => map[j],
                    Tgt::Ret(v) => self.ends[unit]
                        .1
                        .iter()
                        .position(|r| *r == v)
                        .map_or(final_ret, |x| unit_rets[unit] + x),
                };
                match ins.code {
                    LD_W_ABS | ALU_AND_K | RET => {}
                    JA => ins.k = u32::try_from(target(jt).checked_sub(pc + 1)?).ok()?,
                    _ => {
                        ins.jt = u8::try_from(target(jt).checked_sub(pc + 1)?).ok()?;
                        ins.jf = u8::try_from(target(jf).checked_sub(pc + 1)?).ok()?;
                    }
                }
                out.push(ins);
            }
            out.extend(rets.iter().map(|&v| stmt(RET, v)));
            first = *end;
        }
        out.push(stmt(RET, self.default));
        Some(out)
    }

    /// The block with its own returns after it, shared where jumps reach them, one after
    /// each rule otherwise.
    fn inline(&self) -> Option<Vec<BpfInsn>> {
        self.inline_pooled().or_else(|| self.inline_local())
    }

    fn inline_pooled(&self) -> Option<Vec<BpfInsn>> {
        let rets = self.rets();
        let len = self.code.len();
        let mut out = Vec::with_capacity(len + rets.len());
        let at = |v: u32| len + rets.iter().position(|r| *r == v).unwrap_or(0);
        self.place(0, &at, &mut out)?;
        out.extend(rets.iter().map(|&v| stmt(RET, v)));
        Some(out)
    }
}

/// A piece of a block: one rule, or rules that each compare one argument for equality
/// with values sharing their high half (one load of each half for all of them).
enum Unit<'e, 'a> {
    Rule(&'e Entry<'a>),
    Eqs {
        index: u8,
        hi: u32,
        /// (low half, return value)
        items: Vec<(u32, u32)>,
    },
}

/// What one comparison row of a block holds at most, its values and their distinct
/// returns together, so that its jumps stay in reach (255) with room for the load and the
/// rules after it. Long rows share best: the same row under another ABI, or another
/// syscall, becomes the same code.
const EQS_MAX: usize = 200;

/// The rules of one syscall (all conditional), ORed, then the default action: the shorter
/// of the rules one after another and a decision diagram of their tests.
fn rules_block(p: &Profile, rules: &[Entry<'_>], arch: Arch) -> PResult<Block> {
    let seq = sequential_block(p, rules, arch)?;
    let Some(dd) = decision_block(p, rules, arch) else {
        return Ok(seq);
    };
    let len = |b: &Block| b.inline().map_or(usize::MAX, |c| c.len());
    Ok(if len(&dd) < len(&seq) { dd } else { seq })
}

/// One test of a rule: the word at `off`, and-ed with `mask`, compared with `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Atom {
    off: u32,
    mask: u32,
    code: u16,
    k: u32,
}

/// Where a rule goes after a test: its next test, a match, or no match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Step(u16),
    Done,
    Fail,
}

/// A rule's conditions as a list of tests, each with where each outcome leads.
fn rule_steps(r: &Entry<'_>, arch: Arch) -> Vec<(Atom, Out, Out)> {
    let conds: Vec<Cond> = r.args.iter().map(|c| cond_code(c, arch)).collect();
    let is_test = |c: u16| !matches!(c, LD_W_ABS | ALU_AND_K);
    let total: usize = conds
        .iter()
        .map(|c| c.code.iter().filter(|(i, _, _)| is_test(i.code)).count())
        .sum();
    let step = |i: usize| {
        if i >= total {
            Out::Done
        } else {
            Out::Step(i as u16)
        }
    };
    let mut steps = Vec::with_capacity(total);
    for c in &conds {
        let tests = c.code.iter().filter(|(i, _, _)| is_test(i.code)).count();
        // Past this condition: the next one's first test, or a match.
        let pass = steps.len() + tests;
        let (mut off, mut mask) = (0, u32::MAX);
        for (ins, jt, jf) in &c.code {
            match ins.code {
                LD_W_ABS => (off, mask) = (ins.k, u32::MAX),
                ALU_AND_K => mask = ins.k,
                code => {
                    let next = steps.len() + 1;
                    let to = |t: &To| match t {
                        To::Next => step(next),
                        To::Pass => step(pass),
                        To::Fail => Out::Fail,
                    };
                    let atom = Atom {
                        off,
                        mask,
                        code,
                        k: ins.k,
                    };
                    steps.push((atom, to(jt), to(jf)));
                }
            }
        }
    }
    steps
}

/// A node of the decision diagram, or a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Node(usize),
    Ret(u32),
}

/// A decision diagram being built.
struct Diagram {
    /// Each rule's tests.
    steps: Vec<Vec<(Atom, Out, Out)>>,
    /// Each rule's return value.
    actions: Vec<u32>,
    default: u32,
    budget: usize,
    nodes: Vec<(Atom, Child, Child)>,
    /// States (each live rule and the test it waits on) already made.
    memo: FastMap<Vec<(u16, u16)>, Child>,
}

impl Diagram {
    /// The state after `atom` was tested with the given outcome, or the return it leads to.
    fn advance(
        &self,
        state: &[(u16, u16)],
        atom: Atom,
        holds: bool,
    ) -> Result<Vec<(u16, u16)>, u32> {
        let mut next = Vec::with_capacity(state.len());
        for &(r, s) in state {
            let (a, t, f) = self.steps[usize::from(r)][usize::from(s)];
            if a != atom {
                next.push((r, s));
                continue;
            }
            match if holds { t } else { f } {
                Out::Step(n) => next.push((r, n)),
                // Rules that can match together have the same action.
                Out::Done => return Err(self.actions[usize::from(r)]),
                Out::Fail => {}
            }
        }
        if next.is_empty() {
            Err(self.default)
        } else {
            Ok(next)
        }
    }

    /// The node deciding `state`: it tests what the first live rule waits on. `None` past
    /// the budget. The depth is at most the number of tests of all rules.
    fn build(&mut self, state: Vec<(u16, u16)>) -> Option<Child> {
        if let Some(c) = self.memo.get(&state) {
            return Some(*c);
        }
        let (r, s) = state[0];
        let atom = self.steps[usize::from(r)][usize::from(s)].0;
        let mut kids = [Child::Ret(0); 2];
        for (k, holds) in kids.iter_mut().zip([true, false]) {
            *k = match self.advance(&state, atom, holds) {
                Err(ret) => Child::Ret(ret),
                Ok(next) => self.build(next)?,
            };
        }
        if self.nodes.len() >= self.budget {
            return None;
        }
        self.nodes.push((atom, kids[0], kids[1]));
        let c = Child::Node(self.nodes.len() - 1);
        self.memo.insert(state, c);
        Some(c)
    }
}

/// Nodes a diagram may have per test of its rules before the rules one after another win
/// anyway (and before a pathological profile costs time).
const DIAGRAM_GROWTH: usize = 2;

/// The rules as a decision diagram: each test is made once on every path, and every rule
/// waiting on it moves on together (libseccomp builds its filters this way). States, the
/// test each live rule waits on, are shared, so equal sub-diagrams are made once. `None`
/// when the diagram grows past its budget or a rule always matches.
fn decision_block(p: &Profile, rules: &[Entry<'_>], arch: Arch) -> Option<Block> {
    let steps: Vec<Vec<(Atom, Out, Out)>> = rules.iter().map(|r| rule_steps(r, arch)).collect();
    if steps.iter().any(Vec::is_empty) || rules.len() > usize::from(u16::MAX) {
        return None;
    }
    let tests: usize = steps.iter().map(Vec::len).sum();
    // Every test is two instructions at least: rules with more tests than half the
    // kernel's limit never fit a diagram, and building one would recurse as deep as they
    // have tests, and hold a state per level (a config with thousands of rules for one call
    // would exhaust the stack or gigabytes of memory). One after another, they are refused
    // as too long.
    if tests > MAX_INSNS / 2 {
        return None;
    }
    let budget = DIAGRAM_GROWTH * tests + 8;
    let default = p.default_action.ret();
    let mut d = Diagram {
        actions: rules.iter().map(|r| r.action.ret()).collect(),
        steps,
        default,
        budget,
        nodes: Vec::new(),
        memo: FastMap::default(),
    };
    let start: Vec<(u16, u16)> = (0..rules.len() as u16).map(|r| (r, 0)).collect();
    let Child::Node(root) = d.build(start)? else {
        return None;
    };
    let nodes = d.nodes;
    // Children are made before their parents: the root is last, and laying the nodes out
    // from the last to the first puts every parent before its children.
    let order: Vec<usize> = (0..=root).rev().collect();
    let mut pos = vec![0usize; nodes.len()];
    let mut at = 0;
    for &n in &order {
        pos[n] = at;
        at += 2 + usize::from(nodes[n].0.mask != u32::MAX);
    }
    let tgt = |c: Child| match c {
        Child::Node(n) => Tgt::At(pos[n]),
        Child::Ret(v) => Tgt::Ret(v),
    };
    let mut code = Vec::with_capacity(at);
    let mut rets = Vec::new();
    for &n in &order {
        let (a, t, f) = nodes[n];
        code.push((stmt(LD_W_ABS, a.off), Tgt::At(0), Tgt::At(0)));
        if a.mask != u32::MAX {
            code.push((stmt(ALU_AND_K, a.mask), Tgt::At(0), Tgt::At(0)));
        }
        code.push((jump(a.code, a.k, 0, 0), tgt(t), tgt(f)));
        for c in [t, f] {
            if let Child::Ret(v) = c
                && !rets.contains(&v)
            {
                rets.push(v);
            }
        }
    }
    let block = Block {
        code,
        ends: vec![(at, rets)],
        default,
    }
    .drop_reloads();
    block.inline().is_some().then_some(block)
}

/// The rules of one syscall one after another, each a chain of its conditions.
fn sequential_block(p: &Profile, rules: &[Entry<'_>], arch: Arch) -> PResult<Block> {
    let mut units: Vec<Unit<'_, '_>> = Vec::new();
    let mut generic = Vec::new();
    for r in rules {
        match r.args.as_ref() {
            [c] if c.op == Op::Eq => {
                let hi = if arch.is_64bit() {
                    (c.value >> 32) as u32
                } else {
                    0
                };
                let item = (c.value as u32, r.action.ret());
                let fits = |items: &[(u32, u32)]| {
                    let new_ret = !items.iter().any(|(_, r)| *r == item.1);
                    let mut rets: Vec<u32> = items.iter().map(|(_, r)| *r).collect();
                    rets.sort_unstable();
                    rets.dedup();
                    items.len() + 1 + rets.len() + usize::from(new_ret) <= EQS_MAX
                };
                let row = units.iter_mut().find(|u| {
                    matches!(u, Unit::Eqs { index, hi: h, items }
                        if *index == c.index && *h == hi && fits(items))
                });
                match row {
                    Some(Unit::Eqs { items, .. }) => items.push(item),
                    _ => units.push(Unit::Eqs {
                        index: c.index,
                        hi,
                        items: vec![item],
                    }),
                }
            }
            _ => generic.push(Unit::Rule(r)),
        }
    }
    units.extend(generic);
    let mut code: Vec<(BpfInsn, Tgt, Tgt)> = Vec::new();
    let mut ends = Vec::with_capacity(units.len());
    let default = Tgt::Ret(p.default_action.ret());
    let count = units.len();
    for (k, unit) in units.into_iter().enumerate() {
        let start = code.len();
        match unit {
            Unit::Eqs { index, hi, items } => {
                let len = if arch.is_64bit() { 2 } else { 0 } + 1 + items.len();
                let fail = if k + 1 == count {
                    default
                } else {
                    Tgt::At(start + len)
                };
                if arch.is_64bit() {
                    code.push((stmt(LD_W_ABS, off_hi(index)), Tgt::At(0), Tgt::At(0)));
                    code.push((jump(JEQ, hi, 0, 0), Tgt::At(start + 2), fail));
                }
                code.push((stmt(LD_W_ABS, off_lo(index)), Tgt::At(0), Tgt::At(0)));
                let n = items.len();
                let mut rets = Vec::new();
                for (i, (lo, ret)) in items.into_iter().enumerate() {
                    let miss = if i + 1 == n {
                        fail
                    } else {
                        Tgt::At(code.len() + 1)
                    };
                    code.push((jump(JEQ, lo, 0, 0), Tgt::Ret(ret), miss));
                    if !rets.contains(&ret) {
                        rets.push(ret);
                    }
                }
                ends.push((code.len(), rets));
            }
            Unit::Rule(r) => {
                let conds: Vec<Cond> = r.args.iter().map(|c| cond_code(c, arch)).collect();
                let body: usize = conds.iter().map(|c| c.code.len()).sum();
                let action = Tgt::Ret(r.action.ret());
                // Each unit after the first starts where the one before fails.
                let fail = if k + 1 == count {
                    default
                } else {
                    Tgt::At(start + body.max(1))
                };
                if body == 0 {
                    // Conditions that always hold (a mask of 0): the rule matches every call.
                    code.push((stmt(JA, 0), action, action));
                    ends.push((code.len(), vec![r.action.ret()]));
                    continue;
                }
                let end = start + body;
                for c in conds {
                    let cstart = code.len();
                    let pass = cstart + c.code.len();
                    for (n, (ins, jt, jf)) in c.code.into_iter().enumerate() {
                        let pc = cstart + n;
                        let target = |t: To| {
                            let at = match t {
                                To::Next => pc + 1,
                                To::Pass => pass,
                                To::Fail => return fail,
                            };
                            if at == end { action } else { Tgt::At(at) }
                        };
                        code.push((ins, target(jt), target(jf)));
                    }
                }
                ends.push((code.len(), vec![r.action.ret()]));
            }
        }
    }
    let block = Block {
        code,
        ends,
        default: p.default_action.ret(),
    }
    .drop_reloads();
    if block.inline().is_none() {
        let i = rules.first().map_or(0, |r| r.origin);
        return Err(ProfileError::new(
            format!("syscalls[{i}].args"),
            "too many conditions for one syscall (a jump would exceed 255 instructions)",
        ));
    }
    Ok(block)
}

/// A run of syscall numbers `start..=end` with one leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u32,
    end: u32,
    leaf: LeafRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafRef {
    Ret(u32),
    /// Index into the blocks.
    Block(usize),
}

/// A search on the syscall number (in A) over every number, ending in leaves.
fn tree(leaves: Vec<(u32, Leaf)>, default: u32, row_tests: usize) -> Vec<BpfInsn> {
    // Contiguous ranges covering 0..=u32::MAX; equal returns merge.
    let mut ranges: Vec<Range> = Vec::with_capacity(2 * leaves.len() + 1);
    let mut blocks = Vec::new();
    let mut push = |start: u32, end: u32, leaf: LeafRef| match ranges.last_mut() {
        Some(r) if matches!(leaf, LeafRef::Ret(_)) && r.leaf == leaf => r.end = end,
        _ => ranges.push(Range { start, end, leaf }),
    };
    let mut next: Option<u32> = Some(0);
    for (nr, leaf) in leaves {
        if let Some(n) = next
            && n < nr
        {
            push(n, nr - 1, LeafRef::Ret(default));
        }
        let leaf = match leaf {
            Leaf::Ret(r) => LeafRef::Ret(r),
            Leaf::Block(b) => {
                blocks.push(b);
                LeafRef::Block(blocks.len() - 1)
            }
        };
        push(nr, nr, leaf);
        next = nr.checked_add(1);
    }
    if let Some(n) = next {
        push(n, u32::MAX, LeafRef::Ret(default));
    }
    let mut out = Vec::new();
    emit(&ranges, &blocks, row_tests, &mut out);
    out
}

/// Subranges this short are also tried as a row of comparisons: shorter programs, while
/// the path a call runs stays about as short as the search's.
const CHAIN_MAX: usize = 16;

/// Comparisons a row of more than [`CHAIN_MAX`] ranges may hold in the search layout.
const CHAIN_TESTS_MAX: usize = 12;

/// Emits the shorter of a binary search and a list of comparisons (where one fits).
fn emit(ranges: &[Range], blocks: &[Block], row_tests: usize, out: &mut Vec<BpfInsn>) {
    if let [r] = ranges {
        match r.leaf {
            LeafRef::Ret(v) => out.push(stmt(RET, v)),
            // Checked to fit when the block was made.
            LeafRef::Block(b) => out.extend(blocks[b].inline().unwrap_or_default()),
        }
        return;
    }
    // Past CHAIN_MAX ranges a row is still fine when it holds few comparisons (a small
    // profile: the rest of the numbers fall through to one return).
    let max_tests = if ranges.len() <= CHAIN_MAX {
        usize::MAX
    } else {
        row_tests
    };
    // The search is laid out in place (no copy of it at every level of the recursion),
    // and gives way to the row where that is shorter.
    let base = out.len();
    emit_tree(ranges, blocks, row_tests, out);
    if let Some(c) = chain(ranges, blocks, max_tests)
        && c.len() < out.len() - base
    {
        out.truncate(base);
        out.extend(c);
    }
}

/// Each node is `jge pivot`: the lower half follows it, the upper half after that; every
/// path ends in a return, so nothing jumps back.
fn emit_tree(ranges: &[Range], blocks: &[Block], row_tests: usize, out: &mut Vec<BpfInsn>) {
    let mid = ranges.len() / 2;
    let node = out.len();
    out.push(jump(JGE, ranges[mid].start, 0, 0));
    let start = out.len();
    emit(&ranges[..mid], blocks, row_tests, out);
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
    emit(&ranges[mid..], blocks, row_tests, out);
}

/// Where a comparison of a chain goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    /// The next comparison (or, after the last, the fall-through return).
    Next,
    /// The one after the next.
    Skip,
    To(LeafRef),
}

/// The ranges as comparisons in a row, then the blocks, then every return once (the most
/// common one where no comparison matches); `None` if a jump would be too long.
fn chain(ranges: &[Range], blocks: &[Block], max_tests: usize) -> Option<Vec<BpfInsn>> {
    let (lo, hi) = (ranges[0].start, ranges[ranges.len() - 1].end);
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for r in ranges {
        if let LeafRef::Ret(v) = r.leaf {
            match counts.iter_mut().find(|(x, _)| *x == v) {
                Some((_, n)) => *n += 1,
                None => counts.push((v, 1)),
            }
        }
    }
    let fall = counts.iter().max_by_key(|(_, n)| *n).map(|(v, _)| *v)?;
    let mut tests: Vec<(BpfInsn, S, S)> = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    let mut rets: Vec<u32> = vec![fall];
    for r in ranges {
        if r.leaf == LeafRef::Ret(fall) {
            continue;
        }
        match r.leaf {
            LeafRef::Block(b) if !used.contains(&b) => used.push(b),
            LeafRef::Ret(v) if !rets.contains(&v) => rets.push(v),
            _ => {}
        }
        let to = S::To(r.leaf);
        match (r.start == lo, r.end == hi) {
            (true, true) => return None,
            _ if r.start == r.end => tests.push((jump(JEQ, r.start, 0, 0), to, S::Next)),
            (true, false) => tests.push((jump(JGT, r.end, 0, 0), S::Next, to)),
            (false, true) => tests.push((jump(JGE, r.start, 0, 0), to, S::Next)),
            (false, false) => {
                tests.push((jump(JGT, r.end, 0, 0), S::Skip, S::Next));
                tests.push((jump(JGE, r.start, 0, 0), to, S::Next));
            }
        }
        // Too many already: no need to look at the rest (a wide range of the search).
        if tests.len() > max_tests {
            return None;
        }
    }
    for &b in &used {
        for v in blocks[b].rets() {
            if !rets.contains(&v) {
                rets.push(v);
            }
        }
    }
    let mut at = tests.len();
    let mut starts = vec![0; blocks.len()];
    for &b in &used {
        starts[b] = at;
        at += blocks[b].code.len();
    }
    let ret_base = at;
    let ret_at = |v: u32| ret_base + rets.iter().position(|r| *r == v).unwrap_or(0);
    let n = tests.len();
    let mut out = Vec::with_capacity(ret_base + rets.len());
    for (pc, &(mut ins, jt, jf)) in tests.iter().enumerate() {
        let target = |s: S| match s {
            S::Next if pc + 1 < n => pc + 1,
            S::Skip if pc + 2 < n => pc + 2,
            S::Next | S::Skip => ret_at(fall),
            S::To(LeafRef::Ret(v)) => ret_at(v),
            S::To(LeafRef::Block(b)) => starts[b],
        };
        ins.jt = u8::try_from(target(jt) - pc - 1).ok()?;
        ins.jf = u8::try_from(target(jf) - pc - 1).ok()?;
        out.push(ins);
    }
    for &b in &used {
        blocks[b].place(starts[b], &ret_at, &mut out)?;
    }
    out.extend(rets.iter().map(|&v| stmt(RET, v)));
    Some(out)
}
