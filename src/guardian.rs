//! The guardian: a tiny process of its own that enforces what lockrun itself
//! may be unable to enforce, because lockrun can be stopped (SIGSTOP, a
//! debugger, Ctrl-Z), starved, or SIGKILLed while its command runs.
//!
//! * If lockrun dies without dismissing it, the guardian SIGKILLs the
//!   command's whole process group (PR_SET_PDEATHSIG reaches only the
//!   direct child). It learns of the death by EOF on a socket whose other
//!   end only lockrun holds.
//! * It holds the lease's kill deadline, on `CLOCK_BOOTTIME` (which counts
//!   time while processes are stopped or the machine sleeps): SIGTERM to the
//!   group at the deadline's TERM instant, SIGKILL at its KILL instant,
//!   whether or not lockrun is running. Only a successful renewal moves the
//!   deadline forward, and lockrun is told (one byte back) when the guardian
//!   had to act, so the exit code says the lock was lost.
//!
//! It is started (forked, see [`Guardian::start`]) before the lock is
//! taken, so starting it costs nothing inside the critical section, and it
//! sits in a process group of its own, so a SIGKILL to lockrun's whole
//! group does not take it along. The
//! command registers itself from between fork and exec, so there is no
//! moment in which the command runs and the guardian does not know it.

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::os::{BootTime, CloseMethod};

/// The last instants the command may live without a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// SIGTERM goes out here (`None`: it was already sent).
    pub(crate) term_at: Option<BootTime>,
    /// SIGKILL lands here, safely before anyone else can be granted the lock.
    pub(crate) kill_at: BootTime,
}

/// What the guardian tells lockrun it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforced {
    Terminated,
    Killed,
    /// The lock file it holds a copy of was removed or replaced: it killed
    /// the command's group at once.
    FileLost,
    /// The guardian died (SIGKILLed, the OOM killer): nothing enforces the
    /// deadline or stops the group if lockrun is stopped or killed now.
    Gone,
}

/// What the command learnt when it registered, between fork and exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// The guardian knows the group; the deadline has not passed.
    Guarded,
    /// The lease's TERM instant has passed: do not start.
    Stale,
    /// The guardian is gone: nobody would enforce anything; do not start.
    NoGuardian,
    /// The registration could not be sent for another reason (this errno;
    /// with a descriptor attached, e.g. ETOOMANYREFS): do not start.
    Failed(i32),
}

const MSG_GROUP: u64 = 1;
const MSG_DEADLINE: u64 = 2;
const MSG_DISMISS: u64 = 3;
const MSG_LEN: usize = 24;

const REPORT_TERM: u8 = b'T';
const REPORT_KILL: u8 = b'K';
const REPORT_FILE_LOST: u8 = b'F';

/// How often the guardian checks that a lock file it holds still has a name.
const FILE_CHECK_MS: i32 = 50;

pub(crate) struct Guardian {
    pid: Pid,
    socket: tokio::net::UnixStream,
    /// Started by a raw `clone` with exit signal 0 (its memory shared or
    /// copied): a clone child, which sends no SIGCHLD and which `waitid`
    /// only finds with `__WALL`.
    clone_child: bool,
    /// Whether a deadline was ever sent.
    had_deadline: std::cell::Cell<bool>,
}

