//! What lockrun itself shows a person: the waiting indicator and the shape
//! of its one-line messages.
//!
//! On a terminal the waiting indicator is one self-updating line on stderr
//! while the lock is busy. It never grows past the terminal's width (a
//! wrapped line could not be redrawn in place), and it is cleared before the
//! child starts so the child gets a clean line. When stderr is not a terminal
//! (a CI log, a cron mail, a file) or `TERM=dumb`, there is nothing to redraw:
//! a waiting lockrun writes one plain line when the wait starts and a short
//! one every minute after, so a job that waits does not look hung, and
//! nothing once the lock is acquired. `--quiet` silences both.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::lock::{HolderInfo, LockName, compact_duration};

/// Used when the terminal does not say how wide it is.
const FALLBACK_WIDTH: usize = 80;

/// How often a waiting lockrun says it is still waiting when stderr is a log.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Test-only: the interval of the "still waiting" lines instead of a minute,
/// so that tests need not wait a minute. Not a user option (documented as
/// test-only in docs/DESIGN.md).
pub(crate) const LOG_INTERVAL_ENV: &str = "LOCKRUN_TEST_WAIT_LOG_INTERVAL";

enum Mode {
    /// `--quiet`: nothing.
    Off,
    /// The self-updating line.
    Terminal,
    /// Plain lines for a log: one when the wait starts (`next` is `None`
    /// until then), one every `every` after.
    Log {
        every: Duration,
        next: Option<Instant>,
    },
}

pub(crate) struct WaitIndicator {
    mode: Mode,
    drawn: bool,
}

impl WaitIndicator {
    /// How often the line is redrawn.
    pub(crate) const TICK: Duration = Duration::from_millis(500);

