//! Linux capabilities: names, the kept set a container gets, and the syscalls that enforce it.

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;

/// One Linux capability, numbered as the kernel numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Capability {
    /// `CAP_CHOWN`
    Chown = 0,
    /// `CAP_DAC_OVERRIDE`
    DacOverride = 1,
    /// `CAP_DAC_READ_SEARCH`
    DacReadSearch = 2,
    /// `CAP_FOWNER`
    Fowner = 3,
    /// `CAP_FSETID`
    Fsetid = 4,
    /// `CAP_KILL`
    Kill = 5,
    /// `CAP_SETGID`
    Setgid = 6,
    /// `CAP_SETUID`
    Setuid = 7,
    /// `CAP_SETPCAP`
    Setpcap = 8,
    /// `CAP_LINUX_IMMUTABLE`
    LinuxImmutable = 9,
    /// `CAP_NET_BIND_SERVICE`
    NetBindService = 10,
    /// `CAP_NET_BROADCAST`
    NetBroadcast = 11,
    /// `CAP_NET_ADMIN`
    NetAdmin = 12,
    /// `CAP_NET_RAW`
    NetRaw = 13,
    /// `CAP_IPC_LOCK`
    IpcLock = 14,
    /// `CAP_IPC_OWNER`
    IpcOwner = 15,
    /// `CAP_SYS_MODULE`
    SysModule = 16,
    /// `CAP_SYS_RAWIO`
    SysRawio = 17,
    /// `CAP_SYS_CHROOT`
    SysChroot = 18,
    /// `CAP_SYS_PTRACE`
    SysPtrace = 19,
    /// `CAP_SYS_PACCT`
    SysPacct = 20,
    /// `CAP_SYS_ADMIN`
    SysAdmin = 21,
    /// `CAP_SYS_BOOT`
    SysBoot = 22,
    /// `CAP_SYS_NICE`
    SysNice = 23,
    /// `CAP_SYS_RESOURCE`
    SysResource = 24,
    /// `CAP_SYS_TIME`
    SysTime = 25,
    /// `CAP_SYS_TTY_CONFIG`
    SysTtyConfig = 26,
    /// `CAP_MKNOD`
    Mknod = 27,
    /// `CAP_LEASE`
    Lease = 28,
    /// `CAP_AUDIT_WRITE`
    AuditWrite = 29,
    /// `CAP_AUDIT_CONTROL`
    AuditControl = 30,
    /// `CAP_SETFCAP`
    Setfcap = 31,
    /// `CAP_MAC_OVERRIDE`
    MacOverride = 32,
    /// `CAP_MAC_ADMIN`
    MacAdmin = 33,
    /// `CAP_SYSLOG`
    Syslog = 34,
    /// `CAP_WAKE_ALARM`
    WakeAlarm = 35,
    /// `CAP_BLOCK_SUSPEND`
    BlockSuspend = 36,
    /// `CAP_AUDIT_READ`
    AuditRead = 37,
    /// `CAP_PERFMON`
    Perfmon = 38,
    /// `CAP_BPF`
    Bpf = 39,
    /// `CAP_CHECKPOINT_RESTORE`
    CheckpointRestore = 40,
}

use Capability as C;

/// Every capability this crate knows by name, in kernel order (index == number).
pub const KNOWN_CAPS: &[Capability] = &[
    C::Chown,
    C::DacOverride,
    C::DacReadSearch,
    C::Fowner,
    C::Fsetid,
    C::Kill,
    C::Setgid,
    C::Setuid,
    C::Setpcap,
    C::LinuxImmutable,
    C::NetBindService,
    C::NetBroadcast,
    C::NetAdmin,
    C::NetRaw,
    C::IpcLock,
    C::IpcOwner,
    C::SysModule,
    C::SysRawio,
    C::SysChroot,
    C::SysPtrace,
    C::SysPacct,
    C::SysAdmin,
    C::SysBoot,
    C::SysNice,
    C::SysResource,
    C::SysTime,
    C::SysTtyConfig,
    C::Mknod,
    C::Lease,
    C::AuditWrite,
    C::AuditControl,
    C::Setfcap,
    C::MacOverride,
    C::MacAdmin,
    C::Syslog,
    C::WakeAlarm,
    C::BlockSuspend,
    C::AuditRead,
    C::Perfmon,
    C::Bpf,
    C::CheckpointRestore,
];

