//! The seccomp filter: an x86_64 allow list compiled to classic BPF by hand.
//!
//! Layout of the program (the common path is four instructions plus a binary search of
//! about eight comparisons over sorted ranges of syscall numbers):
//!
//! ```text
//!   load arch; arch != x86_64            -> KILL_PROCESS (also stops 32-bit int 0x80 calls)
//!   load nr;   nr > highest known number -> x32 bit set ? EPERM : ENOSYS
//!   binary search on nr over ranges with one action each:
//!     ALLOW | ERRNO(EPERM) | ERRNO(ENOSYS) | an inline argument check ending in a return
//! ```

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

/// `BPF_LD | BPF_W | BPF_ABS`: A = 32-bit word at offset k of `seccomp_data`.
pub const LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JA`: pc += k.
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

/// Filter verdict: run the syscall.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// Filter verdict: kill the whole process.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// Filter verdict base: fail the syscall with the errno in the low 16 bits.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `RET_ERRNO | EPERM`: the verdict for refused syscalls.
pub const RET_EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
/// `RET_ERRNO | ENOSYS`: the verdict for syscalls the filter does not know.
pub const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// `AUDIT_ARCH_X86_64`: the `arch` field of `seccomp_data` for native 64-bit calls.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// The bit that marks an x32-ABI syscall number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data` (nr, arch, ip, args[6]); args are little-endian u64.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(i: u8) -> u32 {
    16 + 8 * i as u32
}

/// Namespace flags of clone(2); creating namespaces is the container runtime's job.
pub const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;
/// Namespace flags of unshare(2): the clone ones plus the time namespace, which only
/// unshare and clone3 can ask for (in clone its bit is part of the exit signal).
pub const UNSHARE_NS_FLAGS: u32 = CLONE_NS_FLAGS | 0x80;
/// Injects input into a terminal another process reads: the classic container escape.
pub const TIOCSTI: u32 = 0x5412;
/// Console multiplexer: can also inject input (selection paste) on virtual consoles.
pub const TIOCLINUX: u32 = 0x541c;
/// `S_ISUID | S_ISGID`.
pub const SETID_MODE_BITS: u32 = 0o6000;
/// `personality` values a program may set (or query with 0xffffffff).
pub const ALLOWED_PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// A check on a syscall's arguments; each compiles to a few instructions ending in a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRule {
    /// `clone`: EPERM when the flags (arg 0, low 32 bits as the kernel reads them) ask for a namespace.
    CloneFlags,
    /// `unshare`: EPERM when the flags ask for a namespace.
    UnshareFlags,
    /// `ioctl`: EPERM for TIOCSTI and TIOCLINUX; the request is an `unsigned int` in the
    /// kernel, so only the low 32 bits of arg 1 are compared.
    Ioctl,
    /// `chmod`-like: EPERM when the mode in the given argument has S_ISUID or S_ISGID.
    NoSetidMode(u8),
    /// `personality`: only the values in [`ALLOWED_PERSONALITIES`].
    Personality,
}

/// What the filter does with one syscall number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run it.
    Allow,
    /// Fail with EPERM.
    Deny,
    /// Fail with ENOSYS, as a kernel without it would (unassigned, retired, or `clone3`,
    /// whose flags live in memory a filter cannot read, so libc falls back to `clone`).
    NoSys,
    /// Decide on the arguments.
    Check(ArgRule),
}

use Action::{Allow, Check, Deny, NoSys};

