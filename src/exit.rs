//! The exit-code table from DESIGN.md, in one place. Scripts branch on these
//! numbers, so they are public API: change them only together with the docs.

/// Process exit status of lockrun itself (the child's own status passes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went well (also: the child exited 0).
    Success,
    /// The child's own exit code, passed through unchanged.
    Child(u8),
    /// The child died of signal N: 128+N, as shells report it.
    ChildSignal(i32),
    /// `--max-time` ran out and the child was stopped (as timeout(1) does).
    MaxTime,
    /// Bad arguments: name, URL, duration, missing command (EX_USAGE).
    Usage,
    /// The backend is unreachable or failing; the command was not run (EX_UNAVAILABLE).
    Unavailable,
    /// Internal error (EX_SOFTWARE).
    Software,
    /// The lock could not be had: busy with `--no-wait`, or `--wait` ran out
    /// (EX_TEMPFAIL, changeable with `-E`).
    Conflict(u8),
    /// The lock was lost while the child ran; the child was stopped.
    LockLost,
    /// The command ran, but the lock could not be released and does not
    /// expire by itself: it is left behind (the message says how to clear it).
    ReleaseFailed,
    /// The backend refused our credentials or the lock directory is not ours (EX_NOPERM).
    NoPermission,
    /// The command was found but could not be executed (as shells do).
    CannotExecute,
    /// The command was not found (as shells do).
    NotFound,
    /// A nested lockrun's environment says an ancestor holds the lock, but
    /// the backend does not confirm it: not waiting for itself (EX_CONFIG).
    NotReentrant,
    /// `release NAME` (without `--force`): no keeper of ours holds NAME.
    NothingToRelease,
    /// lockrun itself got signal N while waiting for the lock: 128+N.
    Interrupted(i32),
    /// `status --exit-status`: the lock is held.
    Held,
    /// `lockrun doctor` found at least one problem.
    DoctorProblems,
}

/// `status --exit-status` when the lock is held (0 when free), as `grep -q`
/// and `systemctl is-active` answer yes/no with 0/non-0.
pub const HELD: u8 = 1;

/// `lockrun doctor`: a setup that breaks (or may silently break) exclusion.
pub const DOCTOR_PROBLEMS: u8 = 1;
pub const USAGE: u8 = 64;
pub const UNAVAILABLE: u8 = 69;
pub const SOFTWARE: u8 = 70;
pub const TEMPFAIL: u8 = 75;
pub const RELEASE_FAILED: u8 = 74;
pub const LOCK_LOST: u8 = 76;
pub const NOPERM: u8 = 77;
pub const NOT_REENTRANT: u8 = 78;
pub const NOTHING_TO_RELEASE: u8 = 1;
pub const MAX_TIME: u8 = 124;
pub const CANNOT_EXECUTE: u8 = 126;
pub const NOT_FOUND: u8 = 127;
const SIGNAL_BASE: i32 = 128;

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Child(code) | Exit::Conflict(code) => code,
            Exit::ChildSignal(signal) | Exit::Interrupted(signal) => {
                u8::try_from(SIGNAL_BASE + signal).unwrap_or(u8::MAX)
            }
            Exit::MaxTime => MAX_TIME,
            Exit::Usage => USAGE,
            Exit::Unavailable => UNAVAILABLE,
            Exit::Software => SOFTWARE,
            Exit::LockLost => LOCK_LOST,
            Exit::ReleaseFailed => RELEASE_FAILED,
            Exit::NoPermission => NOPERM,
            Exit::CannotExecute => CANNOT_EXECUTE,
            Exit::NotFound => NOT_FOUND,
            Exit::Held => HELD,
            Exit::NotReentrant => NOT_REENTRANT,
            Exit::NothingToRelease => NOTHING_TO_RELEASE,
            Exit::DoctorProblems => DOCTOR_PROBLEMS,
        }
    }
}

/// The rows of the table as documented in `--help`, the man page and README.
pub const TABLE: &[(&str, &str)] = &[
    (
        "child's code",
        "the command exited; 128+N if it died of signal N",
    ),
    (
        "75",
        "lock not acquired: --no-wait and held, or --wait ran out (change with -E)",
    ),
    (
        "76",
        "the lock was lost while the command ran; the command was stopped (release: the keeper had lost it)",
    ),
    (
        "74",
        "the command ran, but the lock could not be released and stays behind (CloudShell); the message says how to clear it",
    ),
    (
        "69",
        "backend unreachable or failing; the command was not run",
    ),
    (
        "77",
        "backend refused our credentials, or the lock directory/file is not ours",
    ),
    (
        "78",
        "nested lockrun: LOCKRUN_NAME/LOCKRUN_HELD say an ancestor holds this lock, but the backend does not confirm it; nothing was run",
    ),
    (
        "1",
        "status --exit-status: the lock is held; release NAME: no lock NAME held by a keeper of yours (lockrun acquire), nothing was released; doctor: a problem was found",
    ),
    (
        "64",
        "bad arguments: name, URL (also a file:///DIR that is not a directory), duration, missing command",
    ),
    ("124", "--max-time ran out; the command was stopped"),
    (
        "126",
        "command found but not executable; the lock was released",
    ),
    ("127", "command not found; the lock was released"),
    (
        "128+N",
        "lockrun got signal N while waiting; nothing was left behind",
    ),
    ("70", "internal error"),
];
