//! The one error type of crabcan, its one-line messages, and the exit codes they map to.
//!
//! Exit codes follow the docker/podman convention:
//! the command's own status (128+N when killed by signal N), 125 when crabcan itself fails,
//! 126 when the command exists but cannot be executed, 127 when it is not found.
//!
//! An [`Errcode`] can also be encoded to bytes and decoded again, so that the container's
//! child process can report a setup failure to its parent over a socket.

use std::fmt;

/// crabcan itself failed: bad arguments or a setup step.
pub const EXIT_CRABCAN: i32 = 125;
/// The command was found but could not be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found inside the container.
pub const EXIT_NOT_FOUND: i32 = 127;

/// What kind of failure an [`Errcode`] is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input from the user (arguments, paths, values).
    Usage,
    /// A setup step failed (a syscall, a file, the kernel refused).
    Setup,
    /// The command is not in the container.
    NotFound,
    /// The command is there but cannot be executed.
    NotExecutable,
    /// What the caller named (a container) does not exist: callers that tolerate an
    /// absent object test for this kind rather than for a message's text.
    Missing,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Usage => 1,
            Kind::Setup => 2,
            Kind::NotFound => 3,
            Kind::NotExecutable => 4,
            Kind::Missing => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Usage,
            2 => Kind::Setup,
            3 => Kind::NotFound,
            4 => Kind::NotExecutable,
            5 => Kind::Missing,
            _ => return None,
        })
    }
}

/// A crabcan failure: what failed, on which path or value, and why.
///
/// Displayed as one line, e.g.
/// `cannot bind-mount /srv/data to /data: No such file or directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errcode {
    kind: Kind,
    msg: String,
    errno: Option<i32>,
    hint: Option<String>,
}

/// Shorthand for results carrying an [`Errcode`].
pub type Result<T> = std::result::Result<T, Errcode>;

impl Errcode {
    /// Bad input: `msg` says which flag or value and why it is refused.
    pub fn usage(msg: impl Into<String>) -> Errcode {
        Errcode {
            kind: Kind::Usage,
            msg: msg.into(),
            errno: None,
            hint: None,
        }
    }

    /// A failed system call: `what` names the operation and its path ("mount proc on /proc").
    pub fn sys(what: impl Into<String>, errno: nix::errno::Errno) -> Errcode {
        Errcode {
            kind: Kind::Setup,
            msg: format!("cannot {}", what.into()),
            errno: Some(errno as i32),
            hint: None,
        }
    }

    /// A setup failure that is not a single errno (a malformed file, a missing feature).
    pub fn setup(msg: impl Into<String>) -> Errcode {
        Errcode {
            kind: Kind::Setup,
            msg: msg.into(),
            errno: None,
            hint: None,
        }
    }

    /// The command `cmd` was not found in the container.
    pub fn not_found(cmd: &str) -> Errcode {
        Errcode {
            kind: Kind::NotFound,
            msg: format!("{cmd}: command not found in the container"),
            errno: None,
            hint: None,
        }
    }

    /// What the caller named does not exist; `msg` says what ("container does not exist").
    /// It fails like bad input (exit code 125) but can be told apart by [`Errcode::is_missing`].
    pub fn missing(msg: impl Into<String>) -> Errcode {
        Errcode {
            kind: Kind::Missing,
            msg: msg.into(),
            errno: None,
            hint: None,
        }
    }

    /// The command `cmd` exists but `execve` refused it with `errno`.
    pub fn not_executable(cmd: &str, errno: nix::errno::Errno) -> Errcode {
        Errcode {
            kind: Kind::NotExecutable,
            msg: format!("cannot execute {cmd}"),
            errno: Some(errno as i32),
            hint: None,
        }
    }

    /// Adds a hint shown after the message ("… (hint: …)").
    pub fn with_hint(mut self, hint: impl Into<String>) -> Errcode {
        self.hint = Some(hint.into());
        self
    }

    /// Prefixes the message with context ("in --add /a:/b: …").
    pub fn context(mut self, ctx: impl fmt::Display) -> Errcode {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the failure is that the named object does not exist ([`Kind::Missing`]),
    /// whatever context was added to its message.
    pub fn is_missing(&self) -> bool {
        self.kind == Kind::Missing
    }

    /// The errno behind the failure, if one.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        self.errno.map(nix::errno::Errno::from_raw)
    }

