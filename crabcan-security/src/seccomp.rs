//! Installing a compiled seccomp program on the calling thread.
//!
//! The program itself comes from [`crate::profile::compile`]; this module hands it to the
//! kernel with the profile's flags, and refuses to pretend a filter went in when it did not.

use crate::profile::{Compiled, Flag};
use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;

/// One classic BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u16,
    /// Forward offset taken when a conditional jump is true.
    pub jt: u8,
    /// Forward offset taken when a conditional jump is false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

const _: () = assert!(std::mem::size_of::<BpfInsn>() == std::mem::size_of::<libc::sock_filter>());
const _: () = assert!(std::mem::align_of::<BpfInsn>() == std::mem::align_of::<libc::sock_filter>());

/// The ways the kernel takes a filter program. [`install`] uses the real system calls;
/// tests substitute their own to drive every branch.
pub trait FilterCalls {
    /// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
    fn seccomp(&mut self, prog: &libc::sock_fprog, flags: u32) -> std::result::Result<(), Errno>;
    /// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)`, for kernels before 3.17.
    fn prctl(&mut self, prog: &libc::sock_fprog) -> std::result::Result<(), Errno>;
    /// Whether the kernel knows a filter flag: with a null program it answers EFAULT for
    /// a known flag and EINVAL for an unknown one, and installs nothing.
    fn knows_flag(&mut self, flag: u32) -> bool;
}

/// The real system calls, acting on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelCalls;

fn seccomp_filter(flags: u32, prog: *const libc::sock_fprog) -> libc::c_long {
    // SAFETY: prog is null or points at a sock_fprog whose instructions outlive the call;
    // the kernel copies the program before returning and never writes through it.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            prog,
        )
    }
}

impl FilterCalls for KernelCalls {
    fn seccomp(&mut self, prog: &libc::sock_fprog, flags: u32) -> std::result::Result<(), Errno> {
        match seccomp_filter(flags, prog) {
            0 => Ok(()),
            // With TSYNC, a positive answer is the id of a thread that could not take the
            // filter: nothing was installed anywhere.
            r if r > 0 => Err(Errno::ESRCH),
            _ => Err(Errno::last()),
        }
    }

    fn prctl(&mut self, prog: &libc::sock_fprog) -> std::result::Result<(), Errno> {
        // SAFETY: as above.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                prog as *const libc::sock_fprog,
            )
        };
        Errno::result(r).map(drop)
    }

    fn knows_flag(&mut self, flag: u32) -> bool {
        seccomp_filter(flag, std::ptr::null()) == -1 && Errno::last() == Errno::EFAULT
    }
}

/// Installs `prog` on the calling thread: with no_new_privs set, or while holding
/// CAP_SYS_ADMIN.
pub fn install(prog: &Compiled) -> Result<()> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Errcode::setup(
            "cannot install the seccomp filter: profiles are compiled for x86 only",
        ));
    }
    install_with(prog, &mut KernelCalls)
}