/// Kernel names without the `CAP_` prefix, indexed by capability number.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities a container keeps unless told otherwise: the usual container default
/// without `CAP_SETFCAP`, which would let container root write file capabilities that a
/// host process can execute (a caller who wants it adds it back explicitly).
pub const DEFAULT_CAPS: &[Capability] = &[
    C::Chown,
    C::DacOverride,
    C::Fowner,
    C::Fsetid,
    C::Kill,
    C::Setgid,
    C::Setuid,
    C::Setpcap,
    C::NetBindService,
    C::NetRaw,
    C::SysChroot,
    C::Mknod,
    C::AuditWrite,
];

impl Capability {
    /// The kernel number of the capability.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The capability with kernel number `n`, if this crate knows it.
    pub fn from_number(n: u8) -> Option<Capability> {
        KNOWN_CAPS.get(usize::from(n)).copied()
    }

    /// The canonical name, e.g. `CAP_NET_ADMIN`.
    pub fn name(self) -> String {
        format!("CAP_{}", NAMES[usize::from(self.number())])
    }

    /// Parses `NET_ADMIN`, `cap_net_admin`, `Cap_Net_Admin`…; `None` when unknown.
    pub fn parse(name: &str) -> Option<Capability> {
        let bare = strip_cap_prefix(name);
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(bare))
            .and_then(|i| u8::try_from(i).ok())
            .and_then(Capability::from_number)
    }
}

fn strip_cap_prefix(name: &str) -> &str {
    match name.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("CAP_") => &name[4..],
        _ => name,
    }
}

/// A set of capabilities as a 64-bit mask (bit n = capability n).
///
/// Bits above the highest capability this crate names are meaningful: `ALL` sets every
/// bit so that a newer kernel's extra capabilities are kept too; apply masks the set with
/// what the running kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The empty set.
    pub const EMPTY: CapSet = CapSet(0);
    /// Every capability, including ones newer than this crate.
    pub const ALL: CapSet = CapSet(u64::MAX);

    /// The set of the given capabilities.
    pub fn of(caps: &[Capability]) -> CapSet {
        CapSet(caps.iter().fold(0, |m, c| m | bit(*c)))
    }

    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & bit(cap) != 0
    }

    /// Whether the set holds every capability (it came from `ALL`).
    pub fn is_all(self) -> bool {
        self == CapSet::ALL
    }

    /// The known capabilities in the set, in kernel order.
    pub fn known(self) -> impl Iterator<Item = Capability> {
        KNOWN_CAPS
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }

    /// Human list for logs: `ALL`, `none`, or `CHOWN,KILL,…`.
    pub fn describe(self) -> String {
        if self.is_all() {
            return "ALL".into();
        }
        let mut names: Vec<&str> = self
            .known()
            .map(|c| NAMES[usize::from(c.number())])
            .collect();
        let unknown = self.0 & !CapSet::of(KNOWN_CAPS).0;
        let extra;
        if unknown != 0 {
            extra = format!("{unknown:#x}");
            names.push(&extra);
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

fn bit(c: Capability) -> u64 {
    1u64 << c.number()
}

/// A list of capability names as a caller gives it: some capabilities, or every one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapList {
    /// `ALL` was among the names.
    pub all: bool,
    /// The named capabilities.
    pub named: CapSet,
}

/// Parses capability names (`NET_ADMIN`, `cap_net_admin`, `ALL`); an unknown name is a
/// usage error naming it (the caller adds where the list came from).
pub fn parse_cap_list(names: &[String]) -> Result<CapList> {
    let mut list = CapList::default();
    for raw in names {
        let trimmed = raw.trim();
        if strip_cap_prefix(trimmed).eq_ignore_ascii_case("ALL") {
            list.all = true;
            continue;
        }
        let c = Capability::parse(trimmed).ok_or_else(|| {
            Errcode::usage(format!("unknown capability '{raw}'")).with_hint(
                "use a name from capabilities(7) such as NET_ADMIN or CAP_NET_ADMIN, or ALL",
            )
        })?;
        list.named.0 |= bit(c);
    }
    Ok(list)
}

/// Computes the kept set from the defaults and the caller's additions and removals.
///
/// Same rules as the common container CLIs, so that users' habits carry over: adding
/// `ALL` keeps everything except the named removals; removing `ALL` keeps only the named
/// additions; otherwise the defaults minus the removals plus the additions (an addition
/// wins over a removal of the same capability, since it is the more specific request).
pub fn kept_set(add: &CapList, drop: &CapList) -> CapSet {
    CapSet(if add.all {
        CapSet::ALL.0 & !drop.named.0
    } else if drop.all {
        add.named.0
    } else {
        (CapSet::of(DEFAULT_CAPS).0 & !drop.named.0) | add.named.0
    })
}

// ---------------------------------------------------------------------------------------
// apply

/// The highest capability number the running kernel knows.
///
/// Read from procfs; when that is not mounted, probed with `PR_CAPBSET_READ`, which fails
/// with EINVAL exactly for numbers the kernel does not know. Read once per process, and a
/// process forked after the first read has it from its parent's memory: a container's
/// process that asks in its last steps before exec costs no file read there.
pub fn kernel_last_cap() -> Result<u8> {
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    if let Some(n) = LAST.get() {
        return Ok(*n);
    }
    let n = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| parse_last_cap(&s))
        .or_else(|| last_cap_by(bounding_knows))
        .ok_or_else(|| {
            Errcode::setup("cannot find the kernel's highest capability number")
                .with_hint("is /proc mounted?")
        })?;
    Ok(*LAST.get_or_init(|| n))
}

