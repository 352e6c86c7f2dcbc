//! The Linux-specific calls lockrun makes, in one place: the suspend-aware
//! clock, `/proc` readers, subreaping and closing inherited descriptors.
//! A port to another system starts here.

use std::time::{Duration, Instant};

/// An instant on `CLOCK_BOOTTIME`: the clock that keeps counting while the
/// machine is suspended or lockrun is stopped. Lease deadlines are kept on
/// it so that no pause can make a deadline look further away than it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BootTime(Duration);

impl BootTime {
    pub(crate) fn now() -> BootTime {
        BootTime(clock(libc::CLOCK_BOOTTIME))
    }

    /// Nanoseconds since boot, for the guardian's wire format (0 never occurs).
    pub(crate) fn as_nanos(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Saturates instead of overflowing: a deadline that far away is "never".
    pub(crate) fn saturating_add(self, d: Duration) -> BootTime {
        BootTime(self.0.saturating_add(d))
    }

    pub(crate) fn saturating_sub(self, d: Duration) -> BootTime {
        BootTime(self.0.saturating_sub(d))
    }

    /// How long from now until `self` (zero if it has passed).
    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_sub(Self::now().0)
    }

    pub(crate) fn has_passed(self) -> bool {
        Self::now() >= self
    }

    /// The same moment on tokio's (monotonic) timer clock, for sleeping until
    /// it. A pause of the whole machine makes the monotonic clock lag, so a
    /// sleep until this instant may end late, never early; the guardian,
    /// which enforces deadlines, waits on `CLOCK_BOOTTIME` itself.
    pub(crate) fn to_instant(self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.remaining())
            .unwrap_or(now + FAR_FUTURE)
    }
}

/// "Never", for timers: far enough to never fire, near enough for any clock.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    let rc = unsafe { libc::clock_gettime(id, &raw mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// `CLOCK_BOOTTIME` in nanoseconds, callable between fork and exec
/// (clock_gettime is async-signal-safe; no allocation).
pub(crate) fn boottime_nanos_signal_safe() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// When the machine booted, in Unix seconds: what `/proc/stat` calls
/// btime, which the kernel computes the same way (the real-time clock less
/// the boot-time one), without generating all of `/proc/stat`.
pub(crate) fn boot_time_unix() -> u64 {
    clock(libc::CLOCK_REALTIME)
        .saturating_sub(clock(libc::CLOCK_BOOTTIME))
        .as_secs()
}

/// A lower bound, in clock ticks since boot, for the start time
/// (`/proc/PID/stat` field 22) of any process started from now on.
/// CLOCK_MONOTONIC, never ahead of the boot-time clock the kernel stamps
/// processes with (older kernels stamped the monotonic one), rounded down.
pub(crate) fn start_time_lower_bound() -> u64 {
    // SAFETY: sysconf takes an integer (glibc answers from the auxv).
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let now = clock(libc::CLOCK_MONOTONIC);
    now.as_secs().saturating_mul(hz) + u64::from(now.subsec_nanos()) * hz / 1_000_000_000
}

/// The fields of `/proc/PID/stat` lockrun uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// R, S, D, T, t, Z, …
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
    /// When it started, in clock ticks since boot.
    pub(crate) start: u64,
}

/// Parse `/proc/PID/stat`; `None` if the process is gone.
pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    use std::io::Read;
    // Room for the whole line at once: std's growing reads from an empty
    // buffer took six read(2)s for its three hundred bytes. Bytes, not a
    // String: the command name in it need not be UTF-8, and the fields
    // lockrun reads come after it.
    let mut stat = Vec::with_capacity(1024);
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut file| file.read_to_end(&mut stat))
        .ok()?;
    parse_stat(&String::from_utf8_lossy(&stat))
}

fn parse_stat(stat: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may itself contain ") ".
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Fields 6 to 21 (session … itrealvalue), then 22, starttime.
    let start = fields.nth(16)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// A process's command line, words joined by spaces.
pub(crate) fn process_command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The pids of every process, from `/proc`.
pub(crate) fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc").map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        },
    )
}