    pub(crate) fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Off
        } else if stderr_is_terminal() {
            Mode::Terminal
        } else {
            Mode::Log {
                every: log_interval(),
                next: None,
            }
        };
        WaitIndicator { mode, drawn: false }
    }

    pub(crate) fn show(
        &mut self,
        name: &LockName,
        holder: Option<&HolderInfo>,
        position: Option<u32>,
        waiting_since: Instant,
    ) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Terminal => {
                let width = terminal_width().unwrap_or(FALLBACK_WIDTH);
                let line = waiting_line_at(name, holder, position, waiting_since.elapsed(), width);
                let mut err = std::io::stderr().lock();
                // \r + erase-line redraws the same line however often it is shown.
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                self.drawn = true;
            }
            Mode::Log { every, next } => {
                let now = Instant::now();
                let line = match *next {
                    None => log_start_line(name, holder, position),
                    Some(due) if now >= due => {
                        log_still_line(name, holder, position, waiting_since.elapsed())
                    }
                    Some(_) => return,
                };
                *next = Some(now + *every);
                // One write of a whole line: lines of several waiters sharing
                // a log do not interleave.
                let _ = std::io::stderr()
                    .lock()
                    .write_all(format!("{line}\n").as_bytes());
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl crate::lock::WaitDisplay for WaitIndicator {
    fn tick(&self) -> Option<Duration> {
        match &self.mode {
            Mode::Off => None,
            Mode::Terminal => Some(Self::TICK),
            // Until the next line is due (the wait may have been resumed
            // part-way through an interval); never a busy loop.
            Mode::Log { every, next } => Some(
                next.map_or(*every, |due| due.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
            ),
        }
    }

    fn show(
        &mut self,
        name: &LockName,
        holder: Option<&HolderInfo>,
        position: Option<u32>,
        waiting_since: Instant,
    ) {
        WaitIndicator::show(self, name, holder, position, waiting_since);
    }

    fn clear(&mut self) {
        WaitIndicator::clear(self);
    }
}

impl Drop for WaitIndicator {
    /// Whatever ends the wait (an error, a signal), the line does not stay.
    fn drop(&mut self) {
        self.clear();
    }
}

/// Is stderr a terminal that can redraw a line? `TERM=dumb` (Emacs shell
/// buffers, some CI runners that allocate a pty) cannot.
fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// May lockrun's diagnostics (the log lines of `-v`) be coloured? Only on
/// a terminal, and never when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
pub(crate) fn use_color() -> bool {
    stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn log_interval() -> Duration {
    std::env::var(LOG_INTERVAL_ENV)
        .ok()
        .and_then(|text| crate::duration::option(&text).ok())
        .map_or(LOG_EVERY, |d| d.max(Duration::from_millis(10)))
}

/// ", 3rd in line" when we are queued behind other waiters.
fn in_line(position: Option<u32>) -> String {
    position
        .filter(|p| *p > 1)
        .map_or_else(String::new, |p| format!(", {} in line", ordinal(p)))
}

/// "lockrun: waiting for NAME, held by HOST pid N (CMD) for 3m12s".
pub(crate) fn log_start_line(
    name: &LockName,
    holder: Option<&HolderInfo>,
    position: Option<u32>,
) -> String {
    let by = holder.map_or_else(
        || " (holder unknown)".to_owned(),
        |h| format!(", held by {}", sanitize(&h.describe())),
    );
    format!("lockrun: waiting for {name}{}{by}", in_line(position))
}

/// "lockrun: still waiting for NAME after 1m00s (held by HOST pid N)".
pub(crate) fn log_still_line(
    name: &LockName,
    holder: Option<&HolderInfo>,
    position: Option<u32>,
    waited: Duration,
) -> String {
    let by = holder.map_or_else(String::new, |h| {
        format!(" (held by {} pid {})", sanitize(&h.host), h.pid)
    });
    format!(
        "lockrun: still waiting for {name}{} after {}{by}",
        in_line(position),
        compact_duration(waited)
    )
}

/// "lockrun: waited 5s for NAME; held by HOST pid N for 3m12s (CMD)", at
/// most `width - 1` characters. The holder's command comes last and is
/// shortened first, so the lock, the holder and both times stay visible.
#[cfg(test)]
pub(crate) fn waiting_line(
    name: &LockName,
    holder: Option<&HolderInfo>,
    waited: Duration,
    width: usize,
) -> String {
    waiting_line_at(name, holder, None, waited, width)
}

/// [`waiting_line`] with our place in the queue: "…for NAME, 3rd in line; …".
pub(crate) fn waiting_line_at(
    name: &LockName,
    holder: Option<&HolderInfo>,
    position: Option<u32>,
    waited: Duration,
    width: usize,
) -> String {
    let max = width.saturating_sub(1).max(20);
    let mut head = format!("lockrun: waited {} for {name}", compact_duration(waited));
    head.push_str(&in_line(position));
    let Some(holder) = holder else {
        return fit(&format!("{head}; holder unknown"), max);
    };
    let held = if holder.since > 0 {
        format!(" for {}", compact_duration(holder.held_for()))
    } else {
        String::new()
    };
    let head = format!(
        "{head}; held by {} pid {}{held} (",
        sanitize(&holder.host),
        holder.pid
    );
    let room = max.saturating_sub(head.chars().count() + 1);
    let line = format!("{head}{})", fit(&sanitize(&holder.command), room.max(3)));
    fit(&line, max)
}

/// Shorten `text` to at most `max` characters, marking the cut with "...".
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&"..."[..max.min(3)]);
    out
}

/// The one place where text lockrun did not write itself (a holder record
/// from a lock file or a server, a server's error message, a path) is made
/// safe to print: every control character (escape sequences, BEL, CR,
/// backspace, C1 controls) is shown escaped, e.g. ESC as `\x1b`, so
/// nothing reaches the terminal raw and the text still says what was there.
/// JSON output does not use this: JSON escapes control characters itself.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let code = u32::from(c);
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Columns of the terminal on stderr, if it is one and knows its size.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which
    // lives for the whole call; fd 2 is not closed by it.
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Environment variables that hold credentials: never passed to the child.
/// The passwords and the token never get into a message; the CloudShell
/// user name is no secret there (the logon error names it), but it stays
/// out of the child's environment with the rest.
pub const SECRET_ENV: &[&str] = &[
    "LOCKRUN_REDIS_PASSWORD",
    "LOCKRUN_CLOUDSHELL_USER",
    "LOCKRUN_CLOUDSHELL_PASSWORD",
    "LOCKRUN_CLOUDSHELL_TOKEN",
    "LOCKRUN_PG_PASSWORD",
    "PGPASSWORD",
    "LOCKRUN_ETCD_USER",
    "LOCKRUN_ETCD_PASSWORD",
];

/// "Permission denied" rather than "Permission denied (os error 13)".
pub(crate) fn plain_io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// An error message as lockrun prints it: one line, control characters
/// escaped. Secrets are kept out of messages where they are written (URLs
/// are shown without their password, configs' `Debug` hides them); as a
/// last defence, the password field of any `scheme://user:PASSWORD@host`
/// is replaced by `***`. Nothing else is touched: a password that happens
/// to be a plain word does not mangle that word elsewhere in the message.
pub(crate) fn error_line(message: &str) -> String {
    let text = redact_passwords(message);
    let flat: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    sanitize(&flat.join(" "))
}

/// Replace the password of every `scheme://user:password@host` in `text`.
/// A URL ends at a blank or a quote; within it, the user info runs to the
/// last `@`, so a malformed password (with a `/` in it) is covered too.
fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .unwrap_or(after.len());
        out.push_str(&redact_userinfo(&after[..end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// One URL (or what was meant to be one) with its password replaced by
/// `***`, for messages; the user name stays.
pub(crate) fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(at) => format!("{}{}", &url[..at + 3], redact_userinfo(&url[at + 3..])),
        None => url.to_owned(),
    }
}

/// `user:password@rest` → `user:***@rest`, for what follows a `://`.
fn redact_userinfo(after_scheme: &str) -> String {
    match after_scheme.rsplit_once('@') {
        // "[user:pass@]host" is a usage hint, not a URL with a password.
        Some((userinfo, host)) if !userinfo.starts_with('[') => match userinfo.split_once(':') {
            Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***@{host}"),
            Some(_) => format!("***@{host}"),
            None => after_scheme.to_owned(),
        },
        _ => after_scheme.to_owned(),
    }
}

/// "1st", "2nd", "3rd", "4th", "11th", "21st".
pub(crate) fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn holder(command: &str) -> HolderInfo {
        HolderInfo {
            host: "build-7".into(),
            pid: 4242,
            user: "ci".into(),
            command: command.into(),
            since: crate::lock::unix_now() - 192,
            fence: Some(3),
            token: None,
        }
    }

    #[test]
    fn waiting_line_names_lock_holder_and_times() {
        let name = LockName::parse(OsStr::new("deploy")).unwrap();
        let line = waiting_line(
            &name,
            Some(&holder("make deploy")),
            Duration::from_secs(5),
            200,
        );
        assert!(
            line.starts_with("lockrun: waited 5s for deploy; held by build-7 pid 4242 for 3m1"),
            "{line}"
        );
        assert!(line.ends_with(" (make deploy)"), "{line}");
    }

    #[test]
    fn log_lines_are_plain_and_name_the_holder() {
        let name = LockName::parse(OsStr::new("deploy")).unwrap();
        let start = log_start_line(&name, Some(&holder("make deploy")), None);
        assert!(
            start.starts_with(
                "lockrun: waiting for deploy, held by build-7 pid 4242 (make deploy) for 3m1"
            ),
            "{start}"
        );
        assert_eq!(
            log_start_line(&name, None, Some(3)),
            "lockrun: waiting for deploy, 3rd in line (holder unknown)"
        );
        let still = log_still_line(
            &name,
            Some(&holder("evil\x1b[2J")),
            None,
            Duration::from_secs(60),
        );
        assert_eq!(
            still,
            "lockrun: still waiting for deploy after 1m00s (held by build-7 pid 4242)"
        );
        let odd = log_start_line(&name, Some(&holder("evil\x1b[2J")), None);
        assert!(!odd.chars().any(char::is_control), "{odd:?}");
    }

    #[test]
    fn waiting_line_fits_the_terminal_and_keeps_the_times() {
        let name = LockName::parse(OsStr::new("deploy")).unwrap();
        let long = "x".repeat(300);
        let line = waiting_line(&name, Some(&holder(&long)), Duration::from_secs(5), 80);
        assert_eq!(line.chars().count(), 79, "{line}");
        assert!(line.contains(" for 3m1"), "{line}");
        assert!(line.ends_with("...)"), "{line}");
        let tiny = waiting_line(&name, Some(&holder(&long)), Duration::from_secs(5), 30);
        assert!(tiny.chars().count() <= 29, "{tiny}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let name = LockName::parse(OsStr::new("n")).unwrap();
        let line = waiting_line(
            &name,
            Some(&holder("evil\x1b]0;pwned\x07")),
            Duration::ZERO,
            200,
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("evil\\x1b]0;pwned\\x07"), "{line:?}");
    }

    #[test]
    fn sanitize_escapes_every_control_character() {
        assert_eq!(sanitize("a\x1b[2Jb\x07\x08\t"), "a\\x1b[2Jb\\x07\\x08\\x09");
        assert_eq!(sanitize("c1\u{9b}31m"), "c1\\x9b31m");
        assert_eq!(sanitize("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            error_line("held by h pid 1 (x\x1b]0;t\x07)"),
            "held by h pid 1 (x\\x1b]0;t\\x07)"
        );
    }

    #[test]
    fn error_lines_hide_passwords_and_stay_on_one_line() {
        assert_eq!(
            error_line("cannot reach redis://bob:hunter22@db:6379/0\nretry later"),
            "cannot reach redis://bob:***@db:6379/0 retry later"
        );
        assert_eq!(
            error_line("invalid lock name \"rediss://:pw@h\""),
            "invalid lock name \"rediss://:***@h\""
        );
        assert_eq!(
            error_line("file:///run/lock/x is fine"),
            "file:///run/lock/x is fine"
        );
        assert_eq!(error_line("user@host: no scheme"), "user@host: no scheme");
        assert_eq!(
            error_line("use redis://[user:pass@]host[:port]"),
            "use redis://[user:pass@]host[:port]"
        );
        assert_eq!(
            error_line("bad URL (redis://u:se/cr@et@h:1/0); retry"),
            "bad URL (redis://u:***@h:1/0); retry"
        );
        assert_eq!(
            error_line("\"cloudshell://u:p%2Fw@h/r\" and redis://:x@y"),
            "\"cloudshell://u:***@h/r\" and redis://:***@y"
        );
    }

    #[test]
    fn error_lines_leave_plain_words_alone() {
        // Whatever the secrets are, only URL password fields are redacted.
        let text =
            "lock deploy is held by ci-7 pid 42; check LOCKRUN_CLOUDSHELL_USER (user \"admin\")";
        assert_eq!(error_line(text), text);
    }

    #[test]
    fn one_url_is_redacted_however_malformed() {
        assert_eq!(redact_url("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://:sec/ret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://u:p w@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("cloudshell://u@h/r"), "cloudshell://u@h/r");
        assert_eq!(redact_url("localhost"), "localhost");
    }
}
