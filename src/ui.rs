//! The waiting indicator: one self-updating line on stderr while the lock is
//! busy, only when stderr is a terminal and not `--quiet`. It is cleared
//! before the child starts so the child gets a clean line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::lock::{HolderInfo, LockName, compact_duration};

pub struct WaitIndicator {
    enabled: bool,
    drawn: bool,
}

impl WaitIndicator {
    /// How often the line is redrawn.
    pub const TICK: Duration = Duration::from_millis(500);

    pub fn new(quiet: bool) -> Self {
        WaitIndicator {
            enabled: !quiet && std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    pub fn show(&mut self, name: &LockName, holder: Option<&HolderInfo>, waiting_since: Instant) {
        if !self.enabled {
            return;
        }
        let held = holder.map_or_else(
            || "holder unknown".to_owned(),
            |h| format!("held by {}", h.describe()),
        );
        let line = format!(
            "lockrun: waiting for {name}: {held}; waited {}",
            compact_duration(waiting_since.elapsed())
        );
        let mut err = std::io::stderr().lock();
        // \r + erase-line keeps it to one line however often it is redrawn.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}
