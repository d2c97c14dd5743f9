//! A classic BPF interpreter with the kernel seccomp checker's rules, for tests and
//! diagnostics: runs a program on one `seccomp_data` and returns the filter's verdict.

use crate::seccomp::BpfInsn;

/// `BPF_LD | BPF_W | BPF_ABS`.
pub const LD_W_ABS: u16 = 0x20;
/// `BPF_LD | BPF_IMM`.
pub const LD_IMM: u16 = 0x00;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JEQ: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub const JGT: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub const JGE: u16 = 0x35;
/// `BPF_JMP | BPF_JSET | BPF_K`.
pub const JSET: u16 = 0x45;
/// `BPF_RET | BPF_K`.
pub const RET: u16 = 0x06;
/// `BPF_RET | BPF_A`.
pub const RET_A: u16 = 0x16;

/// The kernel's limit on a filter's length.
pub const MAX_INSNS: usize = 4096;

/// The input of a seccomp filter (`struct seccomp_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompData {
    /// Syscall number (x32 calls carry the x32 bit).
    pub nr: u32,
    /// `AUDIT_ARCH_*` of the calling ABI.
    pub arch: u32,
    /// Instruction pointer.
    pub ip: u64,
    /// The six arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.ip.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

/// Checks what the kernel checks at load time: length, known opcodes, aligned in-bounds
/// loads, forward jumps inside the program, a return at the end.
pub fn validate(prog: &[BpfInsn]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!("length {} not in 1..={MAX_INSNS}", prog.len()));
    }
    for (pc, i) in prog.iter().enumerate() {
        let targets: Vec<usize> = match i.code {
            LD_W_ABS => {
                if i.k % 4 != 0 || i.k >= 64 {
                    return Err(format!("bad load offset {} at {pc}", i.k));
                }
                vec![pc + 1]
            }
            LD_IMM | ALU_AND_K => vec![pc + 1],
            JA => vec![pc + 1 + i.k as usize],
            JEQ | JGT | JGE | JSET => vec![pc + 1 + usize::from(i.jt), pc + 1 + usize::from(i.jf)],
            RET | RET_A => vec![],
            other => return Err(format!("opcode {other:#x} at {pc}")),
        };
        if let Some(t) = targets.iter().find(|&&t| t >= prog.len()) {
            return Err(format!("jump from {pc} to {t} out of bounds"));
        }
    }
    Ok(())
}

/// Runs `prog` on `d`; an error for anything the kernel would refuse or could not run.
pub fn run(prog: &[BpfInsn], d: &SeccompData) -> Result<u32, String> {
    run_counted(prog, d).map(|(v, _)| v)
}

/// Runs `prog` on `d` and also counts the instructions executed.
pub fn run_counted(prog: &[BpfInsn], d: &SeccompData) -> Result<(u32, usize), String> {
    let mem = d.bytes();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    // Jumps only go forward, so a program runs at most its length in steps.
    for steps in 1..=prog.len() + 1 {
        let ins = prog
            .get(pc)
            .ok_or_else(|| format!("pc {pc} out of bounds ({} insns)", prog.len()))?;
        let cond = |c: bool| pc + 1 + usize::from(if c { ins.jt } else { ins.jf });
        pc = match ins.code {
            LD_W_ABS => {
                let k = ins.k as usize;
                if k % 4 != 0 || k + 4 > mem.len() {
                    return Err(format!("bad load offset {k} at {pc}"));
                }
                a = u32::from_le_bytes([mem[k], mem[k + 1], mem[k + 2], mem[k + 3]]);
                pc + 1
            }
            LD_IMM => {
                a = ins.k;
                pc + 1
            }
            ALU_AND_K => {
                a &= ins.k;
                pc + 1
            }
            JA => pc + 1 + ins.k as usize,
            JEQ => cond(a == ins.k),
            JGT => cond(a > ins.k),
            JGE => cond(a >= ins.k),
            JSET => cond(a & ins.k != 0),
            RET => return Ok((ins.k, steps)),
            RET_A => return Ok((a, steps)),
            other => return Err(format!("unknown opcode {other:#x} at {pc}")),
        };
    }
    Err("program does not terminate".into())
}

/// Reads a program in the kernel's binary layout (8 bytes per instruction, little-endian).
pub fn from_bytes(b: &[u8]) -> Result<Vec<BpfInsn>, String> {
    if b.len() % 8 != 0 {
        return Err(format!(
            "{} bytes is not a whole number of instructions",
            b.len()
        ));
    }
    Ok(b.chunks_exact(8)
        .map(|c| BpfInsn {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}
