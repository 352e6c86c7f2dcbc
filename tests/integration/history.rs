//! Histories of critical sections, checked the way Jepsen checks lock
//! services: every section appends its start (with pid and
//! `LOCKRUN_FENCE`) and end to one shared log; the checker then fails on
//! overlapping sections, fences that do not strictly increase in start
//! order, and exit codes that lie about whether the command ran. Shared
//! sections (`LOCKRUN_MODE=shared`, `--shared`) may overlap each other,
//! never an exclusive one.
//!
//! Clock: `date +%s%N` in the section's shell (CLOCK_REALTIME, ns). All
//! parties run on one machine, so the only skew is a clock step, which the
//! tests do not cause. A stamp is taken *inside* the section, so the stamped
//! interval lies within the real one: an overlap of stamps is a real overlap.
//!
//! A killed section writes no end line. Its end is the moment the last
//! process holding the section's FIFO went away: the section opens a FIFO of
//! its own as fd 9 (inherited by everything it starts, grandchildren
//! included), and a thread of the test blocks reading it and stamps EOF.
//! That moment is after the real end (conservative), by no more than a
//! thread wake-up; it is used only when there is no end line.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

/// Exit codes that say "the command was not run".
pub const NOT_RUN: &[i32] = &[64, 69, 70, 75, 77];

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// What the FIFO watcher of one invocation saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Nobody opened the FIFO yet.
    Waiting,
    /// The section opened it (seen at this time, ns) and is running.
    Running(u128),
    /// Every process of the section is gone: opened, gone (ns).
    Gone(u128, u128),
    /// The FIFO was closed by the test without a section ever opening it.
    NeverRan,
}

/// One critical section as the checker sees it.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub id: String,
    /// The section opened its FIFO: it ran, even without a start line.
    pub ran: bool,
    pub start: Option<u128>,
    pub end: Option<u128>,
    /// When the section's last process was seen gone.
    pub gone: Option<u128>,
    pub pid: Option<i32>,
    pub fence: Option<u64>,
    /// Ran under a shared lock (`LOCKRUN_MODE=shared`).
    pub shared: bool,
}

impl Section {
    /// The end used for overlap: the end line, else the moment it was seen
    /// gone, else never (still running when checked).
    fn effective_end(&self) -> u128 {
        self.end.or(self.gone).unwrap_or(u128::MAX)
    }
}

/// What the test knows of one lockrun invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running, or killed by the test (SIGKILL): no claim either way.
    Unknown,
    /// lockrun exited with this code.
    Exit(i32),
}

/// The pure checker: every violation, as one line each.
pub fn check(sections: &[Section], outcomes: &BTreeMap<String, Outcome>) -> Vec<String> {
    let mut problems = Vec::new();
    for section in sections {
        if !outcomes.contains_key(&section.id) {
            problems.push(format!(
                "section {} ran without a lockrun invocation of that id",
                section.id
            ));
        }
        if section.start.is_some() && section.end.is_none() && section.gone.is_none() {
            problems.push(format!("section {} is still running", section.id));
        }
    }
    let by_id: BTreeMap<&str, &Section> = sections.iter().map(|s| (s.id.as_str(), s)).collect();
    for (id, outcome) in outcomes {
        let section = by_id.get(id.as_str());
        let ran = section.is_some_and(|s| s.ran || s.start.is_some());
        match *outcome {
            Outcome::Unknown => {}
            Outcome::Exit(code) if NOT_RUN.contains(&code) && ran => problems.push(format!(
                "invocation {id} exited {code} (command not run) but its section ran"
            )),
            Outcome::Exit(0) if section.is_none_or(|s| s.end.is_none()) => problems.push(format!(
                "invocation {id} exited 0 but its section did not run to the end"
            )),
            Outcome::Exit(code) if code > 128 && section.is_some_and(|s| s.end.is_some()) => {
                problems.push(format!(
                    "invocation {id} exited {code} (killed by a signal) but its section ended normally"
                ));
            }
            Outcome::Exit(_) => {}
        }
    }
    // Overlap, in start order: each section must start after every earlier
    // one ended, unless both are shared. Every pair is compared (histories
    // are small), so shared sections in between hide nothing.
    let mut started: Vec<&Section> = sections.iter().filter(|s| s.start.is_some()).collect();
    started.sort_by_key(|s| s.start);
    for (i, prev) in started.iter().enumerate() {
        for section in &started[i + 1..] {
            if prev.shared && section.shared {
                continue;
            }
            if section.start.unwrap() < prev.effective_end() {
                problems.push(format!(
                    "sections overlap: {} (start {}, end {:?}, gone {:?}{}) and {} (start {}{})",
                    prev.id,
                    prev.start.unwrap(),
                    prev.end,
                    prev.gone,
                    if prev.shared { ", shared" } else { "" },
                    section.id,
                    section.start.unwrap(),
                    if section.shared { ", shared" } else { "" },
                ));
            }
            // Fences order the sections that exclude each other.
            if prev.fence.is_some() && section.fence.is_some() && prev.fence >= section.fence {
                problems.push(format!(
                    "fences do not strictly increase in acquisition order: {} has {:?}, then {} has {:?}",
                    prev.id, prev.fence, section.id, section.fence
                ));
            }
        }
    }
    problems
}

