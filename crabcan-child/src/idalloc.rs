//! Host id ranges for root's containers: each running container gets 65536 host ids that
//! no other running container has, so that root inside is an unprivileged, unshared id
//! outside.
//!
//! Where the ranges come from: the subordinate ranges of a dedicated user named `crabcan`
//! in `/etc/subuid` and `/etc/subgid` when it has them (cut into slots of 65536), else a
//! built-in pool of [`POOL_SLOTS`] slots from host id [`POOL_BASE`] (3221225472, far above
//! the ids that distributions give to users and to other tools' default ranges).
//!
//! How a slot is held: a file `<dir>/crabcan-ids-<uid base>` locked with `flock`, in a
//! directory that is always there and only root writes (`/run` for crabcan run). The lock
//! lives exactly as long as an open file description of it: crabcan's, its container
//! init's, and a guardian's after a SIGKILL, which removes the file. The first slot whose
//! file is not locked is taken; a file left by a crash is simply taken again.
//!
//! No directory of their own: a lease made it and removed it again once empty, on every
//! start that ran alone. On a disk filesystem (`/run` is no tmpfs on every host) the two
//! directories cost ten times the file: 0.3–0.4 ms against 35–40 µs per start, measured.

use crate::idmap::{HostRanges, SubIds, parse_subids};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use std::path::{Path, PathBuf};

/// First host id of the built-in pool.
pub const POOL_BASE: u32 = 0xC000_0000;
/// Number of 65536-id slots in the built-in pool.
pub const POOL_SLOTS: u32 = 4096;
/// Ids per container.
const SLOT: u32 = crate::idmap::ROOT_RANGE;
/// The user whose subordinate ranges, when it has some, replace the built-in pool.
const POOL_USER: &str = "crabcan";

/// One slot of the pool: the first host uid and gid of a container's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// First host uid.
    pub uid: u32,
    /// First host gid.
    pub gid: u32,
}

/// A pool of slots, tried in order: the k-th (from 0) starts at host uid `first.uid + k·65536`
/// and gid `first.gid + k·65536`. A value, not a list: the built-in pool has 4096 slots,
/// and a start takes the first free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    first: Slot,
    count: u32,
}

impl Pool {
    /// A pool of no slot (every allocation from it fails).
    pub const EMPTY: Pool = Pool {
        first: Slot { uid: 0, gid: 0 },
        count: 0,
    };

    /// How many slots the pool has.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the pool has no slot.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The slots, in the order they are tried.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.count).map(|k| Slot {
            uid: self.first.uid + k * SLOT,
            gid: self.first.gid + k * SLOT,
        })
    }

    /// Every host id any slot of the pool may give a container, as inclusive (first, last)
    /// ranges: uids, then gids.
    pub fn host_ranges(&self) -> (HostRanges, HostRanges) {
        if self.count == 0 {
            return (Vec::new(), Vec::new());
        }
        let last = |first: u32| first + (self.count * SLOT - 1);
        (
            vec![(self.first.uid, last(self.first.uid))],
            vec![(self.first.gid, last(self.first.gid))],
        )
    }
}

/// The pool cut from the dedicated user's subordinate ranges (as many whole slots as both
/// hold, each ending below `u32::MAX`, which means "no id"), or the built-in pool.
pub fn pool_slots(subids: Option<(SubIds, SubIds)>) -> Pool {
    let Some((u, g)) = subids else {
        return Pool {
            first: Slot {
                uid: POOL_BASE,
                gid: POOL_BASE,
            },
            count: POOL_SLOTS,
        };
    };
    // Slots that end at or below u32::MAX - 1, from a start.
    let room = |start: u32| (u32::MAX - start) / SLOT;
    let count = (u.count.min(g.count) / SLOT)
        .min(room(u.start))
        .min(room(g.start));
    Pool {
        first: Slot {
            uid: u.start,
            gid: g.start,
        },
        count,
    }
}

/// This host's pool: the dedicated user's ranges when `/etc/subuid` and `/etc/subgid` name
/// it, else the built-in pool. Read once per run and passed to [`allocate_ids`].
pub fn host_pool() -> Pool {
    pool_slots(dedicated_ranges())
}