impl Guardian {
    /// Start the guardian. Must be called inside the tokio runtime.
    ///
    /// A fork, so that it survives whatever kills lockrun. With
    /// `LOCKRUN_GUARDIAN=clone`, where the raw system call instruction is
    /// written out ([`crate::raw::RAW_SYSCALL`]), it is
    /// `clone(CLONE_VM)` on a stack of its own instead: no page tables
    /// copied, and no copy-on-write fault for every page lockrun writes
    /// afterwards (bench/analysis.md), at the price the comment below
    /// names. Either way the guardian has its own descriptor table, signal
    /// dispositions and process group, and where the instruction exists it
    /// is a "clone child" (no SIGCHLD when it dies), so that a `waitid`
    /// without `__WALL` tells whether lockrun has any *other* child.
    pub(crate) fn start() -> Result<Guardian> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::internal(format!("cannot create the guardian's socket: {e}")))?;
        let close = CloseMethod::from_env();
        let their_fd = theirs.as_raw_fd();
        // Every signal blocked around the clone or fork, so that none of
        // lockrun's handlers (which would write lockrun's memory) runs in
        // the guardian before it has reset them; restored right after.
        let old_mask = crate::os::block_all_signals();
        // A fork by default: a CLONE_VM guardian shares lockrun's memory and
        // so its fate under the OOM killer, which kills every process using
        // the victim's memory; the guardian would then die with lockrun and
        // leave the command's group running after the lock is gone.
        // `LOCKRUN_GUARDIAN=clone` trades that for a cheaper start.
        let shared_memory = crate::raw::RAW_SYSCALL
            && std::env::var_os("LOCKRUN_GUARDIAN").is_some_and(|v| v == "clone");
        // Where the raw instruction exists, the fork is a raw `clone` with
        // exit signal 0 as well: a clone child, so that after the command
        // one waitid tells whether lockrun has any other child, instead of
        // reading /proc inside the critical section (bench/analysis.md).
        let clone_child = crate::raw::RAW_SYSCALL;
        let pid = if shared_memory {
            clone_guardian(their_fd, close)
        } else {
            fork_guardian(their_fd, close)
        };
        crate::os::set_signal_mask(&old_mask);
        let pid =
            pid.map_err(|e| Error::internal(format!("cannot start the guardian process: {e}")))?;
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| Error::internal(format!("cannot set up the guardian's socket: {e}")))?;
        let socket = tokio::net::UnixStream::from_std(ours)
            .map_err(|e| Error::internal(format!("cannot set up the guardian's socket: {e}")))?;
        Ok(Guardian {
            pid: Pid::from_raw(pid),
            socket,
            clone_child,
            had_deadline: std::cell::Cell::new(false),
        })
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Is the guardian a clone child (see the field)?
    pub(crate) fn is_clone_child(&self) -> bool {
        self.clone_child
    }

    /// The descriptor the command writes its registration to, between fork
    /// and exec (it is close-on-exec, so the command never keeps it).
    pub(crate) fn registration_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Hold the command to `deadline` (`None`: no lease, no deadline).
    /// A guardian that never had one is not woken to be told there is none.
    pub(crate) fn set_deadline(&self, deadline: Option<Deadline>) {
        if deadline.is_none() && !self.had_deadline.get() {
            return;
        }
        self.had_deadline.set(true);
        let (term, kill) = deadline.map_or((0, 0), |d| {
            (
                d.term_at.map_or(0, BootTime::as_nanos),
                d.kill_at.as_nanos(),
            )
        });
        self.send(MSG_DEADLINE, term, kill);
    }

    /// Forget the process group (the command could not be started).
    pub(crate) fn clear_group(&self) {
        self.send(MSG_GROUP, 0, 0);
    }

    /// What the guardian did; pending until it does something.
    pub(crate) async fn enforced(&self) -> Enforced {
        loop {
            if self.socket.readable().await.is_err() {
                return std::future::pending().await;
            }
            match self.read_report() {
                Ok(Some(enforced)) => return enforced,
                // EOF: the guardian died; it never exits before its dismissal.
                Ok(None) => return Enforced::Gone,
                Err(_) => {}
            }
        }
    }

    /// What the guardian did and lockrun has not heard yet, without waiting:
    /// when lockrun was stopped, the command's death (caused by the
    /// guardian) and the report may be noticed in either order.
    ///
    /// Read with a raw recv(2), not through tokio, which reports "nothing
    /// there" until its event loop has seen the socket readable: after a
    /// SIGCONT, the command's exit can be handled first, and the report
    /// already in the socket would be missed (exit 143 instead of 76).
    pub(crate) fn already_enforced(&self) -> Option<Enforced> {
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: recv of at most one byte into a buffer we own, on the
            // socket this Guardian owns.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    byte.as_mut_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT,
                )
            };
            match (n, byte[0]) {
                (1, REPORT_KILL) => return Some(Enforced::Killed),
                (1, REPORT_TERM) => return Some(Enforced::Terminated),
                (1, REPORT_FILE_LOST) => return Some(Enforced::FileLost),
                (1, _) => {}
                _ => return None,
            }
        }
    }

    /// `Ok(None)` at EOF, `Err` when nothing is there yet.
    fn read_report(&self) -> std::io::Result<Option<Enforced>> {
        let mut byte = [0u8; 1];
        loop {
            match self.socket.try_read(&mut byte)? {
                0 => return Ok(None),
                _ if byte[0] == REPORT_KILL => return Ok(Some(Enforced::Killed)),
                _ if byte[0] == REPORT_TERM => return Ok(Some(Enforced::Terminated)),
                _ if byte[0] == REPORT_FILE_LOST => return Ok(Some(Enforced::FileLost)),
                _ => {}
            }
        }
    }

    /// The command is gone and the lock is about to be released: let the
    /// guardian go. Reaped without waiting: releasing must not wait for it
    /// to be scheduled; if it has not exited yet, it is a zombie for the
    /// moments until lockrun exits.
    pub(crate) fn dismiss(self) {
        self.send(MSG_DISMISS, 0, 0);
        // __WALL: a clone child is only found with it.
        let _ = waitpid(self.pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL));
    }

    fn send(&self, kind: u64, a: u64, b: u64) {
        let msg = encode(kind, a, b);
        // A raw send(2), not tokio's try_write, which does not even try
        // until its event loop has seen the socket writable, and so dropped
        // a message sent before that (the first one, on the file backend).
        // 24 bytes into an almost empty socket buffer: never short. A
        // failure means the guardian is gone, which `enforced` notices.
        // SAFETY: send from a stack buffer we own, on our own socket.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                msg.as_ptr().cast(),
                MSG_LEN,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if usize::try_from(sent) != Ok(MSG_LEN) {
            tracing::debug!(e = %std::io::Error::last_os_error(), "guardian message not sent");
        }
    }
}

