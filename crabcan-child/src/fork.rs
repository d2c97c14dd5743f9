//! `clone3` used like `fork`, with `CLONE_INTO_CGROUP`: the child starts in a cgroup v2
//! directory instead of being moved there afterwards, which would take the kernel's global
//! cgroup threadgroup lock and wait for an RCU grace period (see
//! [`crabcan_cgroups::Entry`]).

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `CLONE_INTO_CGROUP` (linux/sched.h, Linux 5.7); the libc crate declares it for glibc
/// only.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Which side of the clone this is.
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller, with the new process's pid.
    Parent(Pid),
}

/// Whether an error of [`fork_into_cgroup`] means the kernel lacks `clone3` or
/// `CLONE_INTO_CGROUP` (older than 5.3 or 5.7), so the classic way must be taken.
pub(crate) fn unsupported(e: Errno) -> bool {
    matches!(e, Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL)
}

/// Clones the calling process like `fork` (the child returns here, on a copy of the
/// caller's stack), into the namespaces `flags` creates and the cgroup v2 directory
/// `cgroup`; SIGCHLD at its death.
///
/// # Safety
/// The caller must be single-threaded, as for `fork`. Unlike the C library's `fork` this
/// runs no at-fork handlers and leaves the C library's record of the thread id as the
/// parent's: the child must not rely on it (musl's `raise`, and so `abort`, signal that
/// thread id) and must end in `execve` or `_exit`.
pub(crate) unsafe fn fork_into_cgroup(
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> Result<Forked, Errno> {
    let args = libc::clone_args {
        flags: flags.bits() as u32 as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        // No stack of its own: it goes on with a copy of the caller's, as after fork.
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: `args` is a complete clone_args that lives through the call and its size is
    // passed; without CLONE_VM or a new stack the child gets its own copy of the caller's
    // memory and returns from this call like a forked child; the caller is single-threaded
    // (documented), so no lock of another thread is copied held.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match r {
        0 => {
            exit_on_panic();
            Ok(Forked::Child)
        }
        pid if pid > 0 => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
        _ => Err(Errno::last()),
    }
}

/// In a child made by a raw clone, a panic must end that process at once: unwinding would
/// run the caller's destructors in the copy (tearing down what the parent still owns), and
/// `abort` signals the thread id the C library recorded, which is the parent's.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("crabcan: internal error in the container's process: {info}");
        // SAFETY: _exit ends this process without unwinding or running handlers.
        unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) }
    }));
}

/// Starts a container's process with the namespaces `flags`: cloned straight into the
/// cgroup v2 directory `v2` where one is given and the kernel can, otherwise with a plain
/// clone (on a stack of its own). The new process runs `child(in_v2)`; the caller gets its
/// pid, or the clone's error as `clone_error` words it.
///
/// # Safety
/// The caller must be single-threaded, and `child` must end in `execve` or `_exit` (see
/// [`fork_into_cgroup`]).
pub(crate) unsafe fn start_child(
    flags: CloneFlags,
    v2: Option<BorrowedFd<'_>>,
    child: &dyn Fn(bool) -> isize,
    clone_error: impl Fn(Errno) -> crabcan_errors::Errcode,
) -> crabcan_errors::Result<Pid> {
    if let Some(dir) = v2 {
        // SAFETY: the caller's contract is this function's.
        match unsafe { fork_into_cgroup(flags, dir) } {
            Ok(Forked::Child) => {
                child(true);
                // SAFETY: `child` never returns (the contract); should it, nothing of the
                // caller's may run in this copy of it.
                unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) }
            }
            Ok(Forked::Parent(pid)) => return Ok(pid),
            Err(e) if unsupported(e) => {}
            // The namespaces or the cgroup directory (removed, or refusing this process).
            Err(e) => {
                return Err(clone_error(e).context(
                    "starting the container's process in its cgroup v2 directory (clone3)",
                ));
            }
        }
    }
    let mut stack = Stack::new()?;
    let cb = Box::new(|| {
        exit_on_panic();
        child(false)
    });
    // SAFETY: the caller is single-threaded (the contract), the stack is ours and outlives
    // the call (no CLONE_VM: the child gets its own copy of memory), and the child only
    // runs `child`, which ends in exec or _exit.
    unsafe {
        nix::sched::clone(
            cb,
            stack.as_mut_slice(),
            flags,
            Some(nix::sys::signal::Signal::SIGCHLD as i32),
        )
    }
    .map_err(clone_error)
}