/// The dedicated user's ranges, when both files name it.
fn dedicated_ranges() -> Option<(SubIds, SubIds)> {
    let read = |p| std::fs::read_to_string(p).ok();
    // No numeric id matches: the user is found by name only.
    let u = parse_subids(&read("/etc/subuid")?, Some(POOL_USER), u32::MAX)?;
    let g = parse_subids(&read("/etc/subgid")?, Some(POOL_USER), u32::MAX)?;
    Some((u, g))
}

/// A held slot; [`IdLease::release`] (or drop) gives it back.
#[derive(Debug)]
pub struct IdLease {
    slot: Slot,
    path: PathBuf,
    lock: Option<Flock<std::fs::File>>,
}

/// The name of a slot's lease file before the slot's first host uid.
pub const LEASE_PREFIX: &str = "crabcan-ids-";

/// Takes a free slot, recording it in `dir`, which must exist: a directory that only root
/// writes, as what is in it decides which host ids a container gets. A slot whose file in
/// `legacy` (where an older crabcan recorded its slots: `/run/crabcan/#ids/<uid base>`) is
/// locked is skipped: a container an older crabcan started still holds it.
pub fn allocate_ids(dir: &Path, legacy: Option<&Path>, slots: &Pool) -> Result<IdLease> {
    for slot in slots.slots() {
        let path = dir.join(format!("{LEASE_PREFIX}{}", slot.uid));
        // A file unlinked by its releaser between our open and our lock is no lock at
        // all: try the same slot again then.
        for _ in 0..8 {
            match try_slot(dir, &path)? {
                Try::Taken(lock) => {
                    let lease = IdLease {
                        slot,
                        path,
                        lock: Some(lock),
                    };
                    if legacy.is_some_and(|d| held_in(d, slot.uid)) {
                        lease.release();
                        break;
                    }
                    return Ok(lease);
                }
                Try::Busy => break,
                Try::Again => continue,
            }
        }
    }
    Err(Errcode::setup(format!(
        "no free host id range for the container: all {} ranges recorded in {} are in use",
        slots.len(),
        dir.display()
    ))
    .with_hint("wait for a container to end, or choose one with --userns-base"))
}

/// Whether the file of slot `uid` in the older layout's directory `dir` is locked (usually
/// there is no such directory: one failed lookup). What cannot be looked at, or was
/// replaced while looked at, counts as held.
fn held_in(dir: &Path, uid: u32) -> bool {
    let path = dir.join(uid.to_string());
    let fd = match nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return false,
        Err(_) => return true,
    };
    let Ok(lock) = Flock::lock(std::fs::File::from(fd), FlockArg::LockSharedNonblock) else {
        return true;
    };
    // Unlocked: free, unless its holder's release unlinked it between our open and our
    // lock and another older run has made and locked a new file under the name since.
    match (nix::sys::stat::fstat(&*lock), nix::sys::stat::lstat(&path)) {
        (Ok(ours), Ok(now)) => ours.st_dev != now.st_dev || ours.st_ino != now.st_ino,
        (_, Err(Errno::ENOENT)) => false,
        _ => true,
    }
}

enum Try {
    Taken(Flock<std::fs::File>),
    Busy,
    Again,
}

