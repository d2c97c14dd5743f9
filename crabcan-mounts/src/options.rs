//! Mount option words (`ro`, `nosuid`, `rbind`, `rslave`, …) as runc reads them, turned into
//! the flags, attributes and data string of a mount.

use crabcan_errors::{Errcode, Result};
use std::fmt;

/// A mount's propagation type, applied by a separate call after the mount (the kernel does
/// not take it together with other flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Propagation {
    /// Private, shared, slave or unbindable.
    pub kind: PropagationKind,
    /// Applied to every mount below too (the `r…` words).
    pub recursive: bool,
}

/// The four propagation types of mount(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropagationKind {
    /// Receives and sends no mount events.
    Private,
    /// Peer of the mounts it was copied from: events go both ways.
    Shared,
    /// Receives events from its master, sends none.
    Slave,
    /// Private, and refuses to be bind-mounted.
    Unbindable,
}

impl Propagation {
    /// `rprivate`, the default of a container's root.
    pub const RPRIVATE: Propagation = Propagation {
        kind: PropagationKind::Private,
        recursive: true,
    };

    /// Reads one propagation word (`private`, `rprivate`, `shared`, `rshared`, `slave`,
    /// `rslave`, `unbindable`, `runbindable`).
    pub fn parse(word: &str) -> Option<Propagation> {
        let (recursive, base) = match word.strip_prefix('r') {
            Some(rest) if rest != "o" && rest != "w" => (true, rest),
            _ => (false, word),
        };
        let kind = match base {
            "private" => PropagationKind::Private,
            "shared" => PropagationKind::Shared,
            "slave" => PropagationKind::Slave,
            "unbindable" => PropagationKind::Unbindable,
            _ => return None,
        };
        Some(Propagation { kind, recursive })
    }

    /// The mount(2) flags that set it.
    pub fn ms_flags(self) -> libc::c_ulong {
        let kind = match self.kind {
            PropagationKind::Private => libc::MS_PRIVATE,
            PropagationKind::Shared => libc::MS_SHARED,
            PropagationKind::Slave => libc::MS_SLAVE,
            PropagationKind::Unbindable => libc::MS_UNBINDABLE,
        };
        if self.recursive {
            kind | libc::MS_REC
        } else {
            kind
        }
    }
}

impl fmt::Display for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PropagationKind::Private => "private",
            PropagationKind::Shared => "shared",
            PropagationKind::Slave => "slave",
            PropagationKind::Unbindable => "unbindable",
        };
        write!(f, "{}{kind}", if self.recursive { "r" } else { "" })
    }
}

/// Whether a mount is a bind, and of the tree below its source too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// `bind`: the source mount alone.
    Single,
    /// `rbind`: the source with every mount below it.
    Recursive,
}

/// The options of one mount, parsed from runc's option words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MountOptions {
    /// mount(2) `MS_*` flags to set (`ro`, `nosuid`, `nodev`, `noexec`, the atime family, …).
    pub flags: libc::c_ulong,
    /// Flags the words asked to clear (`rw`, `suid`, `dev`, `exec`, `atime`, …): a fresh
    /// mount has them clear anyway; a bind keeps its source's (a remount never clears them,
    /// so flags the kernel locks stay).
    pub clear: libc::c_ulong,
    /// `bind` or `rbind`.
    pub bind: Option<Bind>,
    /// The propagation word, if any (the last one given).
    pub propagation: Option<Propagation>,
    /// `MOUNT_ATTR_*` attributes to set on the whole tree (`rro`, `rnosuid`, …).
    pub rec_set: u64,
    /// `MOUNT_ATTR_*` attributes to clear on the whole tree (`rrw`, `rsuid`, …).
    pub rec_clear: u64,
    /// Every other word, in order: the filesystem's own options (`mode=755`, `size=64k`).
    pub data: Vec<String>,
    /// `tmpcopyup` (runc's extension, for tmpfs): the fresh tmpfs starts with a copy of
    /// what the directory it covers held.
    pub copy_up: bool,
}

/// What one flag word does.
enum Word {
    Set(libc::c_ulong),
    Clear(libc::c_ulong),
    RecSet(u64),
    RecClear(u64),
}

