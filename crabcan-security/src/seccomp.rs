//! The seccomp filter: an x86_64 allow list compiled to classic BPF by hand.
//!
//! Layout of the program (the common path is four instructions plus a binary search of
//! about eight comparisons over sorted ranges of syscall numbers):
//!
//! ```text
//!   load arch; arch != x86_64            -> KILL_PROCESS (also stops 32-bit int 0x80 calls,
//!                                           so the ia32 socketcall multiplexer never runs)
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
/// Filter verdict: kill the calling thread only.
pub const RET_KILL_THREAD: u32 = 0;
/// Filter verdict: send SIGSYS to the caller.
pub const RET_TRAP: u32 = 0x0003_0000;
/// Filter verdict: notify a ptrace tracer.
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// Filter verdict: log, then run the syscall.
pub const RET_LOG: u32 = 0x7ffc_0000;
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
/// CLONE_NEWNS 0x20000, NEWCGROUP 0x2000000, NEWUTS 0x4000000, NEWIPC 0x8000000,
/// NEWUSER 0x10000000, NEWPID 0x20000000, NEWNET 0x40000000 (checked against the C
/// library in the tests).
pub const CLONE_NS_FLAGS: u32 = 0x7e02_0000;
/// Namespace flags of unshare(2): the clone ones plus the time namespace (0x80), which
/// only unshare and clone3 can ask for (in clone its bit is part of the exit signal).
pub const UNSHARE_NS_FLAGS: u32 = 0x7e02_0080;
/// Injects input into a terminal another process reads: the classic container escape.
pub const TIOCSTI: u32 = 0x5412;
/// Console multiplexer: can also inject input (selection paste) on virtual consoles.
pub const TIOCLINUX: u32 = 0x541c;
/// `S_ISUID | S_ISGID`.
pub const SETID_MODE_BITS: u32 = 0o6000;
/// `AF_VSOCK`: sockets to the hypervisor and its other guests, in no network namespace.
pub const AF_VSOCK: u32 = 40;
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
    /// `chmod`-, `creat`-, `open`- and `mknod`-like: EPERM when the mode in the given
    /// argument has S_ISUID or S_ISGID. For `open` and `openat` the mode only matters with
    /// O_CREAT or O_TMPFILE; C libraries pass 0 otherwise, so the flags are not consulted.
    NoSetidMode(u8),
    /// `socket`, `socketpair`: EPERM for the AF_VSOCK family (arg 0), which no network
    /// namespace confines.
    NoVsock,
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
    /// Fail with ENOSYS, as a kernel without it would (unassigned, retired, or a call whose
    /// arguments live in memory a filter cannot read, so libc falls back to an older one:
    /// `clone3` to `clone`, `openat2` to `openat`).
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
    (2, "open", Check(ArgRule::NoSetidMode(2))),
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
    (41, "socket", Check(ArgRule::NoVsock)),
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
    (53, "socketpair", Check(ArgRule::NoVsock)),
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
    (85, "creat", Check(ArgRule::NoSetidMode(1))),
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
    (133, "mknod", Check(ArgRule::NoSetidMode(1))),
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
    (257, "openat", Check(ArgRule::NoSetidMode(3))),
    (258, "mkdirat", Allow),
    (259, "mknodat", Check(ArgRule::NoSetidMode(2))),
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
    (437, "openat2", NoSys),
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
        Check(ArgRule::NoVsock) => emit_deny_values(0, &[AF_VSOCK], out),
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

/// The two ways the kernel takes a filter program. [`install`] uses the real system calls;
/// tests substitute their own to drive every branch.
pub trait FilterCalls {
    /// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`.
    fn seccomp(&mut self, prog: &libc::sock_fprog) -> std::result::Result<(), Errno>;
    /// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)`, for kernels before 3.17.
    fn prctl(&mut self, prog: &libc::sock_fprog) -> std::result::Result<(), Errno>;
}

/// The real system calls, acting on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelCalls;