fn encode(kind: u64, a: u64, b: u64) -> [u8; MSG_LEN] {
    let mut msg = [0u8; MSG_LEN];
    msg[..8].copy_from_slice(&kind.to_ne_bytes());
    msg[8..16].copy_from_slice(&a.to_ne_bytes());
    msg[16..].copy_from_slice(&b.to_ne_bytes());
    msg
}

/// Between fork and exec, in the command's process: tell the guardian our
/// process group, and hand it a copy of the lock file's descriptor if
/// there is one, then check the lease's TERM instant (nanoseconds on
/// `CLOCK_BOOTTIME`, 0 for none). Registration comes first, so that from
/// the check on, the guardian enforces the deadline.
///
/// The copy of the descriptor keeps the lock held after a `kill -9` of
/// lockrun until the guardian has killed the command's group (the kernel
/// would otherwise free the flock the moment lockrun died, before the
/// command is dead), and lets the guardian kill the group itself if the
/// file is removed or replaced while lockrun is stopped. Releasing stays
/// prompt: lockrun unlocks the shared open file description explicitly
/// (`flock(LOCK_UN)`), whoever holds copies. It travels with the
/// registration: one message, one wake-up of the guardian for both.
///
/// The command must not start unless this returns `Guarded`.
/// Async-signal-safe: getpid, sendmsg, errno and clock_gettime, no
/// allocation.
pub(crate) fn register(fd: RawFd, lock_fd: Option<RawFd>, term_at_nanos: u64) -> Registered {
    // SAFETY: getpid, and sendmsg from buffers on our stack.
    let sent = unsafe {
        // The child leads its own process group: its pid is the group's id.
        let msg = encode(MSG_GROUP, libc::getpid() as u64, 0);
        // MSG_NOSIGNAL: a dead guardian is an answer (EPIPE), not a SIGPIPE
        // that kills the child and passes for the command's own death.
        send_with_fd(fd, &msg, lock_fd, libc::MSG_NOSIGNAL)
    };
    if usize::try_from(sent) != Ok(MSG_LEN) {
        // errno, right after the failed sendmsg (reading it allocates nothing).
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return match errno {
            libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN => Registered::NoGuardian,
            errno => Registered::Failed(errno.max(1)),
        };
    }
    if term_at_nanos == 0 || crate::os::boottime_nanos_signal_safe() < term_at_nanos {
        Registered::Guarded
    } else {
        Registered::Stale
    }
}

