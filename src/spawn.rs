//! Starting the command without copying lockrun's address space.
//!
//! `std::process::Command::pre_exec` forces a full `fork()`: the kernel
//! copies lockrun's page tables, and the child then faults its way through
//! copy-on-write pages until it execs. Here the child is started with
//! `clone(CLONE_VM | CLONE_VFORK)` on a small stack of its own: it shares
//! lockrun's memory, lockrun is suspended until the child has exec'd (or
//! given up), and the child does only what has to happen in the child:
//!
//! * its own process group (`setpgid`), and the terminal's foreground when
//!   lockrun may hand it over (`tcsetpgrp`);
//! * `PR_SET_PDEATHSIG` = SIGKILL, and the `getppid` check for a lockrun
//!   that died before that took effect;
//! * the registration with the guardian and the lease's TERM check (a
//!   deadline that passed means: do not exec; lockrun learns it as stale);
//! * the signals lockrun caught back to their defaults, SIGPIPE to its
//!   default, and an empty signal mask, as `std::process::Command` leaves them;
//! * `execve` along `PATH` with an environment built beforehand (secrets
//!   already removed).
//!
//! Everything that allocates (argv, envp, the candidate paths) is built
//! before the clone. A failure in the child is written to memory the parent
//! reads once the clone returns (the vfork semantics guarantee the child has
//! exec'd or exited by then).
//!
//! The same exec step serves `--exec`, where lockrun replaces itself with
//! the command.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::ui::SECRET_ENV;

/// argv, envp and the paths to try, as C strings, built before any fork.
pub(crate) struct Prepared {
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Where `PATH` says the program may be, in order.
    candidates: Vec<CString>,
    /// `/bin/sh PATH ARGS...` for a file the kernel cannot execute (no
    /// `#!` line), as execvp(3) does it; index 1 is filled in by the exec.
    sh_argv: Vec<*const libc::c_char>,
}

unsafe extern "C" {
    /// The C library's environment: `NAME=VALUE` strings, NULL-terminated.
    static environ: *const *const libc::c_char;
}

/// This process's environment as the C library holds it. The strings stay
/// valid and unchanged as long as nobody calls setenv/putenv/unsetenv:
/// lockrun never changes its own environment (what the command gets on top
/// is passed explicitly), so they outlive every `Prepared` built from them.
fn inherited_environment() -> Vec<&'static std::ffi::CStr> {
    let mut entries = Vec::new();
    // SAFETY: `environ` is a valid NULL-terminated array of NUL-terminated
    // strings set up by the C runtime before main, and is not modified by
    // this process (above); reading it allocates nothing and calls nothing.
    unsafe {
        let mut cursor = environ;
        while !cursor.is_null() && !(*cursor).is_null() {
            entries.push(std::ffi::CStr::from_ptr(*cursor));
            cursor = cursor.add(1);
        }
    }
    entries
}

impl Prepared {
    /// `program` with `args`, in lockrun's environment minus the secrets,
    /// plus `env`.
    pub(crate) fn new(
        program: &OsStr,
        args: &[OsString],
        env: &[(String, String)],
    ) -> std::io::Result<Prepared> {
        let nul = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "nul byte found");
        let c = |bytes: &[u8]| CString::new(bytes).map_err(|_| nul());
        let mut strings = Vec::new();
        let mut argv = Vec::with_capacity(args.len() + 2);
        let mut sh_argv = Vec::with_capacity(args.len() + 3);
        let sh = c(b"/bin/sh")?;
        sh_argv.push(sh.as_ptr());
        sh_argv.push(std::ptr::null());
        strings.push(sh);
        let arg0 = c(program.as_bytes())?;
        argv.push(arg0.as_ptr());
        strings.push(arg0);
        for arg in args {
            let arg = c(arg.as_bytes())?;
            argv.push(arg.as_ptr());
            sh_argv.push(arg.as_ptr());
            strings.push(arg);
        }
        argv.push(std::ptr::null());
        sh_argv.push(std::ptr::null());

