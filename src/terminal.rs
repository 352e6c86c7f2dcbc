//! Sharing the terminal with the child.
//!
//! The child runs in its own process group (so that lockrun can stop its
//! whole tree). A process group that is not the terminal's foreground group
//! is stopped by SIGTTIN as soon as it reads the terminal, and would hang
//! there holding the lock. So when lockrun itself is in the foreground of the
//! terminal on its stdin, the child's group takes the foreground for as long
//! as it runs, as a shell does for a job, and gives it back afterwards.
//! Then Ctrl-C and Ctrl-Z reach the child's group straight from the terminal.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

pub struct Terminal {
    our_group: Pid,
}

impl Terminal {
    /// `Some` if stdin is a terminal whose foreground process group is ours.
    pub fn foreground() -> Option<Terminal> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return None;
        }
        let our_group = nix::unistd::getpgrp();
        (nix::unistd::tcgetpgrp(fd).ok()? == our_group).then_some(Terminal { our_group })
    }

    /// Make `group` the foreground process group (lockrun is in the foreground).
    pub fn give_to(&self, group: Pid) {
        set_foreground(stdin_fd(), group);
    }

    /// Take the foreground back for lockrun's own group; lockrun may be in
    /// the background by now, hence SIGTTOU is blocked for the call.
    pub fn take_back(&self) {
        set_foreground(stdin_fd(), self.our_group);
    }
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process; lockrun never closes it.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// tcsetpgrp with SIGTTOU blocked: a background process may then change the
/// foreground group instead of being stopped for trying.
fn set_foreground(fd: BorrowedFd<'_>, group: Pid) {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_err() {
        return;
    }
    if let Err(e) = nix::unistd::tcsetpgrp(fd, group) {
        tracing::debug!(%e, "tcsetpgrp");
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
}

/// In the forked child, before exec: take the terminal's foreground for the
/// child's new process group, so that it never reads the terminal from the
/// background, not even before lockrun's own call could have run.
/// Only async-signal-safe calls (setpgid, sigprocmask, tcsetpgrp).
pub fn claim_in_child() -> std::io::Result<()> {
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    set_foreground(stdin_fd(), nix::unistd::getpid());
    Ok(())
}