/// `sendmsg` of one message, with a descriptor (SCM_RIGHTS) if given.
///
/// # Safety
/// Async-signal-safe. `sock` and `fd` are checked by the kernel.
unsafe fn send_with_fd(
    sock: RawFd,
    msg: &[u8; MSG_LEN],
    fd: Option<RawFd>,
    flags: libc::c_int,
) -> isize {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr().cast_mut().cast(),
        iov_len: MSG_LEN,
    };
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; every pointer set below points into
    // buffers that live for the whole sendmsg call, and the cmsg macros
    // stay inside `control`, larger than the CMSG_SPACE of one descriptor.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &raw mut iov;
        header.msg_iovlen = 1;
        if let Some(fd) = fd {
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        libc::sendmsg(sock, &raw const header, flags) as isize
    }
}

/// The guardian's stack: never unmapped, as the guardian may outlive every
/// use lockrun has for it (lockrun does not wait for it to exit). Pages
/// that are never touched cost nothing.
const GUARDIAN_STACK: usize = 256 * 1024;

/// `clone(CLONE_VM)` the guardian (see [`Guardian::start`]); its pid.
fn clone_guardian(socket: RawFd, close: CloseMethod) -> std::io::Result<libc::pid_t> {
    // SAFETY: mmap of fresh anonymous memory; checked below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            GUARDIAN_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let arg = entry_arg(socket, close);
    // SAFETY: the caller blocks every signal around this (see
    // `Guardian::start`). `guardian_entry` uses only raw system calls (`crate::raw`: no errno,
    // no thread data) and its own stack, never allocates, and reads only
    // its argument and constants, so it shares nothing that lockrun's
    // threads change. No CLONE_FILES / CLONE_SIGHAND / CLONE_THREAD: its
    // descriptors, dispositions and exit are its own. Exit signal 0.
    let (pid, clone_errno) = unsafe {
        let top = stack
            .cast::<u8>()
            .add(GUARDIAN_STACK)
            .cast::<libc::c_void>();
        let pid = libc::clone(
            guardian_entry,
            top,
            libc::CLONE_VM,
            arg as *mut libc::c_void,
        );
        (pid, std::io::Error::last_os_error())
    };
    if pid < 0 {
        // SAFETY: the stack no process uses (the clone failed).
        unsafe { libc::munmap(stack, GUARDIAN_STACK) };
        return Err(clone_errno);
    }
    Ok(pid)
}