/// The x86_64 syscall table with the action for each: (number, name, action).
///
/// Numbers not listed (the gap 336..=423) are unassigned and get ENOSYS.
pub const X86_64_SYSCALLS: &[(u32, &str, Action)] = &[
    (0, "read", Allow),
    (1, "write", Allow),
    (2, "open", Allow),
    (3, "close", Allow),
    (4, "stat", Allow),
    (5, "fstat", Allow),
    (6, "lstat", Allow),
    (7, "poll", Allow),
    (8, "lseek", Allow),
    (9, "mmap", Allow),
    (10, "mprotect", Allow),
    (11, "munmap", Allow),
    (12, "brk", Allow),
    (13, "rt_sigaction", Allow),
    (14, "rt_sigprocmask", Allow),
    (15, "rt_sigreturn", Allow),
    (16, "ioctl", Check(ArgRule::Ioctl)),
    (17, "pread64", Allow),
    (18, "pwrite64", Allow),
    (19, "readv", Allow),
    (20, "writev", Allow),
    (21, "access", Allow),
    (22, "pipe", Allow),
    (23, "select", Allow),
    (24, "sched_yield", Allow),
    (25, "mremap", Allow),
    (26, "msync", Allow),
    (27, "mincore", Allow),
    (28, "madvise", Allow),
    (29, "shmget", Allow),
    (30, "shmat", Allow),
    (31, "shmctl", Allow),
    (32, "dup", Allow),
    (33, "dup2", Allow),
    (34, "pause", Allow),
    (35, "nanosleep", Allow),
    (36, "getitimer", Allow),
    (37, "alarm", Allow),
    (38, "setitimer", Allow),
    (39, "getpid", Allow),
    (40, "sendfile", Allow),
    (41, "socket", Allow),
    (42, "connect", Allow),
    (43, "accept", Allow),
    (44, "sendto", Allow),
    (45, "recvfrom", Allow),
    (46, "sendmsg", Allow),
    (47, "recvmsg", Allow),
    (48, "shutdown", Allow),
    (49, "bind", Allow),
    (50, "listen", Allow),
    (51, "getsockname", Allow),
    (52, "getpeername", Allow),
    (53, "socketpair", Allow),
    (54, "setsockopt", Allow),
    (55, "getsockopt", Allow),
    (56, "clone", Check(ArgRule::CloneFlags)),
    (57, "fork", Allow),
    (58, "vfork", Allow),
    (59, "execve", Allow),
    (60, "exit", Allow),
    (61, "wait4", Allow),
    (62, "kill", Allow),
    (63, "uname", Allow),
    (64, "semget", Allow),
    (65, "semop", Allow),
    (66, "semctl", Allow),
    (67, "shmdt", Allow),
    (68, "msgget", Allow),
    (69, "msgsnd", Allow),
    (70, "msgrcv", Allow),
    (71, "msgctl", Allow),
    (72, "fcntl", Allow),
    (73, "flock", Allow),
    (74, "fsync", Allow),
    (75, "fdatasync", Allow),
    (76, "truncate", Allow),
    (77, "ftruncate", Allow),
    (78, "getdents", Allow),
    (79, "getcwd", Allow),
    (80, "chdir", Allow),
    (81, "fchdir", Allow),
    (82, "rename", Allow),
    (83, "mkdir", Allow),
    (84, "rmdir", Allow),
    (85, "creat", Allow),
    (86, "link", Allow),
    (87, "unlink", Allow),
    (88, "symlink", Allow),
    (89, "readlink", Allow),
    (90, "chmod", Check(ArgRule::NoSetidMode(1))),
    (91, "fchmod", Check(ArgRule::NoSetidMode(1))),
    (92, "chown", Allow),
    (93, "fchown", Allow),
    (94, "lchown", Allow),
    (95, "umask", Allow),
    (96, "gettimeofday", Allow),
    (97, "getrlimit", Allow),
    (98, "getrusage", Allow),
    (99, "sysinfo", Allow),
    (100, "times", Allow),
    (101, "ptrace", Deny),
    (102, "getuid", Allow),
    (103, "syslog", Deny),
    (104, "getgid", Allow),
    (105, "setuid", Allow),
    (106, "setgid", Allow),
    (107, "geteuid", Allow),
    (108, "getegid", Allow),
    (109, "setpgid", Allow),
    (110, "getppid", Allow),
    (111, "getpgrp", Allow),
    (112, "setsid", Allow),
    (113, "setreuid", Allow),
    (114, "setregid", Allow),
    (115, "getgroups", Allow),
    (116, "setgroups", Allow),
    (117, "setresuid", Allow),
    (118, "getresuid", Allow),
    (119, "setresgid", Allow),
    (120, "getresgid", Allow),
    (121, "getpgid", Allow),
    (122, "setfsuid", Allow),
    (123, "setfsgid", Allow),
    (124, "getsid", Allow),
    (125, "capget", Allow),
    (126, "capset", Allow),
    (127, "rt_sigpending", Allow),
    (128, "rt_sigtimedwait", Allow),
    (129, "rt_sigqueueinfo", Allow),
    (130, "rt_sigsuspend", Allow),
    (131, "sigaltstack", Allow),
    (132, "utime", Allow),
    (133, "mknod", Allow),
    (134, "uselib", Deny),
    (135, "personality", Check(ArgRule::Personality)),
    (136, "ustat", Deny),
    (137, "statfs", Allow),
    (138, "fstatfs", Allow),
    (139, "sysfs", Deny),
    (140, "getpriority", Allow),
    (141, "setpriority", Allow),
    (142, "sched_setparam", Allow),
    (143, "sched_getparam", Allow),
    (144, "sched_setscheduler", Allow),
    (145, "sched_getscheduler", Allow),
    (146, "sched_get_priority_max", Allow),
    (147, "sched_get_priority_min", Allow),
    (148, "sched_rr_get_interval", Allow),
    (149, "mlock", Allow),
    (150, "munlock", Allow),
    (151, "mlockall", Allow),
    (152, "munlockall", Allow),
    (153, "vhangup", Deny),
    (154, "modify_ldt", Deny),
    (155, "pivot_root", Deny),
    (156, "_sysctl", Deny),
    (157, "prctl", Allow),
    (158, "arch_prctl", Allow),
    (159, "adjtimex", Deny),
    (160, "setrlimit", Allow),
    (161, "chroot", Allow),
    (162, "sync", Allow),
    (163, "acct", Deny),
    (164, "settimeofday", Deny),
    (165, "mount", Deny),
    (166, "umount2", Deny),
    (167, "swapon", Deny),
    (168, "swapoff", Deny),
    (169, "reboot", Deny),
    (170, "sethostname", Allow),
    (171, "setdomainname", Allow),
    (172, "iopl", Deny),
    (173, "ioperm", Deny),
    (174, "create_module", NoSys),
    (175, "init_module", Deny),
    (176, "delete_module", Deny),
    (177, "get_kernel_syms", NoSys),
    (178, "query_module", NoSys),
    (179, "quotactl", Deny),
    (180, "nfsservctl", NoSys),
    (181, "getpmsg", NoSys),
    (182, "putpmsg", NoSys),
    (183, "afs_syscall", NoSys),
    (184, "tuxcall", NoSys),
    (185, "security", NoSys),
    (186, "gettid", Allow),
    (187, "readahead", Allow),
    (188, "setxattr", Allow),
    (189, "lsetxattr", Allow),
    (190, "fsetxattr", Allow),
    (191, "getxattr", Allow),
    (192, "lgetxattr", Allow),
    (193, "fgetxattr", Allow),
    (194, "listxattr", Allow),
    (195, "llistxattr", Allow),
    (196, "flistxattr", Allow),
    (197, "removexattr", Allow),
    (198, "lremovexattr", Allow),
    (199, "fremovexattr", Allow),
    (200, "tkill", Allow),
    (201, "time", Allow),
    (202, "futex", Allow),
    (203, "sched_setaffinity", Allow),
    (204, "sched_getaffinity", Allow),
    (205, "set_thread_area", Allow),
    (206, "io_setup", Allow),
    (207, "io_destroy", Allow),
    (208, "io_getevents", Allow),
    (209, "io_submit", Allow),
    (210, "io_cancel", Allow),
    (211, "get_thread_area", Allow),
    (212, "lookup_dcookie", Deny),
    (213, "epoll_create", Allow),
    (214, "epoll_ctl_old", NoSys),
    (215, "epoll_wait_old", NoSys),
    (216, "remap_file_pages", Allow),
    (217, "getdents64", Allow),
    (218, "set_tid_address", Allow),
    (219, "restart_syscall", Allow),
    (220, "semtimedop", Allow),
    (221, "fadvise64", Allow),
    (222, "timer_create", Allow),
    (223, "timer_settime", Allow),
    (224, "timer_gettime", Allow),
    (225, "timer_getoverrun", Allow),
    (226, "timer_delete", Allow),
    (227, "clock_settime", Deny),
    (228, "clock_gettime", Allow),
    (229, "clock_getres", Allow),
    (230, "clock_nanosleep", Allow),
    (231, "exit_group", Allow),
    (232, "epoll_wait", Allow),
    (233, "epoll_ctl", Allow),
    (234, "tgkill", Allow),
    (235, "utimes", Allow),
    (236, "vserver", NoSys),
    (237, "mbind", Allow),
    (238, "set_mempolicy", Allow),
    (239, "get_mempolicy", Allow),
    (240, "mq_open", Allow),
    (241, "mq_unlink", Allow),
    (242, "mq_timedsend", Allow),
    (243, "mq_timedreceive", Allow),
    (244, "mq_notify", Allow),
    (245, "mq_getsetattr", Allow),
    (246, "kexec_load", Deny),
    (247, "waitid", Allow),
    (248, "add_key", Deny),
    (249, "request_key", Deny),
    (250, "keyctl", Deny),
    (251, "ioprio_set", Allow),
    (252, "ioprio_get", Allow),
    (253, "inotify_init", Allow),
    (254, "inotify_add_watch", Allow),
    (255, "inotify_rm_watch", Allow),
    (256, "migrate_pages", Deny),
    (257, "openat", Allow),
    (258, "mkdirat", Allow),
    (259, "mknodat", Allow),
    (260, "fchownat", Allow),
    (261, "futimesat", Allow),
    (262, "newfstatat", Allow),
    (263, "unlinkat", Allow),
    (264, "renameat", Allow),
    (265, "linkat", Allow),
    (266, "symlinkat", Allow),
    (267, "readlinkat", Allow),
    (268, "fchmodat", Check(ArgRule::NoSetidMode(2))),
    (269, "faccessat", Allow),
    (270, "pselect6", Allow),
    (271, "ppoll", Allow),
    (272, "unshare", Check(ArgRule::UnshareFlags)),
    (273, "set_robust_list", Allow),
    (274, "get_robust_list", Allow),
    (275, "splice", Allow),
    (276, "tee", Allow),
    (277, "sync_file_range", Allow),
    (278, "vmsplice", Allow),
    (279, "move_pages", Deny),
    (280, "utimensat", Allow),
    (281, "epoll_pwait", Allow),
    (282, "signalfd", Allow),
    (283, "timerfd_create", Allow),
    (284, "eventfd", Allow),
    (285, "fallocate", Allow),
    (286, "timerfd_settime", Allow),
    (287, "timerfd_gettime", Allow),
    (288, "accept4", Allow),
    (289, "signalfd4", Allow),
    (290, "eventfd2", Allow),
    (291, "epoll_create1", Allow),
    (292, "dup3", Allow),
    (293, "pipe2", Allow),
    (294, "inotify_init1", Allow),
    (295, "preadv", Allow),
    (296, "pwritev", Allow),
    (297, "rt_tgsigqueueinfo", Allow),
    (298, "perf_event_open", Deny),
    (299, "recvmmsg", Allow),
    (300, "fanotify_init", Deny),
    (301, "fanotify_mark", Allow),
    (302, "prlimit64", Allow),
    (303, "name_to_handle_at", Deny),
    (304, "open_by_handle_at", Deny),
    (305, "clock_adjtime", Deny),
    (306, "syncfs", Allow),
    (307, "sendmmsg", Allow),
    (308, "setns", Deny),
    (309, "getcpu", Allow),
    (310, "process_vm_readv", Deny),
    (311, "process_vm_writev", Deny),
    (312, "kcmp", Deny),
    (313, "finit_module", Deny),
    (314, "sched_setattr", Allow),
    (315, "sched_getattr", Allow),
    (316, "renameat2", Allow),
    (317, "seccomp", Allow),
    (318, "getrandom", Allow),
    (319, "memfd_create", Allow),
    (320, "kexec_file_load", Deny),
    (321, "bpf", Deny),
    (322, "execveat", Allow),
    (323, "userfaultfd", Deny),
    (324, "membarrier", Allow),
    (325, "mlock2", Allow),
    (326, "copy_file_range", Allow),
    (327, "preadv2", Allow),
    (328, "pwritev2", Allow),
    (329, "pkey_mprotect", Allow),
    (330, "pkey_alloc", Allow),
    (331, "pkey_free", Allow),
    (332, "statx", Allow),
    (333, "io_pgetevents", Allow),
    (334, "rseq", Allow),
    (335, "uretprobe", Allow),
    (424, "pidfd_send_signal", Allow),
    (425, "io_uring_setup", Deny),
    (426, "io_uring_enter", Deny),
    (427, "io_uring_register", Deny),
    (428, "open_tree", Deny),
    (429, "move_mount", Deny),
    (430, "fsopen", Deny),
    (431, "fsconfig", Deny),
    (432, "fsmount", Deny),
    (433, "fspick", Deny),
    (434, "pidfd_open", Allow),
    (435, "clone3", NoSys),
    (436, "close_range", Allow),
    (437, "openat2", Allow),
    (438, "pidfd_getfd", Deny),
    (439, "faccessat2", Allow),
    (440, "process_madvise", Deny),
    (441, "epoll_pwait2", Allow),
    (442, "mount_setattr", Deny),
    (443, "quotactl_fd", Deny),
    (444, "landlock_create_ruleset", Allow),
    (445, "landlock_add_rule", Allow),
    (446, "landlock_restrict_self", Allow),
    (447, "memfd_secret", Allow),
    (448, "process_mrelease", Allow),
    (449, "futex_waitv", Allow),
    (450, "set_mempolicy_home_node", Allow),
    (451, "cachestat", Allow),
    (452, "fchmodat2", Check(ArgRule::NoSetidMode(2))),
    (453, "map_shadow_stack", Allow),
    (454, "futex_wake", Allow),
    (455, "futex_wait", Allow),
    (456, "futex_requeue", Allow),
    (457, "statmount", Allow),
    (458, "listmount", Allow),
    (459, "lsm_get_self_attr", Allow),
    (460, "lsm_set_self_attr", Deny),
    (461, "lsm_list_modules", Allow),
    (462, "mseal", Allow),
    (463, "setxattrat", Allow),
    (464, "getxattrat", Allow),
    (465, "listxattrat", Allow),
    (466, "removexattrat", Allow),
    (467, "open_tree_attr", Deny),
    (468, "file_getattr", Allow),
    (469, "file_setattr", Allow),
];