/// Starts a process that runs `child` in the caller's memory, as `posix_spawn` does
/// (`CLONE_VM | CLONE_VFORK`): no copy of the page tables and no copy-on-write faults; the
/// caller waits until the process has exec'd or _exited. Everything else the process
/// changes (ids, capabilities, seccomp, limits, descriptors, signal mask and handlers) is
/// its own task's. SIGCHLD at its death.
///
/// What the process leaves in the shared memory stays: so the caller must not rely on
/// anything the process may have been killed in the middle of. The closure is never freed
/// here and the caller must make no allocation afterwards that could wait for the
/// allocator's lock (a process killed inside an allocation, by a seccomp filter or a
/// signal, holds it forever). And the C library's record of the thread id is the caller's:
/// an `abort` in the process signals the caller.
///
/// # Safety
/// The caller must be single-threaded, and `child` must end in `execve` or `_exit`.
pub(crate) unsafe fn spawn_sharing_memory(child: &dyn Fn()) -> Result<Pid, Errno> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the leaked box made below, alive for the whole process.
        let child = unsafe { &*(arg as *const &dyn Fn()) };
        child();
        // SAFETY: `child` never returns (the contract); should it, nothing else may run.
        unsafe { libc::_exit(crabcan_errors::EXIT_CRABCAN) }
    }
    let mut stack = Stack::new().map_err(|e| e.errno().unwrap_or(Errno::ENOMEM))?;
    // Leaked: freeing it after the clone would take the allocator's lock (see above).
    let arg: *mut &dyn Fn() = Box::into_raw(Box::new(child));
    let slice = stack.as_mut_slice();
    // The top of the stack, 16-byte aligned as the ABI wants at a call.
    // SAFETY: one past the end of the mapping, which the stack grows down from.
    let top = unsafe { slice.as_mut_ptr().add(slice.len()) } as usize & !15;
    // SAFETY: the caller is single-threaded and waits (CLONE_VFORK) until the process has
    // exec'd or _exited, so the stack and `arg` outlive its use of them; the trampoline
    // only calls `child`, which never returns.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg.cast(),
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(Errno::last());
    }
    Ok(Pid::from_raw(pid))
}

/// The guard page below a child's stack.
const GUARD: usize = 4096;

/// A stack for a child cloned with a function of its own: mapped, not allocated, so that
/// only the pages the child touches become resident (an allocator that clears memory would
/// write all of it: crabcan's allocator for musl builds does).
pub(crate) struct Stack {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl Stack {
    /// Maps [`crate::CHILD_STACK`] bytes of zero pages, above a page that faults: a stack
    /// that overflows ends the process instead of writing below it (into memory it may
    /// share with its parent).
    pub(crate) fn new() -> crabcan_errors::Result<Stack> {
        let len = crate::CHILD_STACK + GUARD;
        // SAFETY: an anonymous private mapping at an address the kernel picks; nothing else
        // refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(ptr) {
            Some(ptr) if ptr.as_ptr() != libc::MAP_FAILED => {
                let stack = Stack { ptr, len };
                // SAFETY: the first page of the mapping made above, ours.
                if unsafe { libc::mprotect(ptr.as_ptr(), GUARD, libc::PROT_NONE) } != 0 {
                    return Err(crabcan_errors::Errcode::sys(
                        "protect the child's stack guard page (mprotect)",
                        Errno::last(),
                    ));
                }
                Ok(stack)
            }
            _ => Err(crabcan_errors::Errcode::sys(
                "map a stack for the child (mmap)",
                Errno::last(),
            )),
        }
    }

    /// The stack as the bytes `clone` takes (above the guard page).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the `len - GUARD` bytes above the guard page, mapped readable and writable
        // by `new`, zero-filled by the kernel (so initialised), and owned by this value
        // until it is dropped.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().cast::<u8>().add(GUARD),
                self.len - GUARD,
            )
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, not used after this.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}