/// [`install`] through the given system calls. The profile's flags go to seccomp(2); LOG
/// and SPEC_ALLOW are left out where the kernel does not know them (they change logging
/// and a mitigation, not what the filter decides), TSYNC never is. prctl is tried only
/// when the kernel has no seccomp(2) (ENOSYS) and no flag is asked for. Every other
/// failure is an error: a filter that did not go in must never look as if it did.
pub fn install_with(prog: &Compiled, calls: &mut impl FilterCalls) -> Result<()> {
    let insns = &prog.instructions;
    let len = u16::try_from(insns.len()).map_err(|_| {
        Errcode::setup(format!(
            "cannot install the seccomp filter: {} instructions, more than a program can hold",
            insns.len()
        ))
    })?;
    let mut flags = 0;
    for f in &prog.flags {
        if *f == Flag::Tsync || calls.knows_flag(f.bits()) {
            flags |= f.bits();
        }
    }
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; BpfInsn has sock_filter's layout.
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    match calls.seccomp(&fprog, flags) {
        Ok(()) => Ok(()),
        Err(Errno::ENOSYS) if flags == 0 => calls
            .prctl(&fprog)
            .map_err(|e| Errcode::sys("install the seccomp filter (prctl)", e)),
        Err(e) => Err(Errcode::sys("install the seccomp filter", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ret ALLOW`, written out.
    const ALLOW: BpfInsn = BpfInsn {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    };

    fn program(flags: &[Flag]) -> Compiled {
        Compiled {
            instructions: vec![ALLOW; 3],
            flags: flags.to_vec(),
        }
    }

    /// Scripted stand-ins for seccomp(2) and prctl(2) that record what they were given.
    struct FakeCalls {
        seccomp: std::result::Result<(), Errno>,
        prctl: std::result::Result<(), Errno>,
        known_flags: u32,
        seen: Vec<(&'static str, u16, usize)>,
        flags: Vec<u32>,
    }

    impl FakeCalls {
        fn new(
            seccomp: std::result::Result<(), Errno>,
            prctl: std::result::Result<(), Errno>,
        ) -> Self {
            FakeCalls {
                seccomp,
                prctl,
                known_flags: 0,
                seen: Vec::new(),
                flags: Vec::new(),
            }
        }
    }

    impl FilterCalls for FakeCalls {
        fn seccomp(&mut self, p: &libc::sock_fprog, flags: u32) -> std::result::Result<(), Errno> {
            self.seen.push(("seccomp", p.len, p.filter as usize));
            self.flags.push(flags);
            self.seccomp
        }
        fn knows_flag(&mut self, flag: u32) -> bool {
            self.known_flags & flag != 0
        }
        fn prctl(&mut self, p: &libc::sock_fprog) -> std::result::Result<(), Errno> {
            self.seen.push(("prctl", p.len, p.filter as usize));
            self.prctl
        }
    }

    #[test]
    fn install_hands_the_whole_program_to_seccomp() {
        let p = program(&[]);
        let mut f = FakeCalls::new(Ok(()), Err(Errno::EINVAL));
        install_with(&p, &mut f).unwrap();
        let ptr = p.instructions.as_ptr() as usize;
        let len = u16::try_from(p.instructions.len()).unwrap();
        assert_eq!(f.seen, [("seccomp", len, ptr)], "prctl must not be tried");
    }

    #[test]
    fn install_fails_when_seccomp_refuses() {
        let p = program(&[]);
        for e in [Errno::EINVAL, Errno::EACCES, Errno::EFAULT, Errno::ENOMEM] {
            let mut f = FakeCalls::new(Err(e), Ok(()));
            let err = install_with(&p, &mut f).unwrap_err();
            assert_eq!(err.errno(), Some(e));
            assert_eq!(
                err.to_string(),
                format!("cannot install the seccomp filter: {}", e.desc())
            );
            assert_eq!(f.seen.len(), 1, "{e}: no fallback after a real refusal");
        }
    }

    #[test]
    fn install_falls_back_to_prctl_on_enosys() {
        let p = program(&[]);
        let ptr = p.instructions.as_ptr() as usize;
        let len = u16::try_from(p.instructions.len()).unwrap();
        let mut f = FakeCalls::new(Err(Errno::ENOSYS), Ok(()));
        install_with(&p, &mut f).unwrap();
        assert_eq!(f.seen, [("seccomp", len, ptr), ("prctl", len, ptr)]);
    }

    #[test]
    fn install_fails_when_the_fallback_fails() {
        let p = program(&[]);
        for e in [Errno::EINVAL, Errno::EACCES, Errno::ENOSYS] {
            let mut f = FakeCalls::new(Err(Errno::ENOSYS), Err(e));
            let err = install_with(&p, &mut f).unwrap_err();
            assert_eq!(err.errno(), Some(e));
            assert!(err.to_string().contains("(prctl)"), "{err}");
            assert_eq!(f.seen.len(), 2);
        }
    }

    #[test]
    fn install_refuses_a_program_too_long_to_pass() {
        let p = Compiled {
            instructions: vec![ALLOW; 65_536],
            flags: Vec::new(),
        };
        let mut f = FakeCalls::new(Ok(()), Ok(()));
        let err = install_with(&p, &mut f).unwrap_err();
        assert!(err.to_string().contains("65536 instructions"), "{err}");
        assert!(f.seen.is_empty());
        let p = Compiled {
            instructions: vec![ALLOW; 65_535],
            flags: Vec::new(),
        };
        install_with(&p, &mut f).unwrap();
        assert_eq!(f.seen.len(), 1);
        assert_eq!(f.seen[0].1, 65_535);
    }

    #[test]
    fn flags_go_to_seccomp_where_the_kernel_knows_them() {
        let p = program(&[Flag::Tsync, Flag::Log, Flag::SpecAllow]);
        let mut f = FakeCalls::new(Ok(()), Ok(()));
        f.known_flags = 4;
        install_with(&p, &mut f).unwrap();
        // TSYNC (1) always, SPEC_ALLOW (4) known, LOG (2) unknown to this kernel.
        assert_eq!(f.flags, [1 | 4]);
        let mut f = FakeCalls::new(Ok(()), Ok(()));
        f.known_flags = 7;
        install_with(&program(&[Flag::Log]), &mut f).unwrap();
        assert_eq!(f.flags, [2]);
    }

    #[test]
    fn no_prctl_fallback_with_flags() {
        let mut f = FakeCalls::new(Err(Errno::ENOSYS), Ok(()));
        let err = install_with(&program(&[Flag::Tsync]), &mut f).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOSYS));
        assert_eq!(f.seen.len(), 1, "prctl cannot take TSYNC");
    }

    #[test]
    fn the_kernel_knows_the_flags_it_has_had_for_years() {
        // TSYNC (3.17), LOG (4.14), SPEC_ALLOW (4.17); 1 << 20 is no flag. The probe
        // installs nothing (a null program).
        let mut k = KernelCalls;
        assert!(k.knows_flag(1) && k.knows_flag(2) && k.knows_flag(4));
        assert!(!k.knows_flag(1 << 20));
    }
}
