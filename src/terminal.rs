//! Sharing the terminal with the child.
//!
//! The child runs in its own process group (so that lockrun can stop its
//! whole tree). A process group that is not the terminal's foreground group
//! is stopped by SIGTTIN as soon as it reads the terminal, and would hang
//! there holding the lock. So when lockrun is in the foreground of the
//! terminal on its stdin, and alone in its process group (not part of a
//! pipeline whose other members need the terminal), the child's group takes
//! the foreground while it runs, as a shell does for a job, and gives it back
//! afterwards. Then Ctrl-C and Ctrl-Z reach the child's group straight from
//! the terminal. lockrun never moves the foreground unless it is its own or
//! its child's: a lockrun sent to the background must not grab the terminal.

use std::os::fd::BorrowedFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

pub(crate) struct Terminal {
    our_group: Pid,
}

impl Terminal {
    /// `Some` if stdin is lockrun's controlling terminal.
    pub(crate) fn of_stdin() -> Option<Terminal> {
        let fd = stdin_fd();
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return None;
        }
        nix::unistd::tcgetpgrp(fd).ok()?;
        Some(Terminal {
            our_group: nix::unistd::getpgrp(),
        })
    }

    fn foreground(&self) -> Option<Pid> {
        nix::unistd::tcgetpgrp(stdin_fd()).ok()
    }

    /// May the child's group have the terminal now? Only if the foreground
    /// is ours and nobody else (say, `less` at the end of a pipeline) is in
    /// our process group and needs it.
    pub(crate) fn can_hand_over(&self) -> bool {
        self.foreground() == Some(self.our_group) && alone_in_group(self.our_group)
    }

    /// Give the terminal to the child's `group`, if it is ours to give.
    pub(crate) fn give_to(&self, group: Pid) {
        if self.foreground() == Some(group) || self.can_hand_over() {
            set_foreground(group);
        }
    }

    /// Take the terminal back from the child's `group`, if it has it.
    pub(crate) fn take_back(&self, group: Pid) {
        if self.foreground() == Some(group) {
            set_foreground(self.our_group);
        }
    }
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process; lockrun never closes it.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Is this process the only member of `group`? (A scan of /proc; only done
/// when stdin is a terminal, i.e. interactively.)
fn alone_in_group(group: Pid) -> bool {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let pids = crate::os::pids();
    // Without /proc nobody can tell: do not hand the terminal over.
    !pids.is_empty()
        && !pids.into_iter().any(|pid| {
            pid != me && crate::os::proc_stat(pid).is_some_and(|stat| stat.pgrp == group.as_raw())
        })
}

/// tcsetpgrp with SIGTTOU blocked: a background process may then change the
/// foreground group instead of being stopped for trying. (The command's own
/// claim, between clone and exec, is in `spawn::child_main`.)
fn set_foreground(group: Pid) {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_err() {
        return;
    }
    let _ = nix::unistd::tcsetpgrp(stdin_fd(), group);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
}