/// Parse the shared log: `S ID NS PID MODE [FENCE]` and `E ID NS PID` lines.
fn parse_log(text: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(id), Some(ns)) = (words.first(), words.get(1), words.get(2)) else {
            continue;
        };
        let Ok(ns) = ns.parse::<u128>() else { continue };
        let section = sections.entry((*id).to_owned()).or_insert_with(|| Section {
            id: (*id).to_owned(),
            ..Section::default()
        });
        match *kind {
            "S" => {
                section.start = Some(ns);
                section.ran = true;
                section.pid = words.get(3).and_then(|p| p.parse().ok());
                section.shared = words.get(4) == Some(&"shared");
                section.fence = words.get(5).and_then(|f| f.parse().ok());
            }
            "E" => section.end = Some(ns),
            _ => {}
        }
    }
    sections
}

struct Watcher {
    fifo: PathBuf,
    state: Arc<Mutex<Watch>>,
    thread: Option<JoinHandle<()>>,
}

/// A history being recorded in a directory of the test's own.
pub struct History {
    dir: PathBuf,
    log: PathBuf,
    next: u64,
    outcomes: BTreeMap<String, Outcome>,
    watchers: BTreeMap<String, Watcher>,
}

impl History {
    pub fn new(dir: &Path) -> History {
        let dir = dir.join("history");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        std::fs::write(&log, "").unwrap();
        History {
            dir,
            log,
            next: 0,
            outcomes: BTreeMap::new(),
            watchers: BTreeMap::new(),
        }
    }

    /// The shell script of a section running `body`.
    fn script(body: &str) -> String {
        "exec 9>\"$HIST_DIR/$HIST_ID.fifo\" || exit 99; printf s >&9; \
         echo \"S $HIST_ID $(date +%s%N) $$ ${LOCKRUN_MODE:-exclusive} ${LOCKRUN_FENCE:-}\" >> \"$HIST_DIR/log\"; \
         { "
        .to_owned()
            + body
            + "\n}; echo \"E $HIST_ID $(date +%s%N) $$\" >> \"$HIST_DIR/log\""
    }