        // lockrun's own environment goes to the command as it is, minus the
        // secrets and the keys `env` sets: pointers into `environ`, not
        // copies (copying each variable twice, through `vars_os` and a
        // CString, was a tenth of lockrun's instructions before the spawn).
        let mut envp = Vec::new();
        for entry in inherited_environment() {
            let bytes = entry.to_bytes();
            // As std's `vars_os`: the key ends at the first '=' after its
            // first byte; an entry without one is not a variable.
            let Some(end) = bytes
                .get(1..)
                .and_then(|b| b.iter().position(|&c| c == b'='))
            else {
                continue;
            };
            let key = &bytes[..=end];
            if SECRET_ENV.iter().any(|s| s.as_bytes() == key)
                || env.iter().any(|(k, _)| k.as_bytes() == key)
            {
                continue;
            }
            envp.push(entry.as_ptr());
        }
        for (key, value) in env {
            let entry = c(format!("{key}={value}").as_bytes())?;
            envp.push(entry.as_ptr());
            strings.push(entry);
        }
        envp.push(std::ptr::null());

        let candidates = candidates(program.as_bytes(), std::env::var_os("PATH"))
            .into_iter()
            .map(|p| c(&p))
            .collect::<std::io::Result<_>>()?;
        Ok(Prepared {
            _strings: strings,
            argv,
            envp,
            candidates,
            sh_argv,
        })
    }

    /// Replace this process with the command; returns only on failure, with
    /// the error execvp(3) would report.
    ///
    /// # Safety
    /// Async-signal-safe (execve only, and writes into `self`), so it may
    /// run in a vfork-style child; the caller must make sure nothing else
    /// uses `self` meanwhile.
    pub(crate) unsafe fn exec(&self) -> i32 {
        let mut denied = false;
        let mut last = libc::ENOENT;
        for path in &self.candidates {
            // SAFETY: NUL-terminated strings and NULL-terminated arrays that
            // live as long as `self`.
            unsafe { libc::execve(path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
            let err = errno();
            match err {
                libc::ENOEXEC => {
                    // A script without `#!`: the shell runs it, as execvp does.
                    let sh_argv = self.sh_argv.as_ptr().cast_mut();
                    // SAFETY: index 1 exists (the slot for the path); the
                    // arrays stay valid; nobody else reads them meanwhile.
                    unsafe {
                        *sh_argv.add(1) = path.as_ptr();
                        libc::execve(self.sh_argv[0], sh_argv.cast_const(), self.envp.as_ptr());
                    }
                    return errno();
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => return other,
            }
            last = err;
        }
        if denied { libc::EACCES } else { last }
    }
}

/// The paths execvp(3) would try for `program`: itself if it names a path,
/// else each `PATH` entry (an empty one is the working directory; no PATH
/// at all is glibc's default).
fn candidates(program: &[u8], path: Option<OsString>) -> Vec<Vec<u8>> {
    if program.contains(&b'/') {
        return vec![program.to_vec()];
    }
    let path = path.map_or_else(|| b"/bin:/usr/bin".to_vec(), |p| p.as_bytes().to_vec());
    path.split(|&b| b == b':')
        .map(|dir| {
            if dir.is_empty() {
                program.to_vec()
            } else {
                let mut full = dir.to_vec();
                if !full.ends_with(b"/") {
                    full.push(b'/');
                }
                full.extend_from_slice(program);
                full
            }
        })
        .collect()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// What the child does before exec.
pub(crate) struct Setup {
    /// Claim the terminal's foreground for the child's group.
    pub(crate) claim_terminal: bool,
    /// The guardian's registration socket.
    pub(crate) guardian_fd: RawFd,
    /// The lock file's descriptor, for the guardian to hold a copy of.
    pub(crate) lock_fd: Option<RawFd>,
    /// The lease's TERM instant on CLOCK_BOOTTIME, in ns (0: none).
    pub(crate) term_at_nanos: u64,
}

/// Why the command did not start.
pub(crate) enum Failure {
    /// The lease's TERM instant passed before the exec.
    Stale,
    /// The guardian is gone: nobody would enforce the deadline or lockrun's
    /// death, so the command was not started.
    NoGuardian,
    /// The registration (with the lock's descriptor) could not be sent.
    Register(std::io::Error),
    /// exec (or the set-up before it) failed.
    Io(std::io::Error),
}

const STAGE_EXEC: i32 = 0;
const STAGE_STALE: i32 = 1;
const STAGE_SETUP: i32 = 2;
const STAGE_NO_GUARDIAN: i32 = 3;
const STAGE_REGISTER: i32 = 4;

/// What the child reads (and its one word of answer), on the parent's stack.
struct Shared<'a> {
    prepared: &'a Prepared,
    setup: &'a Setup,
    parent: libc::pid_t,
    stage: AtomicI32,
    errno: AtomicI32,
}

const CHILD_STACK: usize = 64 * 1024;

/// A running command: lockrun's direct child, leader of its own group.
pub(crate) struct Child {
    pid: libc::pid_t,
    /// Readable when the child has exited (Linux 5.3).
    pidfd: Option<tokio::io::unix::AsyncFd<OwnedFd>>,
    /// Without a pidfd (an older kernel, a seccomp filter that refuses
    /// pidfd_open): answered by a thread blocked in waitid when the child
    /// has exited. Not SIGCHLD through tokio: its signal driver, set up at
    /// every start, cost an uncontended run 2% of its time (25k
    /// instructions, a socket pair; bench/analysis.md, "ninth round").
    exited: Option<tokio::sync::oneshot::Receiver<()>>,
    status: Option<ExitStatus>,
}

/// Start the command. Must be called inside the tokio runtime.
pub(crate) fn spawn(prepared: &Prepared, setup: &Setup) -> Result<Child, Failure> {
    // SAFETY: mmap of fresh anonymous memory; checked below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHILD_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(Failure::Io(std::io::Error::last_os_error()));
    }
    let shared = Shared {
        prepared,
        setup,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        stage: AtomicI32::new(STAGE_EXEC),
        errno: AtomicI32::new(0),
    };
    // SAFETY: all signals are blocked around the clone, so no handler of
    // lockrun's runs in the child (which shares lockrun's memory) before it
    // has reset them; the old mask is restored right after. `child_main`
    // only makes async-signal-safe calls and writes only `shared`'s atomics;
    // with CLONE_VFORK lockrun does not run until the child has exec'd or
    // exited, so nothing else uses `shared`, the stack or the C strings
    // meanwhile, and both outlive the child's use of them.
    let (pid, clone_errno) = unsafe {
        let old = crate::os::block_all_signals();
        let top = stack.cast::<u8>().add(CHILD_STACK).cast::<libc::c_void>();
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const shared).cast_mut().cast(),
        );
        let clone_errno = errno();
        crate::os::set_signal_mask(&old);
        libc::munmap(stack, CHILD_STACK);
        (pid, clone_errno)
    };
    if pid < 0 {
        return Err(Failure::Io(std::io::Error::from_raw_os_error(clone_errno)));
    }
    let stage = shared.stage.load(Ordering::SeqCst);
    if stage != STAGE_EXEC || shared.errno.load(Ordering::SeqCst) != 0 {
        // It has exited already: reap it.
        let mut status = 0;
        // SAFETY: waitpid on our own child, status into our stack.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if stage == STAGE_STALE {
            return Err(Failure::Stale);
        }
        if stage == STAGE_NO_GUARDIAN {
            return Err(Failure::NoGuardian);
        }
        let errno = shared.errno.load(Ordering::SeqCst);
        if stage == STAGE_REGISTER {
            return Err(Failure::Register(std::io::Error::from_raw_os_error(errno)));
        }
        return Err(Failure::Io(std::io::Error::from_raw_os_error(errno)));
    }
    Ok(Child::new(pid))
}