    /// The process exit code this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Usage | Kind::Setup | Kind::Missing => EXIT_CRABCAN,
            Kind::NotFound => EXIT_NOT_FOUND,
            Kind::NotExecutable => EXIT_CANNOT_EXEC,
        }
    }

    /// Encodes the error for the parent/child channel.
    /// Messages and hints longer than a few KiB (a huge path echoed back) are clipped, so
    /// that the packet always fits the parent's buffer.
    pub fn encode(&self) -> Vec<u8> {
        let msg = clipped(&self.msg, MAX_WIRE_TEXT);
        let hint = clipped(self.hint.as_deref().unwrap_or(""), MAX_WIRE_TEXT);
        let mut out = Vec::with_capacity(14 + msg.len() + hint.len());
        out.push(self.kind.to_byte());
        out.push(u8::from(self.errno.is_some()));
        out.extend_from_slice(&self.errno.unwrap_or(0).to_le_bytes());
        for s in [&*msg, &*hint] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// Decodes what [`Errcode::encode`] produced; `None` for anything malformed.
    pub fn decode(buf: &[u8]) -> Option<Errcode> {
        let kind = Kind::from_byte(*buf.first()?)?;
        let has_errno = match *buf.get(1)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let errno = i32::from_le_bytes(buf.get(2..6)?.try_into().ok()?);
        let mut rest = buf.get(6..)?;
        let mut strings = [String::new(), String::new()];
        for s in &mut strings {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let bytes = rest.get(4..4usize.checked_add(len)?)?;
            *s = String::from_utf8(bytes.to_vec()).ok()?;
            rest = &rest[4 + len..];
        }
        if !rest.is_empty() {
            return None;
        }
        let [msg, hint] = strings;
        Some(Errcode {
            kind,
            msg,
            errno: has_errno.then_some(errno),
            hint: (!hint.is_empty()).then_some(hint),
        })
    }
}