fn try_slot(dir: &Path, path: &Path) -> Result<Try> {
    let what = || format!("record the container's id range in {}", path.display());
    let file = match nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) => {
            return Err(Errcode::setup(format!(
                "cannot {}: {} {}",
                what(),
                dir.display(),
                if e == Errno::ENOENT {
                    "does not exist"
                } else {
                    "is not a directory"
                }
            ))
            .with_hint(format!(
                "crabcan keeps root's host id ranges in {} (a tmpfs on distributions); or \
                 choose the ids with --userns-base",
                dir.display()
            )));
        }
        Err(e @ (Errno::EACCES | Errno::EROFS)) => {
            return Err(Errcode::sys(what(), e).with_hint(format!(
                "crabcan keeps root's host id ranges in {}, which must be writable; or choose \
                 the ids with --userns-base",
                dir.display()
            )));
        }
        Err(e) => return Err(Errcode::sys(what(), e)),
    };
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(Try::Busy),
        Err((_, e)) => return Err(Errcode::sys(what(), e)),
    };
    let held = nix::sys::stat::fstat(&*lock).sys_ctx(what)?;
    match nix::sys::stat::lstat(path) {
        Ok(now) if now.st_ino == held.st_ino && now.st_dev == held.st_dev => {}
        Ok(_) | Err(Errno::ENOENT) => return Ok(Try::Again),
        Err(e) => return Err(Errcode::sys(what(), e)),
    }
    // A file left with a holder in it: a container whose crabcan and guardian were both
    // killed (a service manager stopping its unit), run without crabcan's init, so that
    // no process of it holds the lock. Its ids are in use for as long as it lives.
    if held.st_size > 0 {
        if holder_lives(&lock) {
            return Ok(Try::Busy);
        }
        lock.set_len(0)
            .map_err(|e| Errcode::setup(format!("cannot {}: {e}", what())))?;
    }
    Ok(Try::Taken(lock))
}

/// Whether the process a lease file names still runs. A name from another boot is stale; a
/// name from another pid or time namespace cannot be judged from here (the pid and the
/// start time read differently there) and counts as running, as does a file that cannot be
/// read or parsed: the safe side is a slot skipped.
fn holder_lives(file: &std::fs::File) -> bool {
    use std::io::Read;
    let mut text = String::new();
    if file.take(256).read_to_string(&mut text).is_err() {
        return true;
    }
    let Some(holder) = Holder::parse(&text) else {
        return true;
    };
    let here = Holder::context();
    if holder.boot != here.boot {
        return false;
    }
    if (holder.pid_ns, holder.time_ns) != (here.pid_ns, here.time_ns) {
        return true;
    }
    i32::try_from(holder.pid)
        .ok()
        .and_then(crate::start_time)
        .is_some_and(|t| t == holder.start)
}

/// The process a lease file names, and where its pid and start time were read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Holder {
    pid: u64,
    start: u64,
    /// The inodes of the pid and time namespaces the numbers were read in (0: none).
    pid_ns: u64,
    time_ns: u64,
    /// The kernel's boot id.
    boot: String,
}

impl Holder {
    /// This process's namespaces and boot (the pid and start time left at 0).
    fn context() -> Holder {
        let ino = |p: &str| nix::sys::stat::stat(p).map_or(0, |st| st.st_ino);
        Holder {
            pid_ns: ino("/proc/self/ns/pid"),
            time_ns: ino("/proc/self/ns/time"),
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|b| b.trim().to_string())
                .unwrap_or_default(),
            ..Holder::default()
        }
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.pid, self.start, self.pid_ns, self.time_ns, self.boot
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut w = text.split_whitespace();
        let mut num = || w.next()?.parse::<u64>().ok();
        let (pid, start, pid_ns, time_ns) = (num()?, num()?, num()?, num()?);
        let boot = w.next()?.to_string();
        w.next().is_none().then_some(Holder {
            pid,
            start,
            pid_ns,
            time_ns,
            boot,
        })
    }
}