/// The child, between clone and exec.
///
/// Every call here is async-signal-safe: setpgid, prctl, getppid, kill,
/// getpid (as raw system calls: glibc's wrappers for raise and getpid use
/// thread data that is lockrun's, not this process's), sendmsg and
/// clock_gettime (`guardian::register`), tcsetpgrp, sigaction,
/// sigprocmask, execve and _exit. Nothing allocates. errno, which glibc
/// keeps in the calling thread's data, is lockrun's main thread's: lockrun
/// is suspended and sets it afresh with its next system call.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Shared` on the suspended parent's stack.
    let shared = unsafe { &*arg.cast::<Shared>() };
    let fail = |stage: i32, errno: i32| -> libc::c_int {
        shared.errno.store(errno.max(1), Ordering::SeqCst);
        shared.stage.store(stage, Ordering::SeqCst);
        // SAFETY: _exit ends this process only (not lockrun: no CLONE_THREAD).
        unsafe { libc::_exit(127) }
    };
    // SAFETY: async-signal-safe system calls on integers and on memory the
    // parent keeps alive until we exec or exit (see above).
    unsafe {
        // Its own process group, so a lost lock or --max-time can stop the
        // whole tree, and a terminal's Ctrl-C reaches it once.
        if libc::setpgid(0, 0) != 0 {
            return fail(STAGE_SETUP, errno());
        }
        // If lockrun is SIGKILLed the child must not run on unprotected.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // lockrun may have died before prctl took effect.
        if libc::getppid() != shared.parent {
            let me = libc::syscall(libc::SYS_getpid) as libc::pid_t;
            libc::syscall(libc::SYS_kill, me, libc::SIGKILL);
        }
        // From here on the guardian enforces the deadline; a deadline that
        // passed while lockrun was stopped means: do not start.
        match crate::guardian::register(
            shared.setup.guardian_fd,
            shared.setup.lock_fd,
            shared.setup.term_at_nanos,
        ) {
            crate::guardian::Registered::Guarded => {}
            crate::guardian::Registered::Stale => return fail(STAGE_STALE, libc::ETIME),
            crate::guardian::Registered::NoGuardian => {
                return fail(STAGE_NO_GUARDIAN, libc::EPIPE);
            }
            crate::guardian::Registered::Failed(errno) => return fail(STAGE_REGISTER, errno),
        }
        if shared.setup.claim_terminal {
            // SIGTTOU is blocked (all signals are), so a background
            // process group may take the foreground.
            let me = libc::syscall(libc::SYS_getpid) as libc::pid_t;
            libc::tcsetpgrp(0, me);
        }
        reset_signals_for_exec();
        let errno = shared.prepared.exec();
        fail(STAGE_EXEC, errno)
    }
}