/// Every live process whose parent chain leads to `ancestor` and that
/// started no earlier than `started_from` (clock ticks since boot), except
/// `exclude` and whatever descends from them. Zombies are left out: they
/// run nothing.
pub(crate) fn descendants(ancestor: i32, exclude: &[i32], started_from: u64) -> Vec<i32> {
    let table: Vec<(i32, ProcStat)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .collect();
    let parent_of = |pid: i32| table.iter().find(|(p, _)| *p == pid).map(|(_, s)| s.ppid);
    table
        .iter()
        .filter(|(pid, stat)| {
            stat.state != 'Z' && stat.start >= started_from && !exclude.contains(pid)
        })
        .filter(|(pid, _)| {
            let mut at = *pid;
            // Bounded: a pid table can change under us while we walk it.
            for _ in 0..table.len() {
                match parent_of(at) {
                    Some(parent) if exclude.contains(&parent) => return false,
                    Some(parent) if parent == ancestor => return true,
                    Some(parent) if parent > 1 => at = parent,
                    _ => return false,
                }
            }
            false
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// The children of this process, from `/proc/self/task/*/children`;
/// `None` if the kernel does not say (no /proc, or built without
/// CONFIG_PROC_CHILDREN): then the caller must look at every process.
pub(crate) fn children_of_self() -> Option<Vec<i32>> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("children");
        let text = std::fs::read_to_string(path).ok()?;
        kids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Some(kids)
}

/// Make orphaned descendants ours (instead of init's), so that leftovers
/// can be reaped and seen after the command exits.
pub(crate) fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and touches
    // no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!("PR_SET_CHILD_SUBREAPER failed");
    }
}

/// How a forked helper closes the descriptors it inherited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseMethod {
    /// `close_range(2)` (Linux 5.9), falling back to a scan if it fails.
    CloseRange,
    /// Only the fallback: list `/proc/self/fd` with raw getdents64, or close
    /// every number up to the fd limit when /proc is missing. Selected by
    /// `LOCKRUN_GUARDIAN_CLOSE=scan` so tests can exercise the old-kernel path.
    Scan,
}

impl CloseMethod {
    pub(crate) fn from_env() -> CloseMethod {
        match std::env::var_os("LOCKRUN_GUARDIAN_CLOSE") {
            Some(v) if v == "scan" => CloseMethod::Scan,
            _ => CloseMethod::CloseRange,
        }
    }
}

/// Close every descriptor numbered `from` or above.
///
/// # Safety
/// Only for the guardian's process (it shares lockrun's memory): raw system
/// calls only (no errno), nothing allocates, no thread data is touched.
pub(crate) unsafe fn close_from(from: i32, method: CloseMethod) {
    use crate::raw::sys;
    // SAFETY: raw system calls on integers and stack buffers; see above.
    unsafe {
        if method == CloseMethod::CloseRange
            && sys!(libc::SYS_close_range, from as u32, u32::MAX, 0u32) == 0
        {
            return;
        }
        let dir = sys!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC
        );
        if dir >= 0 {
            let dir = dir as i32;
            let mut buf = [0u8; 4096];
            let mut to_close = [0i32; 256];
            // Closing while listing may skip entries: list, close, repeat
            // until a pass finds nothing left to close.
            loop {
                sys!(libc::SYS_lseek, dir, 0, libc::SEEK_SET);
                let mut found = 0usize;
                'list: loop {
                    let n = sys!(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
                    if n <= 0 {
                        break;
                    }
                    let mut off = 0usize;
                    while off < n as usize {
                        // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
                        let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                        let mut fd = 0i32;
                        let mut digits = 0;
                        let mut i = off + 19;
                        while i < off + reclen && buf[i] != 0 {
                            let c = buf[i];
                            if !c.is_ascii_digit() {
                                digits = 0;
                                break;
                            }
                            fd = fd.saturating_mul(10).saturating_add(i32::from(c - b'0'));
                            digits += 1;
                            i += 1;
                        }
                        if digits > 0 && fd >= from && fd != dir {
                            to_close[found] = fd;
                            found += 1;
                            if found == to_close.len() {
                                break 'list;
                            }
                        }
                        off += reclen.max(1);
                    }
                }
                for &fd in &to_close[..found] {
                    sys!(libc::SYS_close, fd);
                }
                if found == 0 {
                    break;
                }
            }
            sys!(libc::SYS_close, dir);
            return;
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if sys!(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            0,
            &raw mut limit
        ) == 0
        {
            limit.rlim_cur.min(1 << 20) as i32
        } else {
            1024
        };
        for fd in from..max {
            sys!(libc::SYS_close, fd);
        }
    }
}

/// Does this process have any child, running or not (even a clone child,
/// `__WALL`)? One `waitid` that reaps nothing, instead of reading
/// `/proc/self/task/*/children`.
/// Block every signal on this thread; returns the mask to put back with
/// [`set_signal_mask`]. Around a clone, a fork or a thread's start: no
/// handler of lockrun's runs in a process or thread that must not run it,
/// and a new thread inherits the full mask. Async-signal-safe.
pub(crate) fn block_all_signals() -> libc::sigset_t {
    // SAFETY: pthread_sigmask on sigsets on our stack.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const all, &raw mut old);
        old
    }
}