impl IdLease {
    /// The slot held.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// Names the container's first process `pid` in the lease file, for a container whose
    /// processes do not hold the lease themselves (run without crabcan's init, its command
    /// execs as PID 1 and closes its copy): should crabcan and its guardian both be killed
    /// while it runs, a later run skips the slot for as long as that process lives.
    pub fn record_holder(&self, pid: i32) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let what = || format!("record the container's process in {}", self.path.display());
        let start = crate::start_time(pid)
            .ok_or_else(|| Errcode::setup(format!("cannot {}: it has ended", what())))?;
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        let holder = Holder {
            pid: u64::try_from(pid).unwrap_or(0),
            start,
            ..Holder::context()
        };
        lock.write_all_at(holder.line().as_bytes(), 0)
            .map_err(|e| Errcode::setup(format!("cannot {}: {e}", what())))
    }

    /// Gives the slot back: removes its file (while still holding the lock, so nobody can
    /// take a file that is about to vanish), then the lock.
    pub fn release(mut self) {
        self.remove_now();
    }

    /// [`IdLease::release`] in place (for a guardian that cannot give up ownership). Removes
    /// the file only while it is the one this lease opened: a guardian's copy of a lease
    /// that crabcan released (and another run took again, under the same name) before it
    /// was killed must not remove the other run's record. The descriptor held keeps the
    /// inode, so its number cannot have gone to the new file.
    pub fn remove_now(&mut self) {
        if let Some(lock) = self.lock.take() {
            let ours = match (
                nix::sys::stat::fstat(&*lock),
                nix::sys::stat::lstat(&self.path),
            ) {
                (Ok(held), Ok(now)) => held.st_dev == now.st_dev && held.st_ino == now.st_ino,
                _ => false,
            };
            if ours {
                let _ = std::fs::remove_file(&self.path);
            }
            drop(lock);
        }
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        self.remove_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_pool_is_high_and_disjoint() {
        let p = pool_slots(None);
        assert_eq!(p.len(), 4096);
        let s: Vec<Slot> = p.slots().collect();
        assert_eq!(
            s[0],
            Slot {
                uid: 3_221_225_472,
                gid: 3_221_225_472
            }
        );
        assert_eq!(s[1].uid, 3_221_225_472 + 65_536);
        assert_eq!(s[4095].uid, 3_221_225_472 + 4095 * 65_536);
        assert!(s[4095].uid.checked_add(65_535).is_some());
        assert_eq!(
            p.host_ranges(),
            (
                vec![(3_221_225_472, 3_221_225_472 + 4096 * 65_536 - 1)],
                vec![(3_221_225_472, 3_221_225_472 + 4096 * 65_536 - 1)]
            )
        );
    }

    #[test]
    fn dedicated_ranges_are_cut_into_slots() {
        let u = SubIds {
            start: 100_000,
            count: 3 * 65_536 + 5,
        };
        let g = SubIds {
            start: 500_000,
            count: 2 * 65_536,
        };
        let p = pool_slots(Some((u, g)));
        assert_eq!(
            p.host_ranges(),
            (
                vec![(100_000, 100_000 + 2 * 65_536 - 1)],
                vec![(500_000, 500_000 + 2 * 65_536 - 1)]
            )
        );
        assert_eq!(
            p.slots().collect::<Vec<_>>(),
            [
                Slot {
                    uid: 100_000,
                    gid: 500_000
                },
                Slot {
                    uid: 165_536,
                    gid: 565_536
                }
            ]
        );
        let tiny = SubIds {
            start: 1,
            count: 65_535,
        };
        assert!(pool_slots(Some((tiny, tiny))).is_empty());
        assert_eq!(
            pool_slots(Some((tiny, tiny))).host_ranges(),
            (vec![], vec![])
        );
        let top = SubIds {
            start: u32::MAX - 65_535,
            count: 65_536,
        };
        assert!(
            pool_slots(Some((top, top))).is_empty(),
            "a range past the largest id"
        );
        // The last slot that fits ends at u32::MAX - 1 exactly.
        let edge = SubIds {
            start: u32::MAX - 2 * 65_536,
            count: 5 * 65_536,
        };
        let p = pool_slots(Some((edge, edge)));
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.host_ranges().0,
            vec![(u32::MAX - 2 * 65_536, u32::MAX - 1)]
        );
        let fits = SubIds {
            start: u32::MAX - 65_536,
            count: 65_536,
        };
        assert_eq!(pool_slots(Some((fits, fits))).len(), 1);
    }

    /// A scratch directory under the workspace's target/ (never /tmp), removed even when an
    /// assertion fails.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(name)
                .join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// The names in it.
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Starts and ends on four threads at once: no two leases held at the same time share a
    /// slot (a release unlinks a file another start may have opened and not locked yet), and
    /// no start fails for it.
    #[test]
    fn concurrent_leases_never_share_a_slot() {
        let dir = Scratch::new("unit-idalloc-race");
        let pool = pool_slots(None);
        let held = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (dir, held) = (dir.0.clone(), held.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let lease = allocate_ids(&dir, None, &pool)?;
                        let uid = lease.slot().uid;
                        assert!(held.lock().unwrap().insert(uid), "slot {uid} held twice");
                        assert!(held.lock().unwrap().remove(&uid));
                        lease.release();
                    }
                    Ok::<(), Errcode>(())
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap().unwrap();
        }
        assert_eq!(dir.names(), Vec::<String>::new(), "left behind");
    }

    #[test]
    fn two_leases_never_share_a_slot_and_release_cleans_up() {
        let dir = Scratch::new("unit-idalloc");
        // The built-in pool, whatever this host's subordinate ranges say.
        let pool = pool_slots(None);
        let a = allocate_ids(&dir.0, None, &pool).unwrap();
        let b = allocate_ids(&dir.0, None, &pool).unwrap();
        assert_ne!(a.slot(), b.slot());
        assert_eq!(
            dir.names(),
            [
                format!("{LEASE_PREFIX}{POOL_BASE}"),
                format!("{LEASE_PREFIX}{}", POOL_BASE + SLOT)
            ]
        );
        let a_slot = a.slot();
        a.release();
        // The freed slot is taken again before any later one.
        let c = allocate_ids(&dir.0, None, &pool).unwrap();
        assert_eq!(c.slot(), a_slot);
        b.release();
        c.release();
        assert_eq!(dir.names(), Vec::<String>::new(), "a lease file left");
        // A stale, unlocked file (crabcan was SIGKILLed with no guardian) is reused.
        let stale = dir.0.join(format!("{LEASE_PREFIX}{POOL_BASE}"));
        std::fs::write(&stale, "").unwrap();
        let d = allocate_ids(&dir.0, None, &pool).unwrap();
        assert_eq!(d.slot().uid, POOL_BASE);
        d.release();
        assert!(!stale.exists());
    }

    /// The guardian's copy of a lease that crabcan released before it was killed removes
    /// nothing: the name may be another run's record by then.
    #[test]
    fn a_lease_removes_only_the_file_it_opened() {
        let dir = Scratch::new("unit-idalloc-own");
        let pool = pool_slots(None);
        let a = allocate_ids(&dir.0, None, &pool).unwrap();
        let name = format!("{LEASE_PREFIX}{POOL_BASE}");
        // Released by another copy of it, then taken by another run under the same name.
        std::fs::remove_file(dir.0.join(&name)).unwrap();
        std::fs::write(dir.0.join(&name), "").unwrap();
        a.release();
        assert_eq!(dir.names(), [name], "another run's record was removed");
    }

    /// A slot whose file an older crabcan holds locked in its own directory is skipped; one
    /// it left unlocked (its container ended) is taken.
    #[test]
    fn a_slot_an_older_crabcan_holds_is_skipped() {
        let dir = Scratch::new("unit-idalloc-legacy");
        let legacy = dir.0.join("old");
        std::fs::create_dir(&legacy).unwrap();
        let pool = pool_slots(None);
        let old = std::fs::File::create(legacy.join(POOL_BASE.to_string())).unwrap();
        let held = Flock::lock(old, FlockArg::LockExclusiveNonblock).unwrap();
        let a = allocate_ids(&dir.0, Some(&legacy), &pool).unwrap();
        assert_eq!(
            a.slot().uid,
            POOL_BASE + SLOT,
            "a slot held by an older crabcan"
        );
        assert_eq!(
            dir.names(),
            [
                format!("{LEASE_PREFIX}{}", POOL_BASE + SLOT),
                "old".to_string()
            ]
        );
        a.release();
        drop(held);
        let b = allocate_ids(&dir.0, Some(&legacy), &pool).unwrap();
        assert_eq!(b.slot().uid, POOL_BASE);
        b.release();
    }

    /// A lease directory that is missing, a dangling symlink or a file fails at once, saying
    /// so, and nothing is made through it.
    #[test]
    fn a_lease_directory_that_is_no_directory_fails_clearly() {
        let base = Scratch::new("unit-idalloc-notdir");
        let pool = pool_slots(None);
        let missing = base.0.join("missing");
        let link = base.0.join("link");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        let file = base.0.join("file");
        std::fs::write(&file, "").unwrap();
        for dir in [&missing, &link, &file] {
            let e = allocate_ids(dir, None, &pool)
                .map(|l| l.slot())
                .expect_err("a lease in no directory")
                .to_string();
            // A dangling symlink leads nowhere: missing too.
            let want = if *dir == file {
                "is not a directory"
            } else {
                "does not exist"
            };
            assert!(
                e.contains(&*dir.to_string_lossy()) && e.contains(want),
                "{e}"
            );
        }
        assert!(!missing.exists(), "made through the symlink");
        assert_eq!(base.names(), ["file", "link"]);
    }

    /// A container run without crabcan's init holds no lease itself: should crabcan and its
    /// guardian both be killed while it runs (a service manager stopping their unit), the
    /// lock goes with them. The slot is still skipped for as long as the process the lease
    /// file names lives, and taken again (the name cleared) once it is gone.
    #[test]
    fn a_slot_whose_recorded_process_lives_is_skipped_after_its_holders_died() {
        let dir = Scratch::new("unit-idalloc-holder");
        let pool = pool_slots(None);
        let mut container = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut lease = allocate_ids(&dir.0, None, &pool).unwrap();
        let slot = lease.slot();
        lease.record_holder(container.id() as i32).unwrap();
        // crabcan and the guardian killed: the lock goes, the file stays.
        drop(lease.lock.take());
        drop(lease);
        let next = allocate_ids(&dir.0, None, &pool).unwrap();
        assert_ne!(
            next.slot(),
            slot,
            "a slot in use by a live container was given out"
        );
        next.release();
        container.kill().unwrap();
        container.wait().unwrap();
        let again = allocate_ids(&dir.0, None, &pool).unwrap();
        assert_eq!(
            again.slot(),
            slot,
            "the slot stays taken after its process ended"
        );
        let file = dir.0.join(format!("{LEASE_PREFIX}{}", slot.uid));
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            0,
            "the old name stayed"
        );
        again.release();
        assert_eq!(dir.names(), Vec::<String>::new());
    }

    /// A name read in another boot is stale (the slot is free); one read in another pid or
    /// time namespace cannot be judged here, and a file that cannot be parsed neither: the
    /// slot is skipped.
    #[test]
    fn a_lease_name_from_elsewhere_is_judged_on_the_safe_side() {
        let dir = Scratch::new("unit-idalloc-elsewhere");
        let pool = pool_slots(None);
        let first = pool.slots().next().unwrap();
        let file = dir.0.join(format!("{LEASE_PREFIX}{}", first.uid));
        let me = std::process::id();
        let here = Holder {
            pid: u64::from(me),
            start: crate::start_time(me as i32).unwrap(),
            ..Holder::context()
        };
        assert_eq!(Holder::parse(&here.line()), Some(here.clone()));
        let taken = |text: &str| {
            std::fs::write(&file, text).unwrap();
            let lease = allocate_ids(&dir.0, None, &pool).unwrap();
            let got = lease.slot() == first;
            lease.release();
            let _ = std::fs::remove_file(&file);
            got
        };
        // This very process, named as a crabcan here would: the slot is in use.
        assert!(!taken(&here.line()));
        let other_boot = Holder {
            boot: "00000000-0000-0000-0000-000000000000".into(),
            ..here.clone()
        };
        assert!(
            taken(&other_boot.line()),
            "a name from another boot kept the slot"
        );
        let other_ns = Holder {
            pid_ns: here.pid_ns + 1,
            pid: 1,
            start: 1,
            ..Holder::context()
        };
        assert!(
            !taken(&other_ns.line()),
            "a name from another pid namespace was judged"
        );
        assert!(
            !taken("not a holder\n"),
            "an unparseable name was taken for free"
        );
        assert_eq!(dir.names(), Vec::<String>::new());
    }
}