/// The atime modes: setting one clears the others, so the last word wins.
const ATIME_MODES: libc::c_ulong = libc::MS_RELATIME | libc::MS_NOATIME | libc::MS_STRICTATIME;

fn word(w: &str) -> Option<Word> {
    use Word::*;
    Some(match w {
        "defaults" => Set(0),
        "ro" => Set(libc::MS_RDONLY),
        "rw" => Clear(libc::MS_RDONLY),
        "nosuid" => Set(libc::MS_NOSUID),
        "suid" => Clear(libc::MS_NOSUID),
        "nodev" => Set(libc::MS_NODEV),
        "dev" => Clear(libc::MS_NODEV),
        "noexec" => Set(libc::MS_NOEXEC),
        "exec" => Clear(libc::MS_NOEXEC),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "mand" => Set(libc::MS_MANDLOCK),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "silent" => Set(libc::MS_SILENT),
        "loud" => Clear(libc::MS_SILENT),
        "relatime" => Set(libc::MS_RELATIME),
        "norelatime" => Clear(libc::MS_RELATIME),
        "strictatime" => Set(libc::MS_STRICTATIME),
        "nostrictatime" => Clear(libc::MS_STRICTATIME),
        "noatime" => Set(libc::MS_NOATIME),
        "atime" => Clear(libc::MS_NOATIME),
        "nodiratime" => Set(libc::MS_NODIRATIME),
        "diratime" => Clear(libc::MS_NODIRATIME),
        "lazytime" => Set(libc::MS_LAZYTIME),
        "nolazytime" => Clear(libc::MS_LAZYTIME),
        "iversion" => Set(libc::MS_I_VERSION),
        "noiversion" => Clear(libc::MS_I_VERSION),
        "nosymfollow" => Set(libc::MS_NOSYMFOLLOW),
        "symfollow" => Clear(libc::MS_NOSYMFOLLOW),
        "rro" => RecSet(libc::MOUNT_ATTR_RDONLY),
        "rrw" => RecClear(libc::MOUNT_ATTR_RDONLY),
        "rnosuid" => RecSet(libc::MOUNT_ATTR_NOSUID),
        "rsuid" => RecClear(libc::MOUNT_ATTR_NOSUID),
        "rnodev" => RecSet(libc::MOUNT_ATTR_NODEV),
        "rdev" => RecClear(libc::MOUNT_ATTR_NODEV),
        "rnoexec" => RecSet(libc::MOUNT_ATTR_NOEXEC),
        "rexec" => RecClear(libc::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => RecSet(libc::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => RecClear(libc::MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => RecSet(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => RecClear(libc::MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// The recursive atime words: each replaces the whole atime mode of the tree.
fn rec_atime(w: &str) -> Option<u64> {
    Some(match w {
        "rrelatime" => libc::MOUNT_ATTR_RELATIME,
        "rnoatime" => libc::MOUNT_ATTR_NOATIME,
        "rstrictatime" => libc::MOUNT_ATTR_STRICTATIME,
        _ => return None,
    })
}

impl MountOptions {
    /// Reads runc's option words in order. A later word overrides an earlier one it
    /// conflicts with (`ro,rw` is read-write; `relatime,strictatime` is strictatime); a word
    /// that is no flag, bind or propagation word is kept, in order, as filesystem data.
    /// Fails only on an empty word or one with a NUL byte (it could not reach the kernel).
    pub fn parse(words: &[String]) -> Result<MountOptions> {
        let mut o = MountOptions::default();
        for w in words {
            if w.is_empty() {
                return Err(Errcode::usage("empty mount option"));
            }
            if w.contains('\0') {
                return Err(Errcode::usage(format!(
                    "mount option '{}' contains a NUL byte",
                    w.escape_debug()
                )));
            }
            if let Some(p) = Propagation::parse(w) {
                o.propagation = Some(p);
                continue;
            }
            match w.as_str() {
                "tmpcopyup" => {
                    o.copy_up = true;
                    continue;
                }
                "bind" => {
                    o.bind.get_or_insert(Bind::Single);
                    continue;
                }
                "rbind" => {
                    o.bind = Some(Bind::Recursive);
                    continue;
                }
                _ => {}
            }
            if let Some(mode) = rec_atime(w) {
                o.rec_clear |= libc::MOUNT_ATTR__ATIME;
                o.rec_set = (o.rec_set & !libc::MOUNT_ATTR__ATIME) | mode;
                continue;
            }
            match word(w) {
                Some(Word::Set(f)) => {
                    if f & ATIME_MODES != 0 {
                        o.flags &= !ATIME_MODES;
                        o.clear |= ATIME_MODES & !f;
                    }
                    o.flags |= f;
                    o.clear &= !f;
                }
                Some(Word::Clear(f)) => {
                    o.flags &= !f;
                    o.clear |= f;
                }
                Some(Word::RecSet(a)) => {
                    o.rec_set |= a;
                    o.rec_clear &= !a;
                }
                Some(Word::RecClear(a)) => {
                    o.rec_set &= !a;
                    o.rec_clear |= a;
                }
                None => o.data.push(w.clone()),
            }
        }
        Ok(o)
    }

    /// Whether `MS_RDONLY` is asked for.
    pub fn read_only(&self) -> bool {
        self.flags & libc::MS_RDONLY != 0
    }

    /// The data string for mount(2): the passed-through words joined with commas.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// The `MOUNT_ATTR_*` attributes `(set, clear)` that give a bind the asked flags on its
    /// top mount, as a remount would: only flags to set are applied (a bind keeps what its
    /// source had otherwise, locked flags included); an atime word replaces the atime mode.
    pub fn bind_attrs(&self) -> (u64, u64) {
        let mut set = 0;
        let mut clear = 0;
        for (ms, attr) in [
            (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
            (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
            (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
            (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
            (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
            (libc::MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
        ] {
            if self.flags & ms != 0 {
                set |= attr;
            }
        }
        let atime = if self.flags & libc::MS_NOATIME != 0 {
            Some(libc::MOUNT_ATTR_NOATIME)
        } else if self.flags & libc::MS_STRICTATIME != 0 {
            Some(libc::MOUNT_ATTR_STRICTATIME)
        } else if self.flags & libc::MS_RELATIME != 0 {
            Some(libc::MOUNT_ATTR_RELATIME)
        } else {
            None
        };
        if let Some(a) = atime {
            clear |= libc::MOUNT_ATTR__ATIME;
            set |= a;
        }
        (set, clear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(words: &[&str]) -> MountOptions {
        MountOptions::parse(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn every_flag_word() {
        for (w, f) in [
            ("ro", libc::MS_RDONLY),
            ("nosuid", libc::MS_NOSUID),
            ("nodev", libc::MS_NODEV),
            ("noexec", libc::MS_NOEXEC),
            ("sync", libc::MS_SYNCHRONOUS),
            ("dirsync", libc::MS_DIRSYNC),
            ("mand", libc::MS_MANDLOCK),
            ("silent", libc::MS_SILENT),
            ("relatime", libc::MS_RELATIME),
            ("strictatime", libc::MS_STRICTATIME),
            ("noatime", libc::MS_NOATIME),
            ("nodiratime", libc::MS_NODIRATIME),
            ("lazytime", libc::MS_LAZYTIME),
            ("iversion", libc::MS_I_VERSION),
            ("nosymfollow", libc::MS_NOSYMFOLLOW),
        ] {
            let o = parse(&[w]);
            assert_eq!(o.flags, f, "{w}");
            assert!(o.data.is_empty() && o.bind.is_none() && o.propagation.is_none());
        }
        for (w, f) in [
            ("rw", libc::MS_RDONLY),
            ("suid", libc::MS_NOSUID),
            ("dev", libc::MS_NODEV),
            ("exec", libc::MS_NOEXEC),
            ("async", libc::MS_SYNCHRONOUS),
            ("nomand", libc::MS_MANDLOCK),
            ("loud", libc::MS_SILENT),
            ("norelatime", libc::MS_RELATIME),
            ("nostrictatime", libc::MS_STRICTATIME),
            ("atime", libc::MS_NOATIME),
            ("diratime", libc::MS_NODIRATIME),
            ("nolazytime", libc::MS_LAZYTIME),
            ("noiversion", libc::MS_I_VERSION),
            ("symfollow", libc::MS_NOSYMFOLLOW),
        ] {
            let o = parse(&[w]);
            assert_eq!((o.flags, o.clear), (0, f), "{w}");
        }
        assert_eq!(parse(&["defaults"]), MountOptions::default());
        // runc's copy-up word is an option of ours, never data for the kernel (tmpfs
        // refuses unknown words with EINVAL).
        let o = parse(&["nosuid", "tmpcopyup", "mode=755"]);
        assert!(o.copy_up);
        assert_eq!(o.data, ["mode=755"]);
        assert!(!parse(&["nosuid"]).copy_up);
    }

    #[test]
    fn recursive_attribute_words() {
        let o = parse(&["rro", "rnosuid", "rnodev", "rnoexec", "rnodiratime"]);
        assert_eq!(
            o.rec_set,
            libc::MOUNT_ATTR_RDONLY
                | libc::MOUNT_ATTR_NOSUID
                | libc::MOUNT_ATTR_NODEV
                | libc::MOUNT_ATTR_NOEXEC
                | libc::MOUNT_ATTR_NODIRATIME
        );
        let o = parse(&["rro", "rrw", "rexec"]);
        assert_eq!(o.rec_set, 0);
        assert_eq!(
            o.rec_clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOEXEC
        );
        let o = parse(&["rnoatime", "rstrictatime"]);
        assert_eq!(o.rec_set, libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(o.rec_clear, libc::MOUNT_ATTR__ATIME);
        assert_eq!(o.flags, 0);
    }

    #[test]
    fn bind_and_propagation_words() {
        assert_eq!(parse(&["bind"]).bind, Some(Bind::Single));
        assert_eq!(parse(&["rbind"]).bind, Some(Bind::Recursive));
        // As in runc, a later "bind" does not take the recursion back.
        assert_eq!(parse(&["rbind", "bind"]).bind, Some(Bind::Recursive));
        assert_eq!(parse(&["bind", "rbind"]).bind, Some(Bind::Recursive));
        for (w, kind, recursive, ms) in [
            ("private", PropagationKind::Private, false, libc::MS_PRIVATE),
            ("rprivate", PropagationKind::Private, true, libc::MS_PRIVATE),
            ("shared", PropagationKind::Shared, false, libc::MS_SHARED),
            ("rshared", PropagationKind::Shared, true, libc::MS_SHARED),
            ("slave", PropagationKind::Slave, false, libc::MS_SLAVE),
            ("rslave", PropagationKind::Slave, true, libc::MS_SLAVE),
            (
                "unbindable",
                PropagationKind::Unbindable,
                false,
                libc::MS_UNBINDABLE,
            ),
            (
                "runbindable",
                PropagationKind::Unbindable,
                true,
                libc::MS_UNBINDABLE,
            ),
        ] {
            let p = parse(&[w]).propagation.unwrap();
            assert_eq!(p, Propagation { kind, recursive }, "{w}");
            assert_eq!(p.to_string(), w);
            let rec = if recursive { libc::MS_REC } else { 0 };
            assert_eq!(p.ms_flags(), ms | rec, "{w}");
        }
        assert_eq!(
            parse(&["rslave", "private"]).propagation,
            Propagation::parse("private")
        );
        assert_eq!(Propagation::parse("ro"), None);
        assert_eq!(Propagation::parse("rw"), None);
        assert_eq!(Propagation::parse("rbind"), None);
    }

    #[test]
    fn last_word_wins() {
        assert_eq!(parse(&["ro", "rw"]).flags, 0);
        assert!(parse(&["rw", "ro"]).read_only());
        assert_eq!(parse(&["nosuid", "suid"]).clear, libc::MS_NOSUID);
        let o = parse(&["relatime", "strictatime"]);
        assert_eq!(o.flags, libc::MS_STRICTATIME);
        let o = parse(&["strictatime", "noatime"]);
        assert_eq!(o.flags, libc::MS_NOATIME);
        let o = parse(&["noatime", "atime"]);
        assert_eq!(o.flags, 0);
    }

    #[test]
    fn data_words_pass_through_in_order() {
        let o = parse(&["nosuid", "mode=755", "size=65536k", "ro", "newinstance"]);
        assert_eq!(o.data, ["mode=755", "size=65536k", "newinstance"]);
        assert_eq!(
            o.data_string().as_deref(),
            Some("mode=755,size=65536k,newinstance")
        );
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(parse(&["ro"]).data_string(), None);
        // Near misses of flag words are data, not flags.
        assert_eq!(
            parse(&["RO", "no-exec", "rbinds"]).data,
            ["RO", "no-exec", "rbinds"]
        );
    }

    #[test]
    fn bad_words_are_refused() {
        assert!(MountOptions::parse(&[String::new()]).is_err());
        let e = MountOptions::parse(&["a\0b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn bind_attributes_of_a_remount() {
        let o = parse(&["rbind", "ro", "nosuid", "nodev", "noexec", "rw", "suid"]);
        let (set, clear) = o.bind_attrs();
        assert_eq!(set, libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC);
        assert_eq!(clear, 0, "clear words never unlock a bind's flags");
        let (set, clear) = parse(&["bind", "noatime"]).bind_attrs();
        assert_eq!(
            (set, clear),
            (libc::MOUNT_ATTR_NOATIME, libc::MOUNT_ATTR__ATIME)
        );
        let (set, clear) = parse(&["bind", "relatime"]).bind_attrs();
        assert_eq!(
            (set, clear),
            (libc::MOUNT_ATTR_RELATIME, libc::MOUNT_ATTR__ATIME)
        );
    }

    const WORDS: &[&str] = &[
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "relatime",
        "norelatime",
        "strictatime",
        "atime",
        "noatime",
        "nodiratime",
        "bind",
        "rbind",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
        "rro",
        "rrw",
        "mode=755",
        "size=1k",
        "uid=5",
    ];

    proptest! {
        #[test]
        fn unknown_words_become_data(words in proptest::collection::vec("[a-z=0-9,]{1,12}", 0..8)) {
            let o = MountOptions::parse(&words).unwrap();
            let unknown: Vec<&String> = words
                .iter()
                .filter(|w| {
                    word(w).is_none()
                        && rec_atime(w).is_none()
                        && Propagation::parse(w).is_none()
                        && *w != "bind"
                        && *w != "rbind"
                })
                .collect();
            prop_assert_eq!(o.data.iter().collect::<Vec<_>>(), unknown);
        }

        #[test]
        fn last_conflicting_word_wins(picks in proptest::collection::vec(0..WORDS.len(), 0..12)) {
            let words: Vec<String> = picks.iter().map(|&i| WORDS[i].to_string()).collect();
            let o = MountOptions::parse(&words).unwrap();
            let last = |a: &str, b: &str| words.iter().rposition(|w| w == a).max(words.iter().rposition(|w| w == b)).map(|i| words[i].as_str());
            prop_assert_eq!(o.read_only(), last("ro", "rw") == Some("ro"));
            prop_assert_eq!(o.flags & libc::MS_NOSUID != 0, last("nosuid", "suid") == Some("nosuid"));
            prop_assert_eq!(o.flags & libc::MS_NOEXEC != 0, last("noexec", "exec") == Some("noexec"));
            prop_assert_eq!(o.flags & libc::MS_NODEV != 0, last("nodev", "dev") == Some("nodev"));
            prop_assert_eq!(o.flags & o.clear, 0, "never both set and cleared");
            prop_assert!((o.flags & ATIME_MODES).count_ones() <= 1, "one atime mode");
            let prop = words.iter().rev().find_map(|w| Propagation::parse(w));
            prop_assert_eq!(o.propagation, prop);
            let data: Vec<&String> = words.iter().filter(|w| w.contains('=')).collect();
            prop_assert_eq!(o.data.iter().collect::<Vec<_>>(), data);
        }
    }
}