/// This thread's signal mask back to `mask` (from [`block_all_signals`]).
pub(crate) fn set_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: pthread_sigmask with a sigset the caller owns.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

pub(crate) fn has_any_child() -> bool {
    waitid_finds(libc::__WALL)
}

/// Does this process have a child that is not a "clone child" (one whose
/// death sends no SIGCHLD)? The guardian is one when it shares lockrun's
/// memory; the command and every orphan reparented to lockrun are not.
pub(crate) fn has_signalling_child() -> bool {
    waitid_finds(0)
}

fn waitid_finds(extra: libc::c_int) -> bool {
    // SAFETY: waitid with WNOWAIT | WNOHANG into a zeroed siginfo on our
    // stack: it reports, it reaps nothing and never blocks.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_ALL,
            0,
            &raw mut info,
            libc::WEXITED
                | libc::WSTOPPED
                | libc::WCONTINUED
                | libc::WNOHANG
                | libc::WNOWAIT
                | extra,
        );
        // ECHILD: none at all; anything else (0, EINTR): assume there is one.
        !(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }
}

/// 128 random bits straight from the kernel: one `getrandom` instead of
/// seeding rand's generator, whose start-up asks the CPU for its features,
/// one `cpuid` each, which a virtual machine traps (bench/analysis.md,
/// "sixth round"). rand's generator only where getrandom fails.
pub(crate) fn random_u128() -> u128 {
    let mut bits = [0u8; 16];
    // SAFETY: getrandom writes at most `bits.len()` bytes into `bits`.
    let got = unsafe { libc::getrandom(bits.as_mut_ptr().cast(), bits.len(), 0) };
    if usize::try_from(got) == Ok(bits.len()) {
        u128::from_ne_bytes(bits)
    } else {
        rand::random::<u128>()
    }
}

/// A random number in `0..=max`, for jitter (a modulo's bias is of no
/// matter there).
pub(crate) fn random_up_to(max: u64) -> u64 {
    u64::try_from(random_u128() % (u128::from(max) + 1)).unwrap_or(max)
}

/// The kernel's page size (4 KiB on x86_64; 16 or 64 KiB on some aarch64
/// kernels). Allocates nothing: the allocator asks too.
pub(crate) fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf only reads a configuration value.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096);
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

/// Memory a fork must not copy, marked `MADV_DONTFORK` until dropped:
/// lockrun's heap (the static build's reserved range, [`crate::heap`]) and
/// its stack, for a child that uses neither (the forked guardian).
///
/// While one exists, no other fork may happen: its child would have no
/// heap and no stack. lockrun makes one only around the guardian's clone,
/// on its main thread, before any other thread exists.
pub(crate) struct Unshared {
    ranges: [(usize, usize); 2],
}

/// How far below the current frame lockrun's stack is marked: deeper
/// frames come after the fork. Nothing else is mapped there: the kernel
/// keeps other mappings at least the stack limit (128 MiB or more) below
/// the top of the stack.
const STACK_BELOW: usize = 1024 * 1024;

impl Unshared {
    pub(crate) fn heap_and_stack() -> Unshared {
        #[cfg(target_env = "musl")]
        let heap = crate::heap::reserved().unwrap_or((0, 0));
        #[cfg(not(target_env = "musl"))]
        let heap = (0, 0);
        Unshared::ranges([heap, stack_range().unwrap_or((0, 0))])
    }

    fn ranges(ranges: [(usize, usize); 2]) -> Unshared {
        let unshared = Unshared { ranges };
        unshared.advise(libc::MADV_DONTFORK);
        unshared
    }

    fn advise(&self, advice: libc::c_int) {
        for &(start, len) in &self.ranges {
            if len > 0 {
                // SAFETY: madvise changes how a fork treats these addresses,
                // nothing about their contents. A hole in the range (below
                // the stack) is skipped by the kernel, with ENOMEM.
                let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, advice) };
                debug_assert!(
                    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM),
                    "madvise({advice}) failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        self.advise(libc::MADV_DOFORK);
    }
}