/// The highest syscall number the filter knows; anything above gets ENOSYS.
pub const MAX_KNOWN_NR: u32 = 469;

/// The compiled filter: plain data, built once at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    insns: Vec<BpfInsn>,
}

impl SeccompProgram {
    /// The instructions, ready for `SECCOMP_SET_MODE_FILTER`.
    pub fn instructions(&self) -> &[BpfInsn] {
        &self.insns
    }
}

/// The action for every number 0..=MAX_KNOWN_NR, unassigned ones as `NoSys`.
pub fn action_table() -> [Action; MAX_KNOWN_NR as usize + 1] {
    let mut t = [NoSys; MAX_KNOWN_NR as usize + 1];
    for &(nr, _, action) in X86_64_SYSCALLS {
        t[nr as usize] = action;
    }
    t
}

/// The name of an x86_64 syscall number, for messages and tests.
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    X86_64_SYSCALLS
        .iter()
        .find(|(n, _, _)| *n == nr)
        .map(|(_, name, _)| *name)
}

const fn stmt(code: u16, k: u32) -> BpfInsn {
    BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// Compiles the x86_64 default profile. Pure; a few microseconds.
pub fn compile_x86_64() -> SeccompProgram {
    let table = action_table();
    // Runs of equal actions become one range; argument checks are single numbers.
    let mut ranges: Vec<(u32, Action)> = Vec::with_capacity(160);
    for (nr, action) in (0u32..).zip(table.iter().copied()) {
        let merge = matches!(ranges.last(), Some((_, prev)) if *prev == action && !matches!(action, Check(_)));
        if !merge {
            ranges.push((nr, action));
        }
    }
    let mut out = Vec::with_capacity(2 * ranges.len() + 48);
    out.push(stmt(LD_W_ABS, OFF_ARCH));
    out.push(jump(JEQ, AUDIT_ARCH_X86_64, 1, 0));
    out.push(stmt(RET, RET_KILL_PROCESS));
    out.push(stmt(LD_W_ABS, OFF_NR));
    out.push(jump(JGT, MAX_KNOWN_NR, 0, 3));
    out.push(jump(JSET, X32_SYSCALL_BIT, 0, 1));
    out.push(stmt(RET, RET_EPERM));
    out.push(stmt(RET, RET_ENOSYS));
    emit_tree(&ranges, &mut out);
    SeccompProgram { insns: out }
}

/// Emits a balanced search over `ranges` (sorted, contiguous, non-empty); A holds nr.
///
/// Each node is `jge pivot` with the lower half right after it and the upper half after
/// that. Leaves are returns (or argument checks) placed inline, so no path jumps back.
fn emit_tree(ranges: &[(u32, Action)], out: &mut Vec<BpfInsn>) {
    if let [(_, action)] = ranges {
        emit_leaf(*action, out);
        return;
    }
    let mid = ranges.len() / 2;
    let node = out.len();
    out.push(jump(JGE, ranges[mid].0, 0, 0));
    let start = out.len();
    emit_tree(&ranges[..mid], out);
    let left_len = out.len() - start;
    match u8::try_from(left_len) {
        Ok(jt) => out[node].jt = jt,
        Err(_) => {
            // Conditional offsets are 8 bits: hop over the lower half with a 32-bit `ja`.
            // Offsets inside the lower half are relative, so inserting before it is safe.
            out.insert(start, stmt(JA, left_len as u32));
            out[node].jt = 0;
            out[node].jf = 1;
        }
    }
    emit_tree(&ranges[mid..], out);
}

fn emit_leaf(action: Action, out: &mut Vec<BpfInsn>) {
    match action {
        Allow => out.push(stmt(RET, RET_ALLOW)),
        Deny => out.push(stmt(RET, RET_EPERM)),
        NoSys => out.push(stmt(RET, RET_ENOSYS)),
        Check(ArgRule::CloneFlags) => emit_mask_rule(0, CLONE_NS_FLAGS, out),
        Check(ArgRule::UnshareFlags) => emit_mask_rule(0, UNSHARE_NS_FLAGS, out),
        Check(ArgRule::NoSetidMode(arg)) => emit_mask_rule(arg, SETID_MODE_BITS, out),
        Check(ArgRule::Ioctl) => emit_deny_values(1, &[TIOCSTI, TIOCLINUX], out),
        Check(ArgRule::Personality) => emit_allow_values(0, &ALLOWED_PERSONALITIES, out),
    }
}

/// EPERM when the low 32 bits of `arg` share a bit with `mask`, else ALLOW.
fn emit_mask_rule(arg: u8, mask: u32, out: &mut Vec<BpfInsn>) {
    out.push(stmt(LD_W_ABS, off_arg_low(arg)));
    out.push(jump(JSET, mask, 0, 1));
    out.push(stmt(RET, RET_EPERM));
    out.push(stmt(RET, RET_ALLOW));
}

/// EPERM when the low 32 bits of `arg` equal one of `values`, else ALLOW.
fn emit_deny_values(arg: u8, values: &[u32], out: &mut Vec<BpfInsn>) {
    out.push(stmt(LD_W_ABS, off_arg_low(arg)));
    let n = values.len();
    for (i, v) in values.iter().enumerate() {
        // Jump over the remaining compares and the ALLOW to the EPERM at the end.
        out.push(jump(JEQ, *v, (n - i) as u8, 0));
    }
    out.push(stmt(RET, RET_ALLOW));
    out.push(stmt(RET, RET_EPERM));
}

/// ALLOW when the low 32 bits of `arg` equal one of `values`, else EPERM.
fn emit_allow_values(arg: u8, values: &[u32], out: &mut Vec<BpfInsn>) {
    out.push(stmt(LD_W_ABS, off_arg_low(arg)));
    let n = values.len();
    for (i, v) in values.iter().enumerate() {
        out.push(jump(JEQ, *v, (n - i) as u8, 0));
    }
    out.push(stmt(RET, RET_EPERM));
    out.push(stmt(RET, RET_ALLOW));
}

/// Counts for logs: (allowed, allowed after an argument check, refused with EPERM).
pub fn counts() -> (usize, usize, usize) {
    let (mut allow, mut check, mut deny) = (0, 0, 0);
    for (_, _, a) in X86_64_SYSCALLS {
        match a {
            Allow => allow += 1,
            Check(_) => check += 1,
            Deny => deny += 1,
            NoSys => {}
        }
    }
    (allow, check, deny)
}

/// Installs `prog` on the calling thread; no_new_privs must already be set.
pub fn install(prog: &SeccompProgram) -> Result<()> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Errcode::setup(
            "cannot install the seccomp filter: it is built for x86_64 only",
        )
        .with_hint("run with --seccomp unconfined on this architecture"));
    }
    let len = u16::try_from(prog.insns.len())
        .map_err(|_| Errcode::setup("cannot install the seccomp filter: program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; BpfInsn has sock_filter's layout.
        filter: prog.insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `len` valid instructions that outlive the call; the kernel
    // copies the program before returning.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = Errno::last();
    if e != Errno::ENOSYS {
        return Err(Errcode::sys("install the seccomp filter", e));
    }
    // Kernels before 3.17 have no seccomp(2) but take the same program through prctl.
    // SAFETY: as above.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(Errcode::sys(
            "install the seccomp filter (prctl)",
            Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `seccomp_data` to feed the interpreter.
    #[derive(Debug, Clone, Copy)]
    struct Data {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    impl Data {
        fn call(nr: u32, args: &[u64]) -> Data {
            let mut a = [0u64; 6];
            a[..args.len()].copy_from_slice(args);
            Data {
                nr,
                arch: AUDIT_ARCH_X86_64,
                args: a,
            }
        }

        fn bytes(&self) -> [u8; 64] {
            let mut b = [0u8; 64];
            b[0..4].copy_from_slice(&self.nr.to_le_bytes());
            b[4..8].copy_from_slice(&self.arch.to_le_bytes());
            b[8..16].copy_from_slice(&0x7fff_1234_5678u64.to_le_bytes());
            for (i, a) in self.args.iter().enumerate() {
                b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
            }
            b
        }
    }

    /// Runs a classic BPF program the way the kernel's seccomp does, refusing anything
    /// the kernel's checker would refuse.
    fn run(prog: &[BpfInsn], d: &Data) -> std::result::Result<u32, String> {
        let mem = d.bytes();
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
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
                JA => pc + 1 + ins.k as usize,
                JEQ => cond(a == ins.k),
                JGT => cond(a > ins.k),
                JGE => cond(a >= ins.k),
                JSET => cond(a & ins.k != 0),
                RET => return Ok(ins.k),
                other => return Err(format!("unknown opcode {other:#x} at {pc}")),
            };
        }
    }

    /// What the filter should answer, computed straight from the table.
    fn expected(d: &Data) -> u32 {
        if d.arch != AUDIT_ARCH_X86_64 {
            return RET_KILL_PROCESS;
        }
        if d.nr > MAX_KNOWN_NR {
            return if d.nr & X32_SYSCALL_BIT != 0 {
                RET_EPERM
            } else {
                RET_ENOSYS
            };
        }
        let low = |i: usize| d.args[i] as u32;
        let verdict = |ok: bool| if ok { RET_ALLOW } else { RET_EPERM };
        match action_table()[d.nr as usize] {
            Allow => RET_ALLOW,
            Deny => RET_EPERM,
            NoSys => RET_ENOSYS,
            Check(ArgRule::CloneFlags) => verdict(low(0) & CLONE_NS_FLAGS == 0),
            Check(ArgRule::UnshareFlags) => verdict(low(0) & UNSHARE_NS_FLAGS == 0),
            Check(ArgRule::Ioctl) => verdict(low(1) != TIOCSTI && low(1) != TIOCLINUX),
            Check(ArgRule::NoSetidMode(i)) => verdict(low(usize::from(i)) & SETID_MODE_BITS == 0),
            Check(ArgRule::Personality) => verdict(ALLOWED_PERSONALITIES.contains(&low(0))),
        }
    }

    fn nr(name: &str) -> u32 {
        X86_64_SYSCALLS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(nr, _, _)| *nr)
            .unwrap_or_else(|| panic!("no syscall {name}"))
    }

    fn verdict(name: &str, args: &[u64]) -> u32 {
        let p = compile_x86_64();
        run(p.instructions(), &Data::call(nr(name), args)).unwrap()
    }

    #[test]
    fn table_is_sorted_unique_and_ends_at_the_max() {
        for w in X86_64_SYSCALLS.windows(2) {
            assert!(w[0].0 < w[1].0, "{:?} then {:?}", w[0], w[1]);
        }
        let mut names: Vec<_> = X86_64_SYSCALLS.iter().map(|s| s.1).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), X86_64_SYSCALLS.len());
        assert_eq!(X86_64_SYSCALLS.last().map(|s| s.0), Some(MAX_KNOWN_NR));
        assert_eq!(syscall_name(59), Some("execve"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn numbers_match_the_c_library() {
        fn nr_sys(s: &str) -> u32 {
            nr(s.trim_start_matches("SYS_"))
        }
        macro_rules! same_sys {
            ($($n:ident),*) => {$(
                assert_eq!(i64::from(nr_sys(stringify!($n))), libc::$n as i64, stringify!($n));
            )*};
        }
        same_sys!(
            SYS_read,
            SYS_open,
            SYS_ioctl,
            SYS_clone,
            SYS_fork,
            SYS_execve,
            SYS_chmod,
            SYS_fchmod,
            SYS_ptrace,
            SYS_personality,
            SYS_pivot_root,
            SYS_mount,
            SYS_umount2,
            SYS_reboot,
            SYS_init_module,
            SYS_kexec_load,
            SYS_keyctl,
            SYS_fchmodat,
            SYS_unshare,
            SYS_setns,
            SYS_perf_event_open,
            SYS_open_by_handle_at,
            SYS_seccomp,
            SYS_bpf,
            SYS_execveat,
            SYS_userfaultfd,
            SYS_statx,
            SYS_rseq,
            SYS_pidfd_send_signal,
            SYS_io_uring_setup,
            SYS_open_tree,
            SYS_fsopen,
            SYS_clone3,
            SYS_close_range,
            SYS_openat2,
            SYS_faccessat2,
            SYS_epoll_pwait2,
            SYS_mount_setattr,
            SYS_landlock_restrict_self,
            SYS_memfd_secret,
            SYS_futex_waitv,
            SYS_fchmodat2,
            SYS_mseal,
            SYS_exit_group,
            SYS_chroot,
            SYS_sethostname,
            SYS_getpid,
            SYS_process_vm_writev,
            SYS_kcmp,
            SYS_finit_module,
            SYS_name_to_handle_at
        );
    }

    #[test]
    fn program_is_valid_for_the_kernel_checker() {
        let p = compile_x86_64();
        let insns = p.instructions();
        assert!(insns.len() <= 4096, "BPF_MAXINSNS");
        assert_eq!(
            insns.last().map(|i| i.code),
            Some(RET),
            "must end in a return"
        );
        for (pc, i) in insns.iter().enumerate() {
            let targets: Vec<usize> = match i.code {
                JA => vec![pc + 1 + i.k as usize],
                JEQ | JGT | JGE | JSET => {
                    vec![pc + 1 + usize::from(i.jt), pc + 1 + usize::from(i.jf)]
                }
                LD_W_ABS => {
                    assert!(i.k % 4 == 0 && i.k < 64, "load at {pc}");
                    vec![pc + 1]
                }
                RET => vec![],
                other => panic!("opcode {other:#x} at {pc}"),
            };
            for t in targets {
                assert!(t < insns.len(), "jump from {pc} to {t} out of bounds");
            }
        }
    }

    #[test]
    fn common_path_is_short() {
        let p = compile_x86_64();
        // Longest path over every known number, counted in executed instructions.
        let mut worst = 0;
        for n in 0..=MAX_KNOWN_NR {
            let d = Data::call(n, &[]);
            let (mut pc, mut steps) = (0usize, 0);
            let insns = p.instructions();
            while insns[pc].code != RET {
                let i = insns[pc];
                let a = if pc < 3 { d.arch } else { n };
                pc = match i.code {
                    JA => pc + 1 + i.k as usize,
                    JEQ => pc + 1 + usize::from(if a == i.k { i.jt } else { i.jf }),
                    JGT => pc + 1 + usize::from(if a > i.k { i.jt } else { i.jf }),
                    JGE => pc + 1 + usize::from(if a >= i.k { i.jt } else { i.jf }),
                    JSET => pc + 1 + usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                    _ => break, // argument checks: a few more, not counted here
                };
                steps += 1;
            }
            worst = worst.max(steps);
        }
        assert!(worst <= 16, "worst path {worst} instructions");
    }

    #[test]
    fn everyday_syscalls_are_allowed() {
        for name in [
            "read",
            "write",
            "open",
            "openat",
            "openat2",
            "close",
            "stat",
            "fstat",
            "lstat",
            "newfstatat",
            "statx",
            "mmap",
            "mprotect",
            "munmap",
            "brk",
            "rt_sigaction",
            "rt_sigreturn",
            "fork",
            "vfork",
            "execve",
            "execveat",
            "wait4",
            "waitid",
            "futex",
            "socket",
            "bind",
            "connect",
            "listen",
            "accept4",
            "sendmsg",
            "recvmsg",
            "getpid",
            "gettid",
            "exit_group",
            "getdents64",
            "pipe2",
            "dup3",
            "epoll_wait",
            "epoll_pwait2",
            "prlimit64",
            "rseq",
            "set_robust_list",
            "set_tid_address",
            "getrandom",
            "clock_gettime",
            "clock_nanosleep",
            "arch_prctl",
            "prctl",
            "chroot",
            "sethostname",
            "setresuid",
            "setgroups",
            "capget",
            "capset",
            "seccomp",
            "close_range",
            "faccessat2",
            "pidfd_open",
            "membarrier",
            "landlock_create_ruleset",
            "mseal",
            "map_shadow_stack",
            "madvise",
            "copy_file_range",
            "sendfile",
            "memfd_create",
        ] {
            assert_eq!(verdict(name, &[]), RET_ALLOW, "{name}");
        }
    }

    #[test]
    fn dangerous_syscalls_are_refused_with_eperm() {
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "open_by_handle_at",
            "name_to_handle_at",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "swapon",
            "swapoff",
            "acct",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "syslog",
            "vhangup",
            "iopl",
            "ioperm",
            "kcmp",
            "move_mount",
            "fsopen",
            "fsmount",
            "fspick",
            "open_tree",
            "open_tree_attr",
            "mount_setattr",
            "fsconfig",
            "setns",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "pidfd_getfd",
            "modify_ldt",
            "uselib",
            "_sysctl",
        ] {
            assert_eq!(verdict(name, &[]), RET_EPERM, "{name}");
        }
    }

    #[test]
    fn clone3_and_unknown_numbers_get_enosys() {
        assert_eq!(verdict("clone3", &[]), RET_ENOSYS);
        let p = compile_x86_64();
        for n in [
            336,
            400,
            423,
            MAX_KNOWN_NR + 1,
            1000,
            0x3fff_ffff,
            u32::MAX >> 2,
        ] {
            assert_eq!(
                run(p.instructions(), &Data::call(n, &[])),
                Ok(RET_ENOSYS),
                "{n}"
            );
        }
    }

    #[test]
    fn x32_and_foreign_arches_are_stopped() {
        let p = compile_x86_64();
        let x32_getpid = Data::call(X32_SYSCALL_BIT | 39, &[]);
        assert_eq!(run(p.instructions(), &x32_getpid), Ok(RET_EPERM));
        assert_eq!(
            run(p.instructions(), &Data::call(u32::MAX, &[])),
            Ok(RET_EPERM)
        );
        for arch in [
            0x4000_0003, /* i386 */
            0xc000_00b7, /* aarch64 */
            0,
        ] {
            let d = Data {
                arch,
                ..Data::call(39, &[])
            };
            assert_eq!(run(p.instructions(), &d), Ok(RET_KILL_PROCESS), "{arch:#x}");
        }
    }

    #[test]
    fn clone_namespaces_refused_threads_and_forks_allowed() {
        let sigchld = libc::SIGCHLD as u64;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(verdict("clone", &[thread]), RET_ALLOW);
        assert_eq!(verdict("clone", &[sigchld]), RET_ALLOW);
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 | sigchld;
        assert_eq!(verdict("clone", &[fork]), RET_ALLOW);
        for ns in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                verdict("clone", &[ns as u64 | sigchld]),
                RET_EPERM,
                "{ns:#x}"
            );
            assert_eq!(verdict("unshare", &[ns as u64]), RET_EPERM, "{ns:#x}");
        }
        assert_eq!(verdict("unshare", &[0x80]), RET_EPERM, "time namespace");
        let plain = (libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SYSVSEM) as u64;
        assert_eq!(verdict("unshare", &[plain]), RET_ALLOW);
    }

    #[test]
    fn ioctl_refuses_only_terminal_injection() {
        let tcgets = 0x5401u64;
        let tiocgwinsz = 0x5413u64;
        assert_eq!(verdict("ioctl", &[0, u64::from(TIOCSTI)]), RET_EPERM);
        assert_eq!(verdict("ioctl", &[0, u64::from(TIOCLINUX)]), RET_EPERM);
        assert_eq!(verdict("ioctl", &[0, tcgets]), RET_ALLOW);
        assert_eq!(verdict("ioctl", &[0, tiocgwinsz]), RET_ALLOW);
        // The kernel reads the request as an unsigned int: high bits do not hide TIOCSTI…
        assert_eq!(
            verdict("ioctl", &[0, (1u64 << 32) | u64::from(TIOCSTI)]),
            RET_EPERM
        );
        // …and a different low word with TIOCSTI in the high word is not TIOCSTI.
        assert_eq!(
            verdict("ioctl", &[0, (u64::from(TIOCSTI) << 32) | tcgets]),
            RET_ALLOW
        );
        // The fd argument plays no part.
        assert_eq!(
            verdict("ioctl", &[u64::from(TIOCSTI), tiocgwinsz]),
            RET_ALLOW
        );
    }

    #[test]
    fn chmod_refuses_setid_bits() {
        for (name, arg) in [
            ("chmod", 1),
            ("fchmod", 1),
            ("fchmodat", 2),
            ("fchmodat2", 2),
        ] {
            let with = |mode: u64| {
                let mut a = [0u64; 3];
                a[arg] = mode;
                verdict(name, &a)
            };
            assert_eq!(with(0o4755), RET_EPERM, "{name} 04755");
            assert_eq!(with(0o2755), RET_EPERM, "{name} 02755");
            assert_eq!(with(0o755), RET_ALLOW, "{name} 0755");
            assert_eq!(with(0o1777), RET_ALLOW, "{name} sticky");
            // A setuid bit in another argument must not matter.
            let mut other = [0o4755u64; 3];
            other[arg] = 0o644;
            assert_eq!(verdict(name, &other), RET_ALLOW, "{name} other arg");
        }
    }

    #[test]
    fn personality_allows_only_the_safe_values() {
        for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(verdict("personality", &[ok]), RET_ALLOW, "{ok:#x}");
        }
        // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and friends weaken the process.
        for bad in [0x40_0000u64, 0x4_0000, 0x0020_0000, 1, 0x0100_0000] {
            assert_eq!(verdict("personality", &[bad]), RET_EPERM, "{bad:#x}");
        }
    }

    #[test]
    fn long_lower_halves_use_a_far_jump() {
        // Many single-number ranges make the lower half of the root exceed 255 instructions.
        let ranges: Vec<(u32, Action)> = (0..400)
            .map(|n| (n, if n % 2 == 0 { Allow } else { Deny }))
            .collect();
        let mut out = Vec::new();
        emit_tree(&ranges, &mut out);
        assert!(out.iter().any(|i| i.code == JA));
        let mut prog = vec![stmt(LD_W_ABS, OFF_NR)];
        prog.extend(out);
        for n in 0..400 {
            let want = if n % 2 == 0 { RET_ALLOW } else { RET_EPERM };
            assert_eq!(run(&prog, &Data::call(n, &[])), Ok(want), "{n}");
        }
    }

    proptest! {
        #[test]
        fn every_known_number_is_allow_eperm_or_enosys(n in 0..=MAX_KNOWN_NR, args in any::<[u64; 6]>()) {
            let p = compile_x86_64();
            let d = Data { nr: n, arch: AUDIT_ARCH_X86_64, args };
            let v = run(p.instructions(), &d);
            prop_assert!(matches!(v, Ok(RET_ALLOW | RET_EPERM | RET_ENOSYS)), "{:?}", v);
            prop_assert_eq!(v, Ok(expected(&d)));
        }

        #[test]
        fn program_matches_the_table_everywhere(nr in prop_oneof![0..=MAX_KNOWN_NR + 8, any::<u32>()],
                                                 native in any::<bool>(), arch in any::<u32>(),
                                                 args in any::<[u64; 6]>()) {
            let d = Data { nr, arch: if native { AUDIT_ARCH_X86_64 } else { arch }, args };
            prop_assert_eq!(run(compile_x86_64().instructions(), &d), Ok(expected(&d)));
        }
    }
}