    /// Add `NAME -c SECTION` to `lockrun` (the invocation up to the name),
    /// tagged with a fresh id; returns the command and the id.
    pub fn invocation(
        &mut self,
        mut lockrun: Command,
        name: &str,
        body: &str,
    ) -> (Command, String) {
        self.next += 1;
        // Unique across every history of every test run on the machine:
        // tests look for leftover processes by this id in their environment.
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!(
            "i{}p{}h{}",
            self.next,
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let fifo = self.dir.join(format!("{id}.fifo"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let state = Arc::new(Mutex::new(Watch::Waiting));
        let thread = {
            let (fifo, state) = (fifo.clone(), state.clone());
            std::thread::spawn(move || {
                // Blocks until the section (or `History::drop`) opens it.
                let Ok(mut reader) = std::fs::File::open(&fifo) else {
                    *state.lock().unwrap() = Watch::NeverRan;
                    return;
                };
                let mut first = [0u8; 1];
                let ran = matches!(reader.read(&mut first), Ok(1));
                let opened = now_ns();
                if ran {
                    *state.lock().unwrap() = Watch::Running(opened);
                }
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
                *state.lock().unwrap() = if ran {
                    Watch::Gone(opened, now_ns())
                } else {
                    Watch::NeverRan
                };
            })
        };
        self.watchers.insert(
            id.clone(),
            Watcher {
                fifo,
                state,
                thread: Some(thread),
            },
        );
        self.outcomes.insert(id.clone(), Outcome::Unknown);
        lockrun
            .args([name, "-c", &Self::script(body)])
            .env("HIST_ID", &id)
            .env("HIST_DIR", &self.dir);
        (lockrun, id)
    }

    /// Record lockrun's exit code for `id`.
    pub fn exited(&mut self, id: &str, code: i32) {
        self.outcomes.insert(id.to_owned(), Outcome::Exit(code));
    }

    fn watch(&self, id: &str) -> Watch {
        *self.watchers[id].state.lock().unwrap()
    }

    /// Has the section of `id` opened its FIFO (it is running or ran)?
    pub fn ran(&self, id: &str) -> bool {
        matches!(self.watch(id), Watch::Running(_) | Watch::Gone(..))
    }

    pub fn wait_started(&self, id: &str, timeout: Duration) {
        // Its start line, not only its FIFO: the pid and fence are logged then.
        wait_until(&format!("section {id} to start"), timeout, || {
            self.logged().get(id).is_some_and(|s| s.start.is_some())
        });
    }

    /// When every process of the section of `id` was gone, once it is.
    pub fn gone_at(&self, id: &str) -> Option<u128> {
        match self.watch(id) {
            Watch::Gone(_, at) => Some(at),
            _ => None,
        }
    }

    /// Wait until the section of `id` (which ran) is gone; when it went.
    pub fn wait_gone(&self, id: &str, timeout: Duration) -> u128 {
        let mut at = None;
        wait_until(
            &format!("section {id} (and its grandchildren) to be gone"),
            timeout,
            || {
                at = self.gone_at(id);
                at.is_some()
            },
        );
        at.unwrap()
    }

    /// The pid the section of `id` logged at its start.
    pub fn pid(&self, id: &str) -> i32 {
        self.logged()[id].pid.expect("the section logged its pid")
    }

    /// The shared log alone.
    fn logged(&self) -> BTreeMap<String, Section> {
        parse_log(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn sections(&self) -> BTreeMap<String, Section> {
        let mut sections = parse_log(&std::fs::read_to_string(&self.log).unwrap_or_default());
        for (id, watcher) in &self.watchers {
            let watch = *watcher.state.lock().unwrap();
            let section = sections.entry(id.clone()).or_insert_with(|| Section {
                id: id.clone(),
                ..Section::default()
            });
            // A section killed before its start line still ran: from when
            // its FIFO was seen open.
            match watch {
                Watch::Running(opened) => {
                    section.ran = true;
                    section.start = section.start.or(Some(opened));
                }
                Watch::Gone(opened, at) => {
                    section.ran = true;
                    section.start = section.start.or(Some(opened));
                    section.gone = Some(at);
                }
                Watch::Waiting | Watch::NeverRan => {}
            }
        }
        sections.retain(|_, s| s.ran || s.start.is_some());
        sections
    }

    /// Number of sections that started.
    pub fn started_count(&self) -> usize {
        self.sections()
            .values()
            .filter(|s| s.start.is_some())
            .count()
    }

    /// Check the whole history; panics with every violation and the log.
    /// Sections still running get a moment to end first: a section that
    /// outlives that counts as still running (and overlaps all later ones).
    pub fn assert_clean(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self
            .watchers
            .values()
            .any(|w| matches!(*w.state.lock().unwrap(), Watch::Running(_)))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let sections: Vec<Section> = self.sections().into_values().collect();
        let problems = check(&sections, &self.outcomes);
        assert!(
            problems.is_empty(),
            "history violations:\n  {}\noutcomes: {:?}\nlog:\n{}",
            problems.join("\n  "),
            self.outcomes,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for History {
    fn drop(&mut self) {
        for watcher in self.watchers.values_mut() {
            // Unblock a watcher whose section never opened its FIFO.
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&watcher.fifo);
        }
        for watcher in self.watchers.values_mut() {
            // A section still alive keeps its watcher blocked: do not join it
            // (the test's own `Proc`s kill everything they started).
            if !matches!(*watcher.state.lock().unwrap(), Watch::Running(_))
                && let Some(thread) = watcher.thread.take()
            {
                let _ = thread.join();
            }
        }
    }
}

/// A lockrun running one recorded section of a [`History`].
pub struct Run {
    pub proc: Proc,
    pub id: String,
    stdin: Option<std::process::ChildStdin>,
}

impl Run {
    /// Spawn `lockrun` (up to the name) running `body` as a section of
    /// `hist`. Its stdin is a pipe: a body that reads stdin holds until
    /// [`release`](Self::release).
    pub fn spawn(hist: &mut History, lockrun: Command, name: &str, body: &str) -> Run {
        let (mut cmd, id) = hist.invocation(lockrun, name, body);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut proc = Proc::spawn(cmd, &format!("lockrun {id}"));
        let stdin = proc.child.stdin.take();
        Run { proc, id, stdin }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Let a body that reads stdin finish.
    pub fn release(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, b"\n");
        }
    }

    /// Wait for lockrun's exit (recorded in the history); code and stderr.
    pub fn finish(&mut self, hist: &mut History, timeout: Duration) -> (i32, String) {
        let (status, stderr) = self.proc.finish(timeout);
        let code = code(status);
        hist.exited(&self.id, code);
        (code, stderr)
    }

    /// Expect exit `want` within `timeout`.
    pub fn expect(&mut self, hist: &mut History, timeout: Duration, want: i32) -> String {
        let (code, stderr) = self.finish(hist, timeout);
        assert_eq!(
            code, want,
            "lockrun {} exit code; stderr:\n{stderr}",
            self.id
        );
        stderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: &str, start: u128, end: Option<u128>, gone: Option<u128>) -> Section {
        Section {
            id: id.into(),
            ran: true,
            start: Some(start),
            end,
            gone,
            pid: Some(1),
            fence: Some(start as u64),
            shared: false,
        }
    }

    #[test]
    fn shared_sections_may_overlap_each_other_but_never_an_exclusive_one() {
        let shared = |id, start, end| Section {
            shared: true,
            ..section(id, start, Some(end), None)
        };
        let outcomes = exits(&[
            ("r1", Outcome::Exit(0)),
            ("r2", Outcome::Exit(0)),
            ("w", Outcome::Exit(0)),
            ("r3", Outcome::Exit(0)),
        ]);
        let readers = [shared("r1", 10, 30), shared("r2", 20, 40)];
        let two = exits(&[("r1", Outcome::Exit(0)), ("r2", Outcome::Exit(0))]);
        assert_eq!(check(&readers, &two), Vec::<String>::new());
        // An exclusive section after both readers, a reader after it: clean.
        let clean = [
            shared("r1", 10, 30),
            shared("r2", 20, 40),
            section("w", 50, Some(60), None),
            shared("r3", 70, 80),
        ];
        assert_eq!(check(&clean, &outcomes), Vec::<String>::new());
        // The exclusive one starting inside the long reader, after the
        // short one ended: still an overlap.
        let bad = [
            shared("r1", 10, 100),
            shared("r2", 20, 30),
            section("w", 50, Some(60), None),
        ];
        let problems = check(&bad, &outcomes);
        assert_eq!(
            problems.iter().filter(|p| p.contains("overlap")).count(),
            1,
            "{problems:?}"
        );
        // A reader starting inside an exclusive section.
        let bad = [section("w", 10, Some(60), None), shared("r1", 20, 30)];
        let problems = check(&bad, &outcomes);
        assert!(
            problems.iter().any(|p| p.contains("overlap")),
            "{problems:?}"
        );
    }

    fn exits(pairs: &[(&str, Outcome)]) -> BTreeMap<String, Outcome> {
        pairs.iter().map(|(id, o)| ((*id).to_owned(), *o)).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let sections = [
            section("a", 10, Some(20), Some(21)),
            section("b", 22, None, Some(30)),
            section("c", 31, Some(40), Some(41)),
        ];
        let outcomes = exits(&[
            ("a", Outcome::Exit(0)),
            ("b", Outcome::Exit(76)),
            ("c", Outcome::Exit(0)),
            ("d", Outcome::Exit(75)),
        ]);
        assert_eq!(check(&sections, &outcomes), Vec::<String>::new());
    }

    #[test]
    fn an_overlap_fails() {
        let sections = [
            section("a", 10, Some(20), None),
            section("b", 15, Some(25), None),
        ];
        let outcomes = exits(&[("a", Outcome::Exit(0)), ("b", Outcome::Exit(0))]);
        let problems = check(&sections, &outcomes);
        assert!(
            problems.iter().any(|p| p.contains("overlap")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_killed_section_overlaps_until_it_was_seen_gone() {
        // No end line: its end is when it was seen gone.
        let sections = [
            section("a", 10, None, Some(30)),
            section("b", 20, Some(40), None),
        ];
        let outcomes = exits(&[("a", Outcome::Unknown), ("b", Outcome::Exit(0))]);
        assert!(
            check(&sections, &outcomes)
                .iter()
                .any(|p| p.contains("overlap"))
        );
        // Still running when checked: overlaps everything after it.
        let sections = [
            section("a", 10, None, None),
            section("b", 1000, Some(1001), None),
        ];
        let problems = check(&sections, &outcomes);
        assert!(
            problems.iter().any(|p| p.contains("overlap")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("still running")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_overlap_with_a_long_earlier_section_fails() {
        // b is inside a, c after b but still inside a.
        let sections = [
            section("a", 10, Some(100), None),
            section("b", 20, Some(30), None),
            section("c", 40, Some(50), None),
        ];
        let outcomes = exits(&[
            ("a", Outcome::Exit(0)),
            ("b", Outcome::Exit(0)),
            ("c", Outcome::Exit(0)),
        ]);
        assert_eq!(
            check(&sections, &outcomes)
                .iter()
                .filter(|p| p.contains("overlap"))
                .count(),
            2
        );
    }

    #[test]
    fn fences_must_increase_in_start_order() {
        let mut b = section("b", 30, Some(40), None);
        b.fence = Some(5);
        let sections = [section("a", 10, Some(20), None), b];
        let outcomes = exits(&[("a", Outcome::Exit(0)), ("b", Outcome::Exit(0))]);
        let problems = check(&sections, &outcomes);
        assert!(
            problems.iter().any(|p| p.contains("fences")),
            "{problems:?}"
        );
    }

    #[test]
    fn lying_exit_codes_fail() {
        let sections = [
            section("a", 10, Some(20), None),
            section("b", 30, None, Some(35)),
        ];
        for (a, b) in [
            (Outcome::Exit(75), Outcome::Unknown),
            (Outcome::Exit(69), Outcome::Unknown),
            (Outcome::Exit(130), Outcome::Unknown),
            (Outcome::Exit(0), Outcome::Exit(0)),
        ] {
            let problems = check(&sections, &exits(&[("a", a), ("b", b)]));
            assert!(!problems.is_empty(), "{a:?} {b:?}");
        }
        // A section whose invocation the test never made.
        let problems = check(&sections, &exits(&[("a", Outcome::Exit(0))]));
        assert!(
            problems.iter().any(|p| p.contains("without")),
            "{problems:?}"
        );
        // Ran (opened its FIFO) but died before its start line: still ran.
        let early = Section {
            id: "c".into(),
            ran: true,
            gone: Some(50),
            ..Section::default()
        };
        let problems = check(&[early], &exits(&[("c", Outcome::Exit(75))]));
        assert!(!problems.is_empty());
    }
}