/// From `STACK_BELOW` under the current frame up to the program's
/// arguments and environment at the stack's top, which stay shared: the
/// kernel reads a process's `/proc/PID/cmdline` (`ps`, `pgrep -f`) from
/// its memory, the guardian's too. The top ends with the executable's name
/// (`AT_EXECFN`); the arguments start at argv\[0\]
/// (`program_invocation_name`, in glibc and musl alike).
/// Only on the main thread (lockrun's runtime runs there): another
/// thread's frame is on a stack elsewhere, and the range up to the main
/// stack's top would take in whatever lies between.
fn stack_range() -> Option<(usize, usize)> {
    unsafe extern "C" {
        static program_invocation_name: *const libc::c_char;
    }
    // SAFETY: getpid and gettid take nothing.
    if unsafe { libc::syscall(libc::SYS_gettid) != libc::syscall(libc::SYS_getpid) } {
        return None;
    }
    // SAFETY: getauxval reads the auxiliary vector; no side effects.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as usize;
    if execfn == 0 {
        return None;
    }
    // SAFETY: AT_EXECFN points at a NUL-terminated string the kernel wrote.
    let name = unsafe { std::ffi::CStr::from_ptr(execfn as *const libc::c_char) };
    let page = page_size();
    let mut top = (execfn + name.to_bytes_with_nul().len()).next_multiple_of(page);
    // SAFETY: libc sets it before main, to argv[0], and never changes it.
    let argv0 = unsafe { program_invocation_name } as usize;
    let here = std::ptr::addr_of!(page) as usize;
    if (here..top).contains(&argv0) {
        top = argv0 & !(page - 1);
    }
    let start = (here & !(page - 1)).checked_sub(STACK_BELOW)?;
    // A frame more than 64 MiB under the top is not on the stack that
    // ends there.
    (start < top && top - start <= STACK_BELOW + (64 << 20)).then(|| (start, top - start))
}

/// This process's real uid, asked of the kernel once: the keeper look-up,
/// the default lock directory and the holder record all need it on every
/// run, and lockrun never changes its uid.
pub(crate) fn uid() -> nix::unistd::Uid {
    static UID: std::sync::OnceLock<nix::unistd::Uid> = std::sync::OnceLock::new();
    *UID.get_or_init(nix::unistd::getuid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_up_to_stays_in_range_and_reaches_both_ends() {
        for max in [0, 1, 7, u64::MAX] {
            assert!((0..200).all(|_| random_up_to(max) <= max));
        }
        let draws: std::collections::HashSet<u64> = (0..200).map(|_| random_up_to(1)).collect();
        assert_eq!(draws.len(), 2, "{draws:?}");
    }

    #[test]
    fn unshared_memory_is_missing_in_a_fork_until_dropped() {
        // A child that reads one byte of the page: exit 0, or SIGSEGV when
        // the page was not copied into it.
        fn fork_and_read(page: *const u8) -> libc::c_int {
            // SAFETY: the child only reads the page and calls _exit, both
            // fine in the fork of a threaded process.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    let byte = std::ptr::read_volatile(page);
                    libc::_exit(i32::from(byte != 7));
                }
                let mut status = 0;
                libc::waitpid(pid, &raw mut status, 0);
                status
            }
        }
        // SAFETY: a fresh private anonymous page, written, then unmapped.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            page.cast::<u8>().write(7);
            // No core file from the child that is meant to crash.
            let mut old: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_CORE, &raw mut old);
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: old.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &raw const none);
            let unshared = super::Unshared::ranges([(page as usize, 4096), (0, 0)]);
            let marked = fork_and_read(page.cast());
            drop(unshared);
            let restored = fork_and_read(page.cast());
            libc::setrlimit(libc::RLIMIT_CORE, &raw const old);
            libc::munmap(page, 4096);
            assert!(
                libc::WIFSIGNALED(marked) && libc::WTERMSIG(marked) == libc::SIGSEGV,
                "status {marked}"
            );
            assert!(
                libc::WIFEXITED(restored) && libc::WEXITSTATUS(restored) == 0,
                "status {restored}"
            );
        }
    }

    use super::*;

    #[test]
    fn stat_with_parentheses_in_the_name() {
        let stat = "42 (a) b) c) S 7 42 42 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 12345 2297856";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                state: 'S',
                ppid: 7,
                pgrp: 42,
                start: 12345
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_process_whose_name_is_not_utf8_is_found() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("lockrun-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join(std::ffi::OsStr::from_bytes(b"sl\xffeep"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let mut child = std::process::Command::new(&link).arg("5").spawn().unwrap();
        let stat = proc_stat(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(stat.map(|s| s.ppid), Some(std::process::id() as i32));
    }

    #[test]
    fn a_process_started_later_starts_no_earlier_than_the_bound() {
        let bound = start_time_lower_bound();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let start = proc_stat(child.id() as i32).map(|s| s.start);
        let _ = child.kill();
        let _ = child.wait();
        let start = start.expect("the child's /proc/PID/stat");
        assert!(start >= bound, "started at tick {start}, bound {bound}");
    }

    #[test]
    fn boottime_moves_forward_and_saturates() {
        let a = BootTime::now();
        let b = BootTime::now();
        assert!(b >= a);
        assert!(!a.saturating_add(Duration::MAX).has_passed());
    }
}