/// The number in `/proc/sys/kernel/cap_last_cap`, if it is one a 64-bit set can hold.
pub fn parse_last_cap(text: &str) -> Option<u8> {
    text.trim().parse::<u8>().ok().filter(|n| *n < 64)
}

/// The highest number for which `known` holds, asking 0, 1, 2… until it first fails.
pub fn last_cap_by(known: impl FnMut(&u8) -> bool) -> Option<u8> {
    (0u8..64).take_while(known).last()
}

/// Whether the kernel knows capability `n` (`PR_CAPBSET_READ` fails only for unknown ones).
pub fn bounding_knows(n: &u8) -> bool {
    // SAFETY: PR_CAPBSET_READ only reads the calling thread's bounding set.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(*n), 0, 0, 0) >= 0 }
}

/// The mask of every capability the kernel knows, given its highest number.
pub fn valid_mask(last_cap: u8) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

fn cap_label(n: u8) -> String {
    Capability::from_number(n).map_or_else(|| format!("capability {n}"), Capability::name)
}

/// Clears every capability not in `keep` from the calling thread's bounding set.
pub fn drop_bounding(keep: CapSet, last_cap: u8) -> Result<()> {
    for n in 0..=last_cap {
        if keep.0 & (1u64 << n) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches only kernel state.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
        if r != 0 {
            return Err(Errcode::sys(
                format!("drop {} from the bounding set", cap_label(n)),
                Errno::last(),
            )
            .with_hint("crabcan must hold CAP_SETPCAP when it drops capabilities"));
        }
    }
    Ok(())
}

/// Empties the calling thread's ambient set.
pub fn clear_ambient() -> Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    ambient_cleared(Errno::result(r).map(drop))
}

