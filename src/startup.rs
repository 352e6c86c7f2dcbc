//! What Rust std's start-up would have done, minus what lockrun pays for
//! and does not need.
//!
//! The binary has its own C `main` (`#![no_main]` in `main.rs`), so std's
//! `lang_start` does not run. Of its work, lockrun keeps:
//!
//! * descriptors 0, 1 and 2 open (`/dev/null` for a closed one), so that a
//!   file lockrun opens (the lock file) can never become the command's
//!   stdout or stderr;
//! * SIGPIPE ignored, so a closed pipe is an error lockrun reports, not a
//!   silent death (`spawn` gives the command the default back);
//! * standard output flushed at the end ([`finish`]).
//!
//! And it adds one thing: SIGCHLD at its default even where the caller
//! ignored it, or the kernel would reap the command before lockrun could
//! read its exit status (the command gets the ignore back).
//!
//! It drops the main thread's stack-overflow guard: finding the stack's
//! bounds makes glibc parse `/proc/self/maps` with sscanf (about a tenth
//! of the instructions of a whole uncontended run, and 9 system calls,
//! see bench/analysis.md). A stack overflow on the main thread still dies
//! of SIGSEGV (the kernel's guard gap), only without std's message.
//! The arguments come from `main`'s own argv ([`set_args`], [`args`]):
//! without `lang_start`, std learns argv only from glibc's `.init_array`
//! call, which musl does not make, so `std::env::args_os` would be empty
//! in a static musl build.

use std::ffi::OsString;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Record the process's arguments (`lockrun::main` does, once) and lend
/// them back.
pub(crate) fn set_args(args: Vec<OsString>) -> &'static [OsString] {
    ARGS.get_or_init(|| args)
}

/// The process's arguments, program name first (as `main` recorded them).
pub(crate) fn args() -> &'static [OsString] {
    ARGS.get().map_or(&[], Vec::as_slice)
}

/// Call first thing in `main`.
pub fn init() {
    // SAFETY: poll on three integers with an on-stack array, open of a
    // static C string, and signal with a constant disposition; none of it
    // touches memory Rust owns.
    unsafe {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        // One system call for all three, as std does it; a closed one
        // reports POLLNVAL.
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for pfd in fds {
                if pfd.revents & libc::POLLNVAL != 0
                    && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) == -1
                {
                    // Without fds 0–2 lockrun could hand the lock file to
                    // the command as its output: refuse, as std does.
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // An ignored SIGCHLD (inherited through exec) makes the kernel reap
        // lockrun's children itself: the command's exit status would be
        // lost, and with it the wait for what the command left behind. The
        // command gets it back ignored (`spawn`), as its caller meant.
        if libc::signal(libc::SIGCHLD, libc::SIG_DFL) == libc::SIG_IGN {
            CHILD_SIGNAL_IGNORED.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether lockrun's caller had SIGCHLD ignored (see [`init`]).
static CHILD_SIGNAL_IGNORED: AtomicBool = AtomicBool::new(false);

/// For the command's process, before its exec: async-signal-safe.
pub(crate) fn child_signal_ignored() -> bool {
    CHILD_SIGNAL_IGNORED.load(Ordering::Relaxed)
}

/// Call last thing in `main`: what `println!` buffered goes out.
pub fn finish() {
    let _ = std::io::stdout().flush();
}