/// No handler of lockrun's may run in the command's process once signals
/// are unblocked: caught signals go back to their defaults (ignored ones
/// stay ignored, as exec keeps them), SIGPIPE (ignored by lockrun's start-up)
/// to its default, SIGCHLD back to ignored if lockrun's caller had it so
/// (`startup::init` restored its default for lockrun), and the mask is
/// emptied, as `std::process::Command` leaves them. Call with every signal blocked.
///
/// Only the signals lockrun itself may have changed are looked at
/// ([`crate::signals::CHANGED`]): a handler can only be lockrun's, because
/// the exec that started lockrun reset every inherited one. That is two
/// dozen system calls in the child instead of 64 `sigaction` queries plus
/// the resets.
///
/// # Safety
/// Async-signal-safe: sigaction and sigprocmask only.
unsafe fn reset_signals_for_exec() {
    // SAFETY: sigaction and sigprocmask with structures on our stack.
    unsafe {
        for &sig in &crate::signals::CHANGED {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &raw const dfl, std::ptr::null_mut());
            }
        }
        if crate::startup::child_signal_ignored() {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
    }
}

/// Why `exec_in_place` returned.
pub(crate) enum InPlace {
    /// A signal had come (its number): nothing was executed.
    Interrupted(i32),
    Failed(std::io::Error),
}