/// A fork of lockrun (no CLONE_VM: the child has a copy of lockrun's
/// memory, less what is below) as a raw `clone` with exit signal 0, the
/// guardian on a stack of its own.
///
/// What the guardian never touches is not copied to it (`MADV_DONTFORK`
/// for the duration of the clone): lockrun's stack (up to its arguments,
/// which `ps` reads from the guardian's memory too) and, in the static
/// build, its heap. Shared, each of their pages that lockrun writes
/// afterwards would cost it a copy-on-write fault (bench/analysis.md,
/// "sixth round").
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn fork_guardian(socket: RawFd, close: CloseMethod) -> std::io::Result<libc::pid_t> {
    /// The guardian's stack. lockrun never touches it, so none of its
    /// pages is shared: each is a fresh page of the guardian's alone.
    #[repr(C, align(16))]
    struct Stack(std::cell::UnsafeCell<[u8; SIZE]>);
    const SIZE: usize = 64 * 1024;
    // SAFETY: only ever written by a forked guardian, in its own copy.
    unsafe impl Sync for Stack {}
    static STACK: Stack = Stack(std::cell::UnsafeCell::new([0; SIZE]));

    unsafe extern "C" fn entry(arg: usize) -> ! {
        let (socket, close) = entry_arg_decode(arg);
        // SAFETY: a fresh fork that runs nothing else, as guardian_main requires.
        unsafe { guardian_main(socket, close) }
    }

    let unshared = crate::os::Unshared::heap_and_stack();
    // SAFETY: a fork that skips libc's fork handlers, which is sound only
    // because the child runs guardian_main alone, which makes raw system
    // calls only, never allocates, never returns and reads nothing but its
    // argument, constants and its own stack (so neither the heap nor
    // lockrun's stack need exist in it). No CLONE_CHILD_* flags: nothing
    // of libc's thread data is updated for a child that never uses it.
    // Every signal is blocked (see `Guardian::start`). The stack's end is
    // 16-byte aligned.
    let pid = unsafe {
        let top = STACK.0.get().cast::<u8>().add(SIZE);
        crate::raw::clone_onto(0, top, entry, entry_arg(socket, close))
    };
    drop(unshared);
    if pid < 0 {
        Err(std::io::Error::from_raw_os_error(-pid as i32))
    } else {
        Ok(pid as libc::pid_t)
    }
}