impl FilterCalls for KernelCalls {
    fn seccomp(&mut self, prog: &libc::sock_fprog) -> std::result::Result<(), Errno> {
        // SAFETY: prog points at `len` valid instructions that outlive the call; the
        // kernel copies the program before returning.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog as *const libc::sock_fprog,
            )
        };
        Errno::result(r).map(drop)
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
}

/// Installs `prog` on the calling thread; no_new_privs must already be set.
pub fn install(prog: &SeccompProgram) -> Result<()> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Errcode::setup(
            "cannot install the seccomp filter: it is built for x86_64 only",
        )
        .with_hint("run with --seccomp unconfined on this architecture"));
    }
    install_with(prog, &mut KernelCalls)
}

/// [`install`] through the given system calls: seccomp(2), and prctl only when the kernel
/// has no seccomp(2) (ENOSYS). Every other failure is an error: a filter that did not go
/// in must never look as if it did.
pub fn install_with(prog: &SeccompProgram, calls: &mut impl FilterCalls) -> Result<()> {
    let len = u16::try_from(prog.insns.len()).map_err(|_| {
        Errcode::setup(format!(
            "cannot install the seccomp filter: {} instructions, more than a program can hold",
            prog.insns.len()
        ))
    })?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; BpfInsn has sock_filter's layout.
        filter: prog.insns.as_ptr() as *mut libc::sock_filter,
    };
    match calls.seccomp(&fprog) {
        Ok(()) => Ok(()),
        Err(Errno::ENOSYS) => calls
            .prctl(&fprog)
            .map_err(|e| Errcode::sys("install the seccomp filter (prctl)", e)),
        Err(e) => Err(Errcode::sys("install the seccomp filter", e)),
    }
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

    // The kernel's verdict values and errnos, written out: the tests compare against these,
    // never against the compiler's own constants.
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0001;
    const ENOSYS: u32 = 0x0005_0026;
    const KILL: u32 = 0x8000_0000;

    /// Numbers refused with EPERM, written out (not taken from the table under test).
    const DENIED: &[u32] = &[
        101, // ptrace
        103, // syslog
        134, // uselib
        136, // ustat
        139, // sysfs
        153, // vhangup
        154, // modify_ldt
        155, // pivot_root
        156, // _sysctl
        159, // adjtimex
        163, // acct
        164, // settimeofday
        165, // mount
        166, // umount2
        167, // swapon
        168, // swapoff
        169, // reboot
        172, // iopl
        173, // ioperm
        175, // init_module
        176, // delete_module
        179, // quotactl
        212, // lookup_dcookie
        227, // clock_settime
        246, // kexec_load
        248, // add_key
        249, // request_key
        250, // keyctl
        256, // migrate_pages
        279, // move_pages
        298, // perf_event_open
        300, // fanotify_init
        303, // name_to_handle_at
        304, // open_by_handle_at
        305, // clock_adjtime
        308, // setns
        310, // process_vm_readv
        311, // process_vm_writev
        312, // kcmp
        313, // finit_module
        320, // kexec_file_load
        321, // bpf
        323, // userfaultfd
        425, // io_uring_setup
        426, // io_uring_enter
        427, // io_uring_register
        428, // open_tree
        429, // move_mount
        430, // fsopen
        431, // fsconfig
        432, // fsmount
        433, // fspick
        438, // pidfd_getfd
        440, // process_madvise
        442, // mount_setattr
        443, // quotactl_fd
        460, // lsm_set_self_attr
        467, // open_tree_attr
    ];

    /// Numbers answered with ENOSYS besides the unassigned gap 336..=423, written out.
    const NO_SYS: &[u32] = &[
        174, // create_module
        177, // get_kernel_syms
        178, // query_module
        180, // nfsservctl
        181, // getpmsg
        182, // putpmsg
        183, // afs_syscall
        184, // tuxcall
        185, // security
        214, // epoll_ctl_old
        215, // epoll_wait_old
        236, // vserver
        435, // clone3
        437, // openat2
    ];

    /// What the filter must answer, from the literal lists and rules above.
    fn spec(d: &Data) -> u32 {
        if d.arch != 0xc000_003e {
            return KILL;
        }
        let low = |i: usize| d.args[i] as u32;
        let ok = |allowed: bool| if allowed { ALLOW } else { EPERM };
        let no_setid = |i: usize| ok(low(i) & 0o6000 == 0);
        match d.nr {
            n if n > 469 => {
                if n & 0x4000_0000 != 0 {
                    EPERM
                } else {
                    ENOSYS
                }
            }
            2 => no_setid(2),                               // open
            85 | 90 | 91 | 133 => no_setid(1),              // creat chmod fchmod mknod
            257 => no_setid(3),                             // openat
            259 | 268 | 452 => no_setid(2),                 // mknodat fchmodat fchmodat2
            16 => ok(low(1) != 0x5412 && low(1) != 0x541c), // ioctl: TIOCSTI, TIOCLINUX
            41 | 53 => ok(low(0) != 40),                    // socket, socketpair: AF_VSOCK
            56 => ok(low(0) & 0x7e02_0000 == 0),            // clone: namespace flags
            272 => ok(low(0) & 0x7e02_0080 == 0),           // unshare: the same and CLONE_NEWTIME
            135 => ok([0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff].contains(&low(0))), // personality
            336..=423 => ENOSYS,
            n if NO_SYS.contains(&n) => ENOSYS,
            n if DENIED.contains(&n) => EPERM,
            _ => ALLOW,
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
            assert_eq!(verdict(name, &[]), ALLOW, "{name}");
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
            assert_eq!(verdict(name, &[]), EPERM, "{name}");
        }
    }

    #[test]
    fn clone3_and_unknown_numbers_get_enosys() {
        assert_eq!(verdict("clone3", &[]), ENOSYS);
        assert_eq!(verdict("openat2", &[]), ENOSYS);
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
                Ok(ENOSYS),
                "{n}"
            );
        }
    }

    #[test]
    fn x32_and_foreign_arches_are_stopped() {
        let p = compile_x86_64();
        let x32_getpid = Data::call(X32_SYSCALL_BIT | 39, &[]);
        assert_eq!(run(p.instructions(), &x32_getpid), Ok(EPERM));
        assert_eq!(run(p.instructions(), &Data::call(u32::MAX, &[])), Ok(EPERM));
        for arch in [
            0x4000_0003, /* i386 */
            0xc000_00b7, /* aarch64 */
            0,
        ] {
            let d = Data {
                arch,
                ..Data::call(39, &[])
            };
            assert_eq!(run(p.instructions(), &d), Ok(KILL), "{arch:#x}");
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
        assert_eq!(verdict("clone", &[thread]), ALLOW);
        assert_eq!(verdict("clone", &[sigchld]), ALLOW);
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 | sigchld;
        assert_eq!(verdict("clone", &[fork]), ALLOW);
        for ns in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(verdict("clone", &[ns as u64 | sigchld]), EPERM, "{ns:#x}");
            assert_eq!(verdict("unshare", &[ns as u64]), EPERM, "{ns:#x}");
        }
        assert_eq!(verdict("unshare", &[0x80]), EPERM, "time namespace");
        let plain = (libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SYSVSEM) as u64;
        assert_eq!(verdict("unshare", &[plain]), ALLOW);
    }

    #[test]
    fn ioctl_refuses_only_terminal_injection() {
        let tcgets = 0x5401u64;
        let tiocgwinsz = 0x5413u64;
        assert_eq!(verdict("ioctl", &[0, u64::from(TIOCSTI)]), EPERM);
        assert_eq!(verdict("ioctl", &[0, u64::from(TIOCLINUX)]), EPERM);
        assert_eq!(verdict("ioctl", &[0, tcgets]), ALLOW);
        assert_eq!(verdict("ioctl", &[0, tiocgwinsz]), ALLOW);
        // The kernel reads the request as an unsigned int: high bits do not hide TIOCSTI…
        assert_eq!(
            verdict("ioctl", &[0, (1u64 << 32) | u64::from(TIOCSTI)]),
            EPERM
        );
        // …and a different low word with TIOCSTI in the high word is not TIOCSTI.
        assert_eq!(
            verdict("ioctl", &[0, (u64::from(TIOCSTI) << 32) | tcgets]),
            ALLOW
        );
        // The fd argument plays no part.
        assert_eq!(verdict("ioctl", &[u64::from(TIOCSTI), tiocgwinsz]), ALLOW);
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
            assert_eq!(with(0o4755), EPERM, "{name} 04755");
            assert_eq!(with(0o2755), EPERM, "{name} 02755");
            assert_eq!(with(0o755), ALLOW, "{name} 0755");
            assert_eq!(with(0o1777), ALLOW, "{name} sticky");
            // A setuid bit in another argument must not matter.
            let mut other = [0o4755u64; 3];
            other[arg] = 0o644;
            assert_eq!(verdict(name, &other), ALLOW, "{name} other arg");
        }
    }

    #[test]
    fn personality_allows_only_the_safe_values() {
        for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(verdict("personality", &[ok]), ALLOW, "{ok:#x}");
        }
        // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and friends weaken the process.
        for bad in [0x40_0000u64, 0x4_0000, 0x0020_0000, 1, 0x0100_0000] {
            assert_eq!(verdict("personality", &[bad]), EPERM, "{bad:#x}");
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
            let want = if n % 2 == 0 { ALLOW } else { EPERM };
            assert_eq!(run(&prog, &Data::call(n, &[])), Ok(want), "{n}");
        }
    }

    fn call_verdict(nr: u32, args: &[u64]) -> u32 {
        run(compile_x86_64().instructions(), &Data::call(nr, args)).unwrap()
    }

    #[test]
    fn kernel_return_values_are_pinned() {
        assert_eq!(RET_ERRNO, 0x0005_0000);
        assert_eq!(RET_KILL_THREAD, 0);
        assert_eq!(RET_KILL_PROCESS, 0x8000_0000);
        assert_eq!(RET_ALLOW, 0x7fff_0000);
        assert_eq!(RET_TRAP, 0x0003_0000);
        assert_eq!(RET_TRACE, 0x7ff0_0000);
        assert_eq!(RET_LOG, 0x7ffc_0000);
        assert_eq!(libc::EPERM, 1);
        assert_eq!(libc::ENOSYS, 38);
        assert_eq!(RET_EPERM, 0x0005_0001);
        assert_eq!(RET_ENOSYS, 0x0005_0026);
        assert_eq!(AUDIT_ARCH_X86_64, 0xc000_003e);
        assert_eq!(X32_SYSCALL_BIT, 0x4000_0000);
        assert_eq!(AF_VSOCK, 40);
        assert_eq!(SETID_MODE_BITS, 0o6000);
        assert_eq!(TIOCSTI, 0x5412);
        assert_eq!(TIOCLINUX, 0x541c);
        assert_eq!(CLONE_NS_FLAGS, 0x7e02_0000);
        assert_eq!(UNSHARE_NS_FLAGS, 0x7e02_0080);
        let each = [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ];
        assert_eq!(each.iter().map(|f| *f as u32).sum::<u32>(), CLONE_NS_FLAGS);
        assert_eq!(CLONE_NS_FLAGS + 0x80, UNSHARE_NS_FLAGS);
        assert_eq!(
            ALLOWED_PERSONALITIES,
            [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff]
        );
        // Classic BPF opcodes as the kernel's filter.h defines them.
        assert_eq!(
            (LD_W_ABS, JA, JEQ, JGT, JGE, JSET, RET),
            (0x20, 0x05, 0x15, 0x25, 0x35, 0x45, 0x06)
        );
        assert_eq!(MAX_KNOWN_NR, 469);
    }

    #[test]
    fn verdicts_written_out() {
        let cases: &[(u32, &str, u32)] = &[
            (136, "ustat", EPERM),
            (139, "sysfs", EPERM),
            (256, "migrate_pages", EPERM),
            (279, "move_pages", EPERM),
            (300, "fanotify_init", EPERM),
            (440, "process_madvise", EPERM),
            (460, "lsm_set_self_attr", EPERM),
            (165, "mount", EPERM),
            (308, "setns", EPERM),
            (321, "bpf", EPERM),
            (101, "ptrace", EPERM),
            (467, "open_tree_attr", EPERM),
            (435, "clone3", ENOSYS),
            (437, "openat2", ENOSYS),
            (174, "create_module", ENOSYS),
            (400, "(unassigned)", ENOSYS),
            (470, "(above the table)", ENOSYS),
            (0, "read", ALLOW),
            (1, "write", ALLOW),
            (2, "open", ALLOW),
            (41, "socket", ALLOW),
            (53, "socketpair", ALLOW),
            (59, "execve", ALLOW),
            (85, "creat", ALLOW),
            (133, "mknod", ALLOW),
            (157, "prctl", ALLOW),
            (161, "chroot", ALLOW),
            (188, "setxattr", ALLOW),
            (231, "exit_group", ALLOW),
            (257, "openat", ALLOW),
            (259, "mknodat", ALLOW),
            (301, "fanotify_mark", ALLOW),
            (317, "seccomp", ALLOW),
            (335, "uretprobe", ALLOW),
            (424, "pidfd_send_signal", ALLOW),
            (439, "faccessat2", ALLOW),
            (459, "lsm_get_self_attr", ALLOW),
            (461, "lsm_list_modules", ALLOW),
            (462, "mseal", ALLOW),
            (469, "file_setattr", ALLOW),
        ];
        for &(n, name, want) in cases {
            assert_eq!(call_verdict(n, &[]), want, "{n} {name}");
            if !name.starts_with('(') {
                assert_eq!(syscall_name(n), Some(name), "{n}");
            }
        }
    }

    #[test]
    fn every_number_matches_the_written_out_spec() {
        let p = compile_x86_64();
        let setid = [0u64, 0o4755, 0o2755, 0o6000, 0o755, 0o1777, 0o104755];
        for n in 0..=480u32 {
            for m in setid {
                for at in 0..4 {
                    let mut args = [0u64; 6];
                    args[at] = m;
                    let d = Data::call(n, &args);
                    assert_eq!(run(p.instructions(), &d), Ok(spec(&d)), "{n} {args:?}");
                }
            }
            for fam in [1u64, 2, 10, 16, 40, 0x1_0000_0028] {
                let d = Data::call(n, &[fam, 1, 0]);
                assert_eq!(run(p.instructions(), &d), Ok(spec(&d)), "{n} family {fam}");
            }
        }
    }

    #[test]
    fn vsock_sockets_are_refused() {
        const AF_INET: u64 = 2;
        const AF_UNIX: u64 = 1;
        const SOCK_STREAM: u64 = 1;
        for nr in [41u32, 53] {
            assert_eq!(call_verdict(nr, &[40, SOCK_STREAM, 0]), EPERM, "{nr}");
            assert_eq!(call_verdict(nr, &[40, 5, 0]), EPERM, "{nr} seqpacket");
            assert_eq!(call_verdict(nr, &[AF_INET, SOCK_STREAM, 0]), ALLOW, "{nr}");
            assert_eq!(call_verdict(nr, &[AF_UNIX, SOCK_STREAM, 0]), ALLOW, "{nr}");
            // The kernel reads the family as an int: high bits cannot hide AF_VSOCK.
            assert_eq!(
                call_verdict(nr, &[(1 << 32) | 40, SOCK_STREAM, 0]),
                EPERM,
                "{nr}"
            );
            // AF_VSOCK in another argument is just a number.
            assert_eq!(call_verdict(nr, &[AF_INET, 40, 40]), ALLOW, "{nr}");
        }
    }

    #[test]
    fn creating_setid_files_is_refused() {
        // (number, name, index of the mode argument)
        for (n, name, arg) in [
            (2u32, "open", 2usize),
            (85, "creat", 1),
            (133, "mknod", 1),
            (257, "openat", 3),
            (259, "mknodat", 2),
        ] {
            let with = |mode: u64| {
                let mut a = [0u64; 6];
                a[arg] = mode;
                if name.starts_with("open") {
                    // O_CREAT in the flags, which come just before the mode.
                    a[arg - 1] = 0o100 | 0o1;
                }
                call_verdict(n, &a)
            };
            assert_eq!(with(0o4755), EPERM, "{name} 04755");
            assert_eq!(with(0o2755), EPERM, "{name} 02755");
            assert_eq!(with(0o100_000 | 0o4755), EPERM, "{name} S_IFREG|04755");
            assert_eq!(with(0o644), ALLOW, "{name} 0644");
            assert_eq!(with(0o1777), ALLOW, "{name} sticky");
            assert_eq!(with(0o100_644), ALLOW, "{name} S_IFREG|0644");
            // High bits of the 64-bit register do not hide the mode's low bits.
            assert_eq!(with((1 << 32) | 0o4755), EPERM, "{name} high bits");
            // The setuid bit anywhere else plays no part.
            let mut other = [0o4755u64; 6];
            other[arg] = 0o644;
            assert_eq!(call_verdict(n, &other), ALLOW, "{name} other arguments");
        }
    }

    #[test]
    fn foreign_arches_are_killed_and_x32_refused() {
        // Every non-native arch dies before its number is even looked at: i386 (where
        // socketcall, 102, multiplexes every socket call), x32 as an arch value, arm, ...
        for arch in [
            0x4000_0003u32,
            0xc000_00b7,
            0x4000_0028,
            0x8000_0016,
            0x4000_003e,
            0,
            u32::MAX,
        ] {
            for n in [102u32, 359, 41, 0, 1, 11, 0x4000_0029] {
                let d = Data {
                    arch,
                    ..Data::call(n, &[2, 1, 0])
                };
                assert_eq!(
                    run(compile_x86_64().instructions(), &d),
                    Ok(KILL),
                    "{arch:#x} {n}"
                );
            }
        }
        // x32 calls carry the native arch and the 0x40000000 bit: every one is refused,
        // whatever the number below the bit.
        for n in [
            0u32,
            2,
            41,
            53,
            59,
            101,
            165,
            257,
            437,
            469,
            512,
            0x3fff_ffff,
        ] {
            assert_eq!(call_verdict(0x4000_0000 | n, &[40, 1, 0]), EPERM, "x32 {n}");
        }
        // x86_64 has no socketcall: 102 is getuid there, and the arguments play no part.
        assert_eq!(call_verdict(102, &[1, 0x1000]), ALLOW);
        assert_eq!(syscall_name(102), Some("getuid"));
    }

    /// Jump targets of one instruction at `pc`.
    fn targets(pc: usize, i: &BpfInsn) -> Vec<usize> {
        match i.code {
            JA => vec![pc + 1 + i.k as usize],
            JEQ | JGT | JGE | JSET => vec![pc + 1 + usize::from(i.jt), pc + 1 + usize::from(i.jf)],
            _ => vec![],
        }
    }

    const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
        BpfInsn { code, jt, jf, k }
    }

    #[test]
    fn allow_values_code_on_its_own() {
        let mut out = Vec::new();
        emit_allow_values(2, &[7, 9, 11], &mut out);
        assert_eq!(
            out,
            [
                insn(0x20, 0, 0, 32), // A = low word of args[2]
                insn(0x15, 3, 0, 7),  // == 7  -> ALLOW
                insn(0x15, 2, 0, 9),  // == 9  -> ALLOW
                insn(0x15, 1, 0, 11), // == 11 -> ALLOW
                insn(0x06, 0, 0, 0x0005_0001),
                insn(0x06, 0, 0, 0x7fff_0000),
            ]
        );
        for (v, want) in [
            (7u64, ALLOW),
            (9, ALLOW),
            (11, ALLOW),
            (8, EPERM),
            (0, EPERM),
            (11 << 32, EPERM),
        ] {
            assert_eq!(run(&out, &Data::call(0, &[0, 0, v])), Ok(want), "{v}");
        }
        let mut one = Vec::new();
        emit_allow_values(0, &[5], &mut one);
        assert_eq!(
            one,
            [
                insn(0x20, 0, 0, 16),
                insn(0x15, 1, 0, 5),
                insn(0x06, 0, 0, 0x0005_0001),
                insn(0x06, 0, 0, 0x7fff_0000),
            ]
        );
    }

    #[test]
    fn deny_values_and_mask_code_on_their_own() {
        let mut out = Vec::new();
        emit_deny_values(1, &[0x5412, 0x541c], &mut out);
        assert_eq!(
            out,
            [
                insn(0x20, 0, 0, 24),
                insn(0x15, 2, 0, 0x5412),
                insn(0x15, 1, 0, 0x541c),
                insn(0x06, 0, 0, 0x7fff_0000),
                insn(0x06, 0, 0, 0x0005_0001),
            ]
        );
        let mut out = Vec::new();
        emit_mask_rule(3, 0o6000, &mut out);
        assert_eq!(
            out,
            [
                insn(0x20, 0, 0, 40),
                insn(0x45, 0, 1, 0o6000),
                insn(0x06, 0, 0, 0x0005_0001),
                insn(0x06, 0, 0, 0x7fff_0000),
            ]
        );
    }

    #[test]
    fn header_code_is_fixed() {
        let p = compile_x86_64();
        assert_eq!(
            p.instructions()[..8],
            [
                insn(0x20, 0, 0, 4),           // A = arch
                insn(0x15, 1, 0, 0xc000_003e), // x86_64?
                insn(0x06, 0, 0, 0x8000_0000), // no: kill the process
                insn(0x20, 0, 0, 0),           // A = nr
                insn(0x25, 0, 3, 469),         // above the table?
                insn(0x45, 0, 1, 0x4000_0000), // x32 bit?
                insn(0x06, 0, 0, 0x0005_0001), // x32: EPERM
                insn(0x06, 0, 0, 0x0005_0026), // unknown: ENOSYS
            ]
        );
    }

    #[test]
    fn every_jump_stays_in_its_own_block() {
        let p = compile_x86_64();
        let insns = p.instructions();
        // The code of each argument check, emitted alone: its jumps stay inside it.
        let mut rules: Vec<Action> = X86_64_SYSCALLS
            .iter()
            .map(|s| s.2)
            .filter(|a| matches!(a, Check(_)))
            .collect();
        let checks = rules.len();
        rules.dedup();
        let codes: Vec<Vec<BpfInsn>> = rules
            .iter()
            .map(|a| {
                let mut c = Vec::new();
                emit_leaf(*a, &mut c);
                c
            })
            .collect();
        for (a, code) in rules.iter().zip(&codes) {
            assert_eq!(
                code.last().map(|i| i.code),
                Some(RET),
                "{a:?} ends in a return"
            );
            for (pc, i) in code.iter().enumerate() {
                for t in targets(pc, i) {
                    assert!(
                        t < code.len(),
                        "{a:?}: jump from {pc} to {t} leaves its {} instructions",
                        code.len()
                    );
                }
            }
        }
        // Find those blocks in the program: each argument load starts one.
        let mut block = vec![None; insns.len()];
        let mut starts = Vec::new();
        let mut pc = 0;
        while pc < insns.len() {
            let is_arg_load = insns[pc].code == LD_W_ABS && insns[pc].k >= 16;
            if is_arg_load {
                let code = codes
                    .iter()
                    .find(|c| insns[pc..].starts_with(c))
                    .unwrap_or_else(|| panic!("argument load at {pc} starts no known check"));
                for b in &mut block[pc..pc + code.len()] {
                    *b = Some(pc);
                }
                starts.push(pc);
                pc += code.len();
            } else {
                pc += 1;
            }
        }
        assert_eq!(starts.len(), checks, "one block per checked syscall");
        for (pc, i) in insns.iter().enumerate() {
            for t in targets(pc, i) {
                assert!(t < insns.len(), "jump from {pc} to {t} out of bounds");
                match block[pc] {
                    Some(b) => assert_eq!(block[t], Some(b), "jump from {pc} in block {b} to {t}"),
                    None => assert!(
                        block[t].is_none() || starts.contains(&t),
                        "jump from {pc} into the middle of block {:?} at {t}",
                        block[t]
                    ),
                }
            }
        }
    }

    /// Scripted stand-ins for seccomp(2) and prctl(2) that record what they were given.
    struct FakeCalls {
        seccomp: std::result::Result<(), Errno>,
        prctl: std::result::Result<(), Errno>,
        seen: Vec<(&'static str, u16, usize)>,
    }

    impl FakeCalls {
        fn new(
            seccomp: std::result::Result<(), Errno>,
            prctl: std::result::Result<(), Errno>,
        ) -> Self {
            FakeCalls {
                seccomp,
                prctl,
                seen: Vec::new(),
            }
        }
    }

    impl FilterCalls for FakeCalls {
        fn seccomp(&mut self, p: &libc::sock_fprog) -> std::result::Result<(), Errno> {
            self.seen.push(("seccomp", p.len, p.filter as usize));
            self.seccomp
        }
        fn prctl(&mut self, p: &libc::sock_fprog) -> std::result::Result<(), Errno> {
            self.seen.push(("prctl", p.len, p.filter as usize));
            self.prctl
        }
    }

    #[test]
    fn install_hands_the_whole_program_to_seccomp() {
        let p = compile_x86_64();
        let mut f = FakeCalls::new(Ok(()), Err(Errno::EINVAL));
        install_with(&p, &mut f).unwrap();
        let ptr = p.instructions().as_ptr() as usize;
        let len = u16::try_from(p.instructions().len()).unwrap();
        assert_eq!(f.seen, [("seccomp", len, ptr)], "prctl must not be tried");
    }

    #[test]
    fn install_fails_when_seccomp_refuses() {
        let p = compile_x86_64();
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
        let p = compile_x86_64();
        let ptr = p.instructions().as_ptr() as usize;
        let len = u16::try_from(p.instructions().len()).unwrap();
        let mut f = FakeCalls::new(Err(Errno::ENOSYS), Ok(()));
        install_with(&p, &mut f).unwrap();
        assert_eq!(f.seen, [("seccomp", len, ptr), ("prctl", len, ptr)]);
    }

    #[test]
    fn install_fails_when_the_fallback_fails() {
        let p = compile_x86_64();
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
        let p = SeccompProgram {
            insns: vec![stmt(RET, 0x7fff_0000); 65_536],
        };
        let mut f = FakeCalls::new(Ok(()), Ok(()));
        let err = install_with(&p, &mut f).unwrap_err();
        assert!(err.to_string().contains("65536 instructions"), "{err}");
        assert!(f.seen.is_empty());
        let p = SeccompProgram {
            insns: vec![stmt(RET, 0x7fff_0000); 65_535],
        };
        install_with(&p, &mut f).unwrap();
        assert_eq!(f.seen.len(), 1);
        assert_eq!(f.seen[0].1, 65_535);
    }

    proptest! {
        #[test]
        fn every_known_number_is_allow_eperm_or_enosys(n in 0..=MAX_KNOWN_NR, args in any::<[u64; 6]>()) {
            let p = compile_x86_64();
            let d = Data { nr: n, arch: AUDIT_ARCH_X86_64, args };
            let v = run(p.instructions(), &d);
            prop_assert!(matches!(v, Ok(ALLOW | EPERM | ENOSYS)), "{:?}", v);
            prop_assert_eq!(v, Ok(spec(&d)));
        }

        #[test]
        fn program_matches_the_table_everywhere(nr in prop_oneof![0..=MAX_KNOWN_NR + 8, any::<u32>()],
                                                 native in any::<bool>(), arch in any::<u32>(),
                                                 args in any::<[u64; 6]>()) {
            let d = Data { nr, arch: if native { AUDIT_ARCH_X86_64 } else { arch }, args };
            prop_assert_eq!(run(compile_x86_64().instructions(), &d), Ok(spec(&d)));
        }
    }
}