/// `--exec`: replace lockrun with the command. Signals are blocked first,
/// then `pending` is asked for one that lockrun's handlers already caught
/// (it must not be lost by the exec); the handlers are reset, and a signal
/// that arrives after the block takes its default action when the mask is
/// emptied, before the exec. Returns only if nothing was executed.
pub(crate) fn exec_in_place(prepared: &Prepared, pending: impl FnOnce() -> Option<i32>) -> InPlace {
    let old = crate::os::block_all_signals();
    if let Some(signal) = pending() {
        crate::os::set_signal_mask(&old);
        return InPlace::Interrupted(signal);
    }
    // SAFETY: signals are blocked, as reset_signals_for_exec requires;
    // `prepared` is ours alone. Other threads (a finished lock-wait helper)
    // end with the exec.
    let errno = unsafe {
        reset_signals_for_exec();
        prepared.exec()
    };
    InPlace::Failed(std::io::Error::from_raw_os_error(errno))
}

impl Child {
    fn new(pid: libc::pid_t) -> Child {
        // SAFETY: pidfd_open takes integers; the fd it returns is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: a fresh descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            // SAFETY: the OwnedFd's descriptor stays open and the same for
            // as long as the AsyncFd owns it.
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .ok()
        });
        let pidfd = pidfd.flatten();
        let exited = if pidfd.is_none() {
            exit_watch(pid)
        } else {
            None
        };
        Child {
            pid,
            pidfd,
            exited,
            status: None,
        }
    }

    pub(crate) fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// Wait for the child to exit and reap it (cancel-safe).
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if let Some(pidfd) = &self.pidfd {
                let mut ready = pidfd.readable().await?;
                // Readable once the child has exited: reaped at the top.
                if waitable(self.pid) {
                    continue;
                }
                ready.clear_ready();
            } else if let Some(exited) = &mut self.exited {
                // Answered (or the thread is gone): reaped at the top, and
                // from then on polled, should the answer have been wrong.
                let _ = exited.await;
                self.exited = None;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, status into our stack.
        let rc = unsafe { libc::waitpid(self.pid, &raw mut status, libc::WNOHANG) };
        match rc {
            0 => Ok(None),
            rc if rc == self.pid => {
                let status = ExitStatus::from_raw(status);
                self.status = Some(status);
                Ok(Some(status))
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

/// A thread that answers once `pid` has exited, leaving it to be reaped
/// (`None`: no thread could be started; the caller polls).
fn exit_watch(pid: libc::pid_t) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (answer, exited) = tokio::sync::oneshot::channel();
    // Started with every signal blocked, so that the thread inherits that
    // mask and lockrun's signals go to its own thread.
    let old = crate::os::block_all_signals();
    let started = std::thread::Builder::new()
        .name("lockrun-wait".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                // SAFETY: waitid with WNOWAIT into a zeroed siginfo on this
                // thread's stack.
                let rc = unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &raw mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if rc == 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    break;
                }
            }
            let _ = answer.send(());
        });
    crate::os::set_signal_mask(&old);
    started.ok().map(|_| exited)
}

/// Has `pid` exited (without reaping it)?
fn waitable(pid: libc::pid_t) -> bool {
    // SAFETY: waitid with WNOWAIT into a zeroed siginfo on our stack.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
            && info.si_pid() == pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_candidates() {
        assert_eq!(candidates(b"./x", None), vec![b"./x".to_vec()]);
        assert_eq!(
            candidates(b"sh", Some("/a::/b/".into())),
            vec![b"/a/sh".to_vec(), b"sh".to_vec(), b"/b/sh".to_vec()]
        );
        assert_eq!(
            candidates(b"sh", None),
            vec![b"/bin/sh".to_vec(), b"/usr/bin/sh".to_vec()]
        );
    }
}