/// Elsewhere, libc's fork.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn fork_guardian(socket: RawFd, close: CloseMethod) -> std::io::Result<libc::pid_t> {
    // SAFETY: the forked process only makes async-signal-safe system
    // calls (see guardian_main) and never returns into Rust code that
    // could touch state shared with other threads of the parent.
    match unsafe { libc::fork() } {
        // SAFETY: we are the freshly forked child, with every signal
        // blocked, as guardian_main requires.
        0 => unsafe { guardian_main(socket, close) },
        -1 => Err(std::io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

/// The guardian's arguments in one word: they travel in a register, so
/// nothing on lockrun's stack, which moves on at once (and which a forked
/// guardian does not have), is read by the guardian.
fn entry_arg(socket: RawFd, close: CloseMethod) -> usize {
    (socket as u32 as usize) | (usize::from(close == CloseMethod::Scan) << 32)
}

fn entry_arg_decode(arg: usize) -> (RawFd, CloseMethod) {
    let close = if arg >> 32 == 1 {
        CloseMethod::Scan
    } else {
        CloseMethod::CloseRange
    };
    ((arg & 0xffff_ffff) as RawFd, close)
}

/// The cloned guardian's first instruction.
extern "C" fn guardian_entry(arg: *mut libc::c_void) -> libc::c_int {
    let (socket, close) = entry_arg_decode(arg as usize);
    // SAFETY: a fresh clone that runs nothing else, as guardian_main requires.
    unsafe { guardian_main(socket, close) }
}

/// The guardian's whole life, in its own process.
///
/// Every call is a raw system call (`crate::raw`): the process may share
/// lockrun's memory and its main thread's thread data, so nothing here may
/// set errno, allocate, or touch any state of lockrun's. It starts with
/// every signal blocked (blocked by the caller around the clone or fork).
///
/// # Safety
/// Must only be called in a freshly cloned or forked child, with every
/// signal blocked.
unsafe fn guardian_main(socket: RawFd, close: CloseMethod) -> ! {
    use crate::raw::sys;
    // SAFETY: raw system calls on integers, stack buffers and static C
    // strings; this process runs nothing else and never allocates.
    unsafe {
        // Its own process group: a SIGKILL sent to lockrun's whole group
        // (`kill -9 %1`, `timeout -s KILL`) must not take the guardian along.
        sys!(libc::SYS_setpgid, 0, 0);
        // Terminal and job-control signals are for lockrun and its child,
        // not for the guardian, which must outlive them to do its job.
        // Every other disposition lockrun changed goes back to the default:
        // a handler of lockrun's would write lockrun's memory from here.
        for &sig in &crate::signals::CHANGED {
            let ignore = matches!(
                sig,
                libc::SIGINT
                    | libc::SIGTERM
                    | libc::SIGHUP
                    | libc::SIGQUIT
                    | libc::SIGUSR1
                    | libc::SIGUSR2
                    | libc::SIGTSTP
                    | libc::SIGPIPE
            );
            set_disposition(sig, if ignore { libc::SIG_IGN } else { libc::SIG_DFL });
        }
        for sig in [libc::SIGTTIN, libc::SIGTTOU] {
            set_disposition(sig, libc::SIG_IGN);
        }
        let none = 0u64;
        sys!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const none,
            0,
            8
        );
        // Hold nothing of lockrun's: not a lock file, not its sockets, not
        // the stdout a caller reads to EOF, not the working directory's mount.
        sys!(libc::SYS_chdir, c"/".as_ptr());
        // Out of the way first: with stdin closed, the socket may be fd 0.
        let moved = sys!(libc::SYS_fcntl, socket, libc::F_DUPFD, 10);
        let null = sys!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/dev/null".as_ptr(),
            libc::O_RDWR
        );
        for fd in 0..3 {
            if null != fd {
                sys!(libc::SYS_dup3, null, fd, 0);
            }
        }
        sys!(libc::SYS_dup3, moved, 3, 0);
        crate::os::close_from(4, close);
        let sock = 3;
        let timer = sys!(
            libc::SYS_timerfd_create,
            libc::CLOCK_BOOTTIME,
            libc::TFD_CLOEXEC
        ) as i32;

        let mut group: i32 = 0;
        let mut term_at: u64 = 0;
        let mut kill_at: u64 = 0;
        let mut termed = false;
        let mut killed = false;
        let mut lock_fd: i32 = -1;
        let mut buf = [0u8; MSG_LEN * 16];
        let mut have = 0usize;
        loop {
            let now = crate::raw::boottime_nanos();
            if group > 0 && kill_at > 0 && !killed {
                // Reported before the signal goes out: lockrun, seeing the
                // command die of it, must find the report already there, or
                // it would pass the death off as the command's own (143).
                if now >= kill_at {
                    report(sock, REPORT_KILL);
                    sys!(libc::SYS_kill, -group, libc::SIGKILL);
                    killed = true;
                } else if !termed && now >= term_at {
                    report(sock, REPORT_TERM);
                    sys!(libc::SYS_kill, -group, libc::SIGTERM);
                    termed = true;
                }
            }
            // A lock file that lost its last name (removed, or replaced by
            // a rename) protects nothing: another process can lock the new
            // file at once, so the group dies at once.
            if lock_fd >= 0 && group > 0 && !killed {
                let mut st: libc::stat = std::mem::zeroed();
                if sys!(libc::SYS_fstat, lock_fd, &raw mut st) == 0 && st.st_nlink == 0 {
                    report(sock, REPORT_FILE_LOST);
                    sys!(libc::SYS_kill, -group, libc::SIGKILL);
                    killed = true;
                }
            }
            let next = match (group > 0 && kill_at > 0 && !killed, termed) {
                (false, _) => 0,
                (true, false) => term_at,
                (true, true) => kill_at,
            };
            // Milliseconds; negative: none.
            let mut poll_timeout: i64 = -1;
            if timer >= 0 {
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: libc::timespec {
                        tv_sec: (next / 1_000_000_000) as _,
                        tv_nsec: (next % 1_000_000_000) as libc::c_long,
                    },
                };
                // A zero it_value disarms the timer.
                sys!(
                    libc::SYS_timerfd_settime,
                    timer,
                    libc::TFD_TIMER_ABSTIME,
                    &raw const spec,
                    0
                );
            } else if next > 0 {
                // No timerfd: poll's monotonic timeout, re-checked on BOOTTIME.
                poll_timeout = (next.saturating_sub(now) / 1_000_000 + 1).min(1000) as i64;
            }
            let mut fds = [
                libc::pollfd {
                    fd: sock,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: timer,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let nfds: usize = if timer >= 0 { 2 } else { 1 };
            if lock_fd >= 0 && group > 0 && !killed {
                poll_timeout = if poll_timeout < 0 {
                    i64::from(FILE_CHECK_MS)
                } else {
                    poll_timeout.min(i64::from(FILE_CHECK_MS))
                };
            }
            // ppoll: aarch64 has no poll(2).
            let timeout = libc::timespec {
                tv_sec: (poll_timeout.max(0) / 1000) as _,
                tv_nsec: ((poll_timeout.max(0) % 1000) * 1_000_000) as libc::c_long,
            };
            let timeout_ptr = if poll_timeout < 0 {
                std::ptr::null()
            } else {
                &raw const timeout
            };
            if sys!(libc::SYS_ppoll, fds.as_mut_ptr(), nfds, timeout_ptr, 0, 8) < 0 {
                continue; // EINTR
            }
            if timer >= 0 && fds[1].revents != 0 {
                let mut expirations = 0u64;
                sys!(libc::SYS_read, timer, &raw mut expirations, 8);
            }
            if fds[0].revents == 0 {
                continue;
            }
            // recvmsg, for the lock file's descriptor that may come along.
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().add(have).cast(),
                iov_len: buf.len() - have,
            };
            let mut control = [0u64; 8];
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = &raw mut iov;
            header.msg_iovlen = 1;
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = sys!(
                libc::SYS_recvmsg,
                sock,
                &raw mut header,
                libc::MSG_CMSG_CLOEXEC
            );
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
                    if lock_fd >= 0 {
                        sys!(libc::SYS_close, lock_fd);
                    }
                    lock_fd = fd;
                }
                cmsg = libc::CMSG_NXTHDR(&raw const header, cmsg);
            }
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n <= 0 {
                // EOF (or a broken socket) without a dismissal: lockrun is
                // gone. The group dies first; only then does the lock go,
                // when the copy held here closes as the guardian exits.
                if group > 0 {
                    sys!(libc::SYS_kill, -group, libc::SIGKILL);
                }
                exit();
            }
            have += n as usize;
            let mut at = 0;
            while have - at >= MSG_LEN {
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&buf[at + i * 8..at + i * 8 + 8]);
                    u64::from_ne_bytes(w)
                };
                match word(0) {
                    MSG_GROUP => {
                        group = word(1) as i32;
                        killed = false;
                    }
                    MSG_DEADLINE => {
                        let (term, kill) = (word(1), word(2));
                        if termed {
                            // Once SIGTERM went out the lease is lost: a late
                            // message may bring the KILL nearer, never move it off.
                            if kill > 0 && kill < kill_at {
                                kill_at = kill;
                            }
                        } else {
                            kill_at = kill;
                            term_at = term;
                            // term 0: lockrun sent SIGTERM itself.
                            termed = kill > 0 && term == 0;
                        }
                    }
                    MSG_DISMISS => exit(),
                    _ => {}
                }
                at += MSG_LEN;
            }
            buf.copy_within(at..have, 0);
            have -= at;
        }
    }
}

/// `sigaction(sig, {handler, no flags, empty mask})` as a raw system call.
/// The kernel's structure starts with the handler and the flags; what
/// follows (restorer, mask) is zero here.
///
/// # Safety
/// A raw system call, for the guardian process.
unsafe fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) {
    let action: [usize; 4] = [handler, 0, 0, 0];
    // SAFETY: the action lives on our stack for the whole call; 8 is the
    // kernel's sigset size.
    unsafe { crate::raw::sys!(libc::SYS_rt_sigaction, sig, &raw const action, 0, 8) };
}

/// The guardian's end: exit_group(0), as a raw system call.
fn exit() -> ! {
    loop {
        // SAFETY: ends this process only (it is no thread of lockrun's).
        unsafe { crate::raw::sys!(libc::SYS_exit_group, 0) };
    }
}

/// One byte back to lockrun; if it is stopped, the socket keeps it.
///
/// # Safety
/// A raw system call, for the guardian process.
unsafe fn report(sock: RawFd, what: u8) {
    // SAFETY: write of one byte from the stack.
    unsafe {
        crate::raw::sys!(libc::SYS_write, sock, &raw const what, 1);
    }
}