impl fmt::Display for Errcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_line(f, &self.msg)?;
        if let Some(e) = self.errno {
            write!(f, ": {}", nix::errno::Errno::from_raw(e).desc())?;
        }
        if let Some(h) = &self.hint {
            f.write_str(" (hint: ")?;
            one_line(f, h)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Writes `s` with control characters escaped, so that input echoed in a message (a
/// hostname with a newline in it) can never break the one-line rule.
fn one_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

/// Longest message or hint sent over the channel: the parent reads one packet of 8 KiB.
const MAX_WIRE_TEXT: usize = 3000;

/// `s` cut to at most `max` bytes at a character boundary, marked when cut.
fn clipped(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

impl std::error::Error for Errcode {}

/// Extension to turn a `nix` result into an [`Errcode`] naming the operation.
pub trait SysContext<T> {
    /// On error, `cannot {what}: {errno}`; `what` is built only on failure.
    fn sys_ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, nix::errno::Errno> {
    fn sys_ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Errcode::sys(what(), e))
    }
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn sys_ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| match e.raw_os_error() {
            Some(n) => Errcode::sys(what(), nix::errno::Errno::from_raw(n)),
            // Not from a syscall (bad UTF-8, a short read): its own text says why.
            None => Errcode::setup(format!("cannot {}: {e}", what().into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use proptest::prelude::*;

    #[test]
    fn exit_codes_follow_the_convention() {
        assert_eq!(Errcode::usage("x").exit_code(), 125);
        assert_eq!(Errcode::sys("mount", Errno::EPERM).exit_code(), 125);
        assert_eq!(Errcode::setup("x").exit_code(), 125);
        assert_eq!(Errcode::not_found("ls").exit_code(), 127);
        assert_eq!(
            Errcode::missing("container does not exist").exit_code(),
            125
        );
        assert_eq!(
            Errcode::not_executable("ls", Errno::EACCES).exit_code(),
            126
        );
    }

    #[test]
    fn a_missing_object_is_its_own_kind_and_keeps_its_words() {
        let e = Errcode::missing("container does not exist");
        assert!(e.is_missing());
        assert_eq!(e.kind(), Kind::Missing);
        assert_eq!(e.exit_code(), 125);
        assert_eq!(e.to_string(), "container does not exist");
        // Context changes the text, not the kind.
        let e = e.context("delete c1");
        assert!(e.is_missing());
        assert_eq!(e.to_string(), "delete c1: container does not exist");
        // The kind survives the parent/child channel.
        assert!(Errcode::decode(&e.encode()).unwrap().is_missing());
        // Nothing else is taken for it, not even the same words of another kind, nor a
        // command that is not found.
        for other in [
            Errcode::usage("container does not exist"),
            Errcode::setup("container does not exist"),
            Errcode::sys("open /run/crabcan/c1", Errno::ENOENT),
            Errcode::not_found("ls"),
            Errcode::not_executable("ls", Errno::EACCES),
        ] {
            assert!(!other.is_missing(), "{other}");
        }
    }

    #[test]
    fn message_says_what_where_and_why_on_one_line() {
        let e = Errcode::sys("bind-mount /srv/data to /data", Errno::ENOENT)
            .with_hint("create /srv/data first");
        let s = e.to_string();
        assert_eq!(
            s,
            "cannot bind-mount /srv/data to /data: No such file or directory (hint: create /srv/data first)"
        );
        assert!(!s.contains('\n'));
    }

    #[test]
    fn context_prefixes_the_message() {
        let e = Errcode::usage("no ':' in it").context("invalid --add 'abc'");
        assert_eq!(e.to_string(), "invalid --add 'abc': no ':' in it");
    }

    #[test]
    fn io_errors_keep_their_errno() {
        let io = std::io::Error::from_raw_os_error(libc_enotdir());
        let e = Err::<(), _>(io).sys_ctx(|| "open /x").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOTDIR));
    }

    fn libc_enotdir() -> i32 {
        Errno::ENOTDIR as i32
    }

    #[test]
    fn control_characters_never_break_the_line() {
        let e = Errcode::usage("invalid --hostname 'a\nb'").with_hint("x\ty");
        let s = e.to_string();
        assert!(!s.contains('\n') && !s.contains('\t'), "{s}");
        assert!(s.contains("a\\nb"), "{s}");
    }

    #[test]
    fn huge_messages_fit_the_channel() {
        let e = Errcode::sys(format!("chdir to {}", "é".repeat(5000)), Errno::ENOENT);
        let wire = e.encode();
        assert!(wire.len() < 8192, "{} bytes", wire.len());
        let back = Errcode::decode(&wire).unwrap();
        assert!(back.to_string().starts_with("cannot chdir to é"));
        assert_eq!(back.errno(), Some(Errno::ENOENT));
    }

    /// Runs `f` on another thread and fails if it does not finish within a few seconds, so
    /// that a loop that never ends fails the test instead of hanging it.
    fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("did not finish within 5 s (a loop that never ends?)")
    }

    #[test]
    fn clipping_backs_off_to_a_character_boundary() {
        // '€' is three bytes (E2 82 AC): a cut at 2 or 3 bytes falls inside it.
        let cut = within_seconds(|| {
            [1, 2, 3, 4, 5, 6]
                .map(|max| clipped("a€b", max).into_owned())
                .to_vec()
        });
        assert_eq!(cut, ["a…", "a…", "a…", "a€…", "a€b", "a€b"]);
    }

    #[test]
    fn a_three_byte_character_across_the_wire_limit_is_dropped_whole() {
        // 2999 ASCII bytes, then '€' in bytes 2999..3002: the 3000-byte limit cuts into it.
        let msg = format!("{}€tail", "x".repeat(2999));
        let wire = within_seconds(move || Errcode::setup(msg).encode());
        let back = Errcode::decode(&wire).expect("decodes");
        assert_eq!(back.to_string(), format!("{}…", "x".repeat(2999)));
        // Exactly at the limit nothing is cut; one byte over, the message is marked.
        let at = Errcode::setup("y".repeat(3000)).encode();
        assert_eq!(Errcode::decode(&at).unwrap().to_string(), "y".repeat(3000));
        let over = Errcode::setup("y".repeat(3001)).encode();
        assert_eq!(
            Errcode::decode(&over).unwrap().to_string(),
            format!("{}…", "y".repeat(3000))
        );
    }

    #[test]
    fn io_errors_without_errno_keep_their_text() {
        let io = std::io::Error::other("stream did not contain valid UTF-8");
        let e = Err::<(), _>(io).sys_ctx(|| "read /x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read /x: stream did not contain valid UTF-8"
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(Errcode::decode(&[]), None);
        assert_eq!(Errcode::decode(&[9, 0, 0, 0, 0, 0]), None);
        let mut ok = Errcode::usage("abc").encode();
        ok.push(0);
        assert_eq!(Errcode::decode(&ok), None, "trailing bytes");
        let ok = Errcode::usage("abc").encode();
        assert_eq!(Errcode::decode(&ok[..ok.len() - 1]), None, "truncated");
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(kind in 1u8..=5, errno in proptest::option::of(1i32..200),
                                     msg in ".*", hint in proptest::option::of(".+")) {
            let e = Errcode { kind: Kind::from_byte(kind).unwrap(), msg, errno, hint };
            prop_assert_eq!(Errcode::decode(&e.encode()), Some(e));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Errcode::decode(&bytes);
        }
    }
}