/// Judges the answer to `PR_CAP_AMBIENT_CLEAR_ALL`. Kernels before 4.3 have no ambient
/// set at all and answer EINVAL: nothing to clear, nothing kept.
pub fn ambient_cleared(r: std::result::Result<(), Errno>) -> Result<()> {
    match r {
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(Errcode::sys("clear the ambient capability set", e)),
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's (effective, permitted, inheritable) sets.
pub fn current_sets() -> Result<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, both live and writable here.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if r != 0 {
        return Err(Errcode::sys(
            "read the capability sets (capget)",
            Errno::last(),
        ));
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Sets the calling thread's (effective, permitted, inheritable) sets, then reads them
/// back so a silently ignored bit cannot pass unnoticed.
pub fn set_sets(want: (u64, u64, u64)) -> Result<()> {
    let (eff, prm, inh) = want;
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
    let data = [false, true].map(|hi| CapData {
        effective: half(eff, hi),
        permitted: half(prm, hi),
        inheritable: half(inh, hi),
    });
    // SAFETY: version 3 takes a header and two data structs, both live for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if r != 0 {
        return Err(Errcode::sys(
            format!(
                "set the capability sets to effective {}, permitted {}, inheritable {} (capset)",
                CapSet(eff).describe(),
                CapSet(prm).describe(),
                CapSet(inh).describe()
            ),
            Errno::last(),
        ));
    }
    check_sets(current_sets()?, want)
}

/// Fails unless the (effective, permitted, inheritable) sets read back are the ones asked.
pub fn check_sets(got: (u64, u64, u64), want: (u64, u64, u64)) -> Result<()> {
    if got != want {
        let (eff, prm, inh) = got;
        return Err(Errcode::setup(format!(
            "capability sets are not what was asked: effective {eff:#x}, permitted {prm:#x}, \
             inheritable {inh:#x}, wanted {:#x}, {:#x}, {:#x}",
            want.0, want.1, want.2
        )));
    }
    Ok(())
}

/// Raises every capability of `set` (masked by the kernel's) in the ambient set; each
/// must be permitted and inheritable already.
pub fn raise_ambient(set: u64, last_cap: u8) -> Result<()> {
    for n in 0..=last_cap {
        if set & (1u64 << n) == 0 {
            continue;
        }
        // SAFETY: PR_CAP_AMBIENT_RAISE takes integers only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(n),
                0,
                0,
            )
        };
        if r != 0 {
            return Err(Errcode::sys(
                format!("raise {} in the ambient set", cap_label(n)),
                Errno::last(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The kept set from names, as a front end computes it.
    fn kept(add: &[String], drop: &[String]) -> Result<CapSet> {
        Ok(kept_set(&parse_cap_list(add)?, &parse_cap_list(drop)?))
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_and_numbers_agree() {
        for (i, c) in KNOWN_CAPS.iter().enumerate() {
            assert_eq!(usize::from(c.number()), i);
            assert_eq!(Capability::parse(&c.name()), Some(*c));
        }
        assert_eq!(Capability::SysAdmin.name(), "CAP_SYS_ADMIN");
        assert_eq!(Capability::CheckpointRestore.number(), 40);
    }

    #[test]
    fn parse_accepts_prefix_and_any_case() {
        for n in [
            "NET_ADMIN",
            "CAP_NET_ADMIN",
            "cap_net_admin",
            "Net_Admin",
            "cAp_NeT_aDmIn",
        ] {
            assert_eq!(Capability::parse(n), Some(Capability::NetAdmin), "{n}");
        }
        for n in [
            "",
            "CAP_",
            "NETADMIN",
            "CAP_CAP_NET_ADMIN",
            "NET_ADMIN ",
            "ALL",
            "42",
        ] {
            assert_eq!(Capability::parse(n), None, "{n:?}");
        }
    }

    #[test]
    fn defaults_without_flags() {
        assert_eq!(kept(&[], &[]).unwrap(), CapSet::of(DEFAULT_CAPS));
        assert_eq!(DEFAULT_CAPS.len(), 13);
        // Written out bit by bit: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5,
        // SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18,
        // MKNOD 27, AUDIT_WRITE 29; not SETFCAP 31.
        assert_eq!(CapSet::of(DEFAULT_CAPS), CapSet(0x2804_25fb));
        assert!(!CapSet::of(DEFAULT_CAPS).contains(C::Setfcap));
    }

    #[test]
    fn setfcap_comes_back_only_when_asked() {
        let k = kept(&s(&["SETFCAP"]), &[]).unwrap();
        assert_eq!(k, CapSet(0xa804_25fb));
        let k = kept(&s(&["cap_setfcap"]), &s(&["SETFCAP"])).unwrap();
        assert!(k.contains(C::Setfcap), "an add wins over a drop");
        assert!(!kept(&[], &s(&["MKNOD"])).unwrap().contains(C::Setfcap));
    }

    #[test]
    fn add_and_drop_combine() {
        let k = kept(&s(&["sys_admin"]), &s(&["CAP_NET_RAW", "mknod"])).unwrap();
        assert!(k.contains(C::SysAdmin));
        assert!(!k.contains(C::NetRaw));
        assert!(!k.contains(C::Mknod));
        assert!(k.contains(C::Chown));
    }

    #[test]
    fn drop_all_then_add_keeps_only_the_adds() {
        let k = kept(&s(&["NET_BIND_SERVICE"]), &s(&["all"])).unwrap();
        assert_eq!(k, CapSet::of(&[C::NetBindService]));
        assert_eq!(kept(&[], &s(&["ALL"])).unwrap(), CapSet::EMPTY);
    }

    #[test]
    fn add_all_keeps_everything_but_the_drops() {
        assert!(kept(&s(&["ALL"]), &[]).unwrap().is_all());
        let k = kept(&s(&["ALL"]), &s(&["SYS_ADMIN"])).unwrap();
        assert!(!k.contains(C::SysAdmin));
        assert!(k.contains(C::Bpf));
        assert!(
            k.0 & (1 << 50) != 0,
            "a newer kernel's capabilities are kept"
        );
    }

    #[test]
    fn add_wins_over_drop_of_the_same_capability() {
        let k = kept(&s(&["KILL"]), &s(&["kill"])).unwrap();
        assert!(k.contains(C::Kill));
    }

    #[test]
    fn unknown_names_are_usage_errors_naming_the_value() {
        let e = kept(&s(&["CAP_FLY"]), &[]).unwrap_err();
        assert_eq!(e.kind(), crabcan_errors::Kind::Usage);
        assert!(e.to_string().contains("'CAP_FLY'"), "{e}");
        // The library's own words: the front end says which flag or field it came from.
        assert!(!e.to_string().contains("--"), "{e}");
        let e = kept(&[], &s(&["NET_ADMIN", ""])).unwrap_err();
        assert!(e.to_string().starts_with("unknown capability ''"), "{e}");
    }

    #[test]
    fn a_set_of_repeated_capabilities_holds_each_once() {
        assert_eq!(CapSet::of(&[C::Kill, C::Kill]), CapSet(1 << 5));
        assert_eq!(
            CapSet::of(&[C::Chown, C::Kill, C::Chown]),
            CapSet(0b10_0001)
        );
        assert_eq!(CapSet::of(&[]), CapSet::EMPTY);
    }

    #[test]
    fn ambient_clearing_tolerates_only_a_kernel_without_the_set() {
        assert!(ambient_cleared(Ok(())).is_ok());
        assert!(ambient_cleared(Err(Errno::EINVAL)).is_ok());
        for e in [Errno::EPERM, Errno::ENOSYS, Errno::EFAULT] {
            let err = ambient_cleared(Err(e)).unwrap_err();
            assert_eq!(err.errno(), Some(e));
            assert!(err.to_string().contains("ambient"), "{err}");
        }
    }

    #[test]
    fn labels_name_known_and_unknown_numbers() {
        assert_eq!(cap_label(21), "CAP_SYS_ADMIN");
        assert_eq!(cap_label(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(cap_label(41), "capability 41");
    }

    #[test]
    fn describe_is_compact() {
        assert_eq!(CapSet::ALL.describe(), "ALL");
        assert_eq!(CapSet::EMPTY.describe(), "none");
        assert_eq!(CapSet::of(&[C::Chown, C::Kill]).describe(), "CHOWN,KILL");
    }

    #[test]
    fn last_cap_from_procfs_text() {
        assert_eq!(parse_last_cap("40\n"), Some(40));
        assert_eq!(parse_last_cap(" 0 "), Some(0));
        assert_eq!(parse_last_cap("63"), Some(63));
        assert_eq!(parse_last_cap("64"), None);
        assert_eq!(parse_last_cap("255"), None);
        assert_eq!(parse_last_cap("-1"), None);
        assert_eq!(parse_last_cap(""), None);
        assert_eq!(parse_last_cap("forty"), None);
    }

    #[test]
    fn last_cap_by_asking_stops_at_the_first_unknown() {
        assert_eq!(last_cap_by(|n| *n <= 40), Some(40));
        assert_eq!(last_cap_by(|n| *n != 7), Some(6));
        assert_eq!(last_cap_by(|_| true), Some(63));
        assert_eq!(last_cap_by(|_| false), None);
        let mut asked = Vec::new();
        last_cap_by(|n| {
            asked.push(*n);
            *n < 2
        });
        assert_eq!(asked, [0, 1, 2]);
    }

    #[test]
    fn read_back_sets_must_match() {
        let k = 0x2804_25fb;
        assert!(check_sets((k, k, 0), (k, k, 0)).is_ok());
        assert!(check_sets((0, 0, 0), (0, 0, 0)).is_ok());
        assert!(check_sets((0, k, 4), (0, k, 4)).is_ok());
        for bad in [
            (k, k, 1),
            (k, 0, 0),
            (0, k, 0),
            (k | 1 << 40, k, 0),
            (k, k | 1 << 40, 0),
        ] {
            let e = check_sets(bad, (k, k, 0)).unwrap_err();
            assert!(
                e.to_string().contains("wanted 0x280425fb, 0x280425fb, 0x0"),
                "{e}"
            );
        }
    }

    #[test]
    fn valid_mask_covers_last_cap() {
        assert_eq!(valid_mask(0), 1);
        assert_eq!(valid_mask(40), (1u64 << 41) - 1);
        assert_eq!(valid_mask(63), u64::MAX);
    }

    fn case_mix(name: String, flips: Vec<bool>, prefix: bool) -> String {
        let base = if prefix { format!("cap_{name}") } else { name };
        base.chars()
            .zip(flips.into_iter().chain(std::iter::repeat(false)))
            .map(|(ch, up)| {
                if up {
                    ch.to_ascii_uppercase()
                } else {
                    ch.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_spelling_of_a_known_name_parses(i in 0usize..41, flips in proptest::collection::vec(any::<bool>(), 0..30), prefix in any::<bool>()) {
            let spelled = case_mix(NAMES[i].to_string(), flips, prefix);
            prop_assert_eq!(Capability::parse(&spelled).map(|c| usize::from(c.number())), Some(i));
        }

        #[test]
        fn garbage_is_rejected_or_a_real_name(raw in "[A-Za-z_0-9 ]{0,24}") {
            match kept(std::slice::from_ref(&raw), &[]) {
                Ok(_) => {
                    let bare = strip_cap_prefix(raw.trim());
                    prop_assert!(bare.eq_ignore_ascii_case("ALL") || Capability::parse(raw.trim()).is_some());
                }
                Err(e) => {
                    prop_assert_eq!(e.kind(), crabcan_errors::Kind::Usage);
                    prop_assert!(e.to_string().contains(&raw));
                }
            }
        }

        #[test]
        fn set_algebra_matches_the_rules(adds in proptest::collection::vec(0usize..41, 0..6),
                                         drops in proptest::collection::vec(0usize..41, 0..6),
                                         add_all in any::<bool>(), drop_all in any::<bool>()) {
            let mut a: Vec<String> = adds.iter().map(|i| NAMES[*i].to_string()).collect();
            let mut d: Vec<String> = drops.iter().map(|i| format!("CAP_{}", NAMES[*i])).collect();
            if add_all { a.push("all".into()); }
            if drop_all { d.push("ALL".into()); }
            let k = kept(&a, &d).unwrap();
            for c in KNOWN_CAPS {
                let i = usize::from(c.number());
                let expected = if add_all {
                    !drops.contains(&i)
                } else if drop_all {
                    adds.contains(&i)
                } else {
                    adds.contains(&i) || (DEFAULT_CAPS.contains(c) && !drops.contains(&i))
                };
                prop_assert_eq!(k.contains(*c), expected, "{:?}", c);
            }
            // Only ALL may reach past the named capabilities.
            prop_assert_eq!(k.0 >> 41 != 0, add_all);
        }
    }
}
