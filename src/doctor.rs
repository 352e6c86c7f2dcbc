//! `lockrun doctor [--backend URL]`: look for setups that silently break
//! exclusion, and say so in plain words, one finding per line on stdout.
//! Exit 0 when nothing is wrong, [`crate::exit::DOCTOR_PROBLEMS`] when a
//! problem was found, and the usual codes when the backend cannot be
//! reached (69) or refuses us (77). See docs/DESIGN.md, "lockrun doctor".
//!
//! Doctor only looks: it creates no directory, takes no lock and changes no
//! server setting.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backend::{BackendConfig, file, redis};
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit::Exit;

/// How bad a finding is: only problems make doctor exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    /// Worth knowing, does not break exclusion by itself.
    Note,
    /// Breaks (or may silently break) mutual exclusion.
    Problem,
}

#[derive(Default)]
struct Report {
    lines: Vec<(Level, String)>,
}

impl Report {
    fn ok(&mut self, text: impl Into<String>) {
        self.lines.push((Level::Ok, text.into()));
    }
    fn note(&mut self, text: impl Into<String>) {
        self.lines.push((Level::Note, text.into()));
    }
    fn problem(&mut self, text: impl Into<String>) {
        self.lines.push((Level::Problem, text.into()));
    }
}

/// Clock skew against the server beyond which doctor calls it a problem.
const SKEW_PROBLEM: Duration = Duration::from_secs(2);

pub(crate) async fn doctor(global: &GlobalArgs) -> Result<Exit> {
    let config = BackendConfig::parse(global.backend.as_deref())?;
    let mut report = Report::default();
    match config {
        BackendConfig::File(config) => {
            let dir = config.dir.clone().unwrap_or_else(file::default_dir);
            check_lock_dir(&dir, config.dir.is_none(), &TMPFILES_DIRS, &mut report);
        }
        BackendConfig::Redis(config) => check_redis(config, &mut report).await?,
        BackendConfig::Postgres(config) => check_postgres(config, &mut report).await?,
        BackendConfig::Etcd(config) => check_etcd(config, &mut report).await?,
        other @ BackendConfig::CloudShell(_) => {
            let backend = crate::backend::AnyBackend::connect(other).await?;
            let url = crate::lock::Inspect::display_url(&backend);
            report.ok(format!(
                "{url} answers; doctor has no further checks for it"
            ));
        }
    }
    check_local_clock(&mut report);
    let problems = report
        .lines
        .iter()
        .filter(|(level, _)| *level == Level::Problem)
        .count();
    for (level, text) in &report.lines {
        let tag = match level {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Problem => "problem",
        };
        println!("{tag}: {}", crate::ui::sanitize(text));
    }
    if problems == 0 {
        println!("lockrun doctor: no problems found");
        Ok(Exit::Success)
    } else {
        println!(
            "lockrun doctor: {problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
        Ok(Exit::DoctorProblems)
    }
}

// ---------------------------------------------------------------------------
// The file backend's directory.

/// systemd-tmpfiles' configuration directories, highest precedence first: a
/// file of the same name in an earlier one hides the later ones.
const TMPFILES_DIRS: [&str; 3] = ["/etc/tmpfiles.d", "/run/tmpfiles.d", "/usr/lib/tmpfiles.d"];

/// File system magic numbers (statfs(2) `f_type`) of network and
/// cluster file systems, where flock(2) is emulated, local to one client,
/// or can be dropped by the server without the holder noticing.
const NETWORK_FS: [(i64, &str); 14] = [
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x0102_1997, "9p"),
    (0x6573_5546, "FUSE (sshfs, a cloud drive, ...)"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x7375_7245, "Coda"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x564C, "NCP"),
];

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn check_lock_dir(dir: &Path, default: bool, tmpfiles_dirs: &[&str], report: &mut Report) {
    let shown = dir.display();
    // Not there yet: lockrun creates it; judge the directory it would be in.
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    if existing != dir {
        report.note(format!(
            "lock directory {shown} does not exist yet; lockrun creates it{}",
            if default {
                " (private to this user)"
            } else {
                ""
            }
        ));
    }
    match fs_type(existing) {
        Some(kind) => {
            if let Some((_, name)) = NETWORK_FS.iter().find(|(magic, _)| *magic == kind) {
                report.problem(format!(
                    "lock directory {shown} is on {name}, a network file system: flock(2) there is emulated or local to one machine, and a server can drop a lock without telling its holder; keep lock files on a local file system, and lock across machines with a redis://, etcd:// or postgres:// backend"
                ));
            } else if kind == TMPFS_MAGIC && !dir.starts_with("/run") {
                report.problem(format!(
                    "lock directory {shown} is on a tmpfs outside /run: a service with PrivateTmp= or PrivateDevices=, or a container, gets its own copy of such a mount, so lockruns there do not exclude the others; use /run/lock (the default) or a directory on a disk"
                ));
            } else {
                report.ok(format!(
                    "lock directory {shown} is on a local file system{}",
                    if kind == TMPFS_MAGIC {
                        " (tmpfs under /run)"
                    } else {
                        ""
                    }
                ));
            }
        }
        None => report.note(format!("cannot tell the file system of {shown}")),
    }
    match tmpfiles_age_rule(dir, tmpfiles_dirs) {
        Some(rule) => report.problem(format!(
            "lock directory {shown} is cleaned by systemd-tmpfiles of entries older than {} ({}: {}): a lock file deleted while in use lets a second lockrun create a new one and hold the same lock; exclude it (a line 'x {}' in /etc/tmpfiles.d/lockrun.conf) or use /run/lock",
            rule.age,
            rule.file.display(),
            rule.line,
            dir.display()
        )),
        None => report.ok(format!(
            "no systemd-tmpfiles age rule cleans {shown}"
        )),
    }
    if existing == dir {
        check_permissions(dir, report);
    }
}

fn fs_type(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is a
    // NUL-terminated string that outlives the call.
    let mut buf = unsafe { std::mem::zeroed::<libc::statfs>() };
    // SAFETY: as above; statfs only writes into `buf`.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut buf) };
    // The magic numbers are 32 bits; f_type is signed on glibc, unsigned
    // on musl, and on some platforms 32 bits wide: its low 32 bits it is.
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some((buf.f_type as i64) & 0xFFFF_FFFF)
}

/// An age rule of systemd-tmpfiles that cleans a directory.
#[derive(Debug, PartialEq, Eq)]
struct AgeRule {
    file: PathBuf,
    line: String,
    age: String,
}

/// The rule that ages out entries of `dir` (the rule's path is `dir` or one
/// of its parents), unless an `x` line excludes `dir` or a parent.
fn tmpfiles_age_rule(dir: &Path, roots: &[&str]) -> Option<AgeRule> {
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut names: Vec<_> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".conf"))
            .collect();
        names.sort();
        for name in names {
            if seen.insert(name.clone()) {
                files.push(Path::new(root).join(name));
            }
        }
    }
    let mut rule = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(kind), Some(path)) = (fields.first(), fields.get(1)) else {
                continue;
            };
            let kind = kind.trim_end_matches(['!', '-', '=', '~', '^', '+']);
            let covers = path_covers(path, dir);
            if !covers {
                continue;
            }
            if kind == "x" {
                // Excluded from cleaning, with everything under it.
                return None;
            }
            let age = fields.get(5).copied().unwrap_or("-");
            if age != "-"
                && !matches!(kind, "X" | "r" | "R" | "L" | "f" | "F" | "w")
                && rule.is_none()
            {
                rule = Some(AgeRule {
                    file: file.clone(),
                    line: line.to_owned(),
                    age: age.trim_start_matches('~').to_owned(),
                });
            }
        }
    }
    rule
}

/// Whether the tmpfiles path `pattern` (shell globs allowed per component)
/// is `dir` or one of its parents.
fn path_covers(pattern: &str, dir: &Path) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let dir: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(c) => Some(c.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    pattern.len() <= dir.len() && pattern.iter().zip(&dir).all(|(p, d)| glob(p, d))
}

/// `*`, `?` and literal characters (enough for tmpfiles.d paths).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A directory shared by a group (or by everyone) needs the bits that keep
/// the lock files usable by all of them and safe from each other.
fn check_permissions(dir: &Path, report: &mut Report) {
    let shown = dir.display();
    let Ok(meta) = std::fs::metadata(dir) else {
        report.note(format!("cannot read the permissions of {shown}"));
        return;
    };
    let mode = meta.permissions().mode();
    let group_writable = mode & 0o020 != 0;
    let world_writable = mode & 0o002 != 0;
    if !group_writable && !world_writable {
        report.ok(format!(
            "lock directory {shown} is writable only by its owner (mode {:04o})",
            mode & 0o7777
        ));
        return;
    }
    if world_writable {
        if mode & 0o1000 == 0 {
            report.problem(format!(
                "lock directory {shown} is writable by everyone without the sticky bit: anyone can delete or replace a lock file in use, and the next lockrun then takes the same lock again; chmod +t {shown}, or share it by group (install -d -m 2770 -g GROUP)"
            ));
        } else {
            report.note(format!(
                "lock directory {shown} is shared by everyone (sticky, mode {:04o}): any user can take and hold any lock in it; share it by group (install -d -m 2770 -g GROUP) to keep others out",
                mode & 0o7777
            ));
        }
        // The group rules below are for a directory shared by one group.
        return;
    }
    if mode & 0o2000 == 0 {
        report.problem(format!(
            "lock directory {shown} is group-writable but not setgid: each lock file gets its creator's own group, so other members may be unable to open it; chmod g+s {shown}"
        ));
    }
    {
        let mut bad = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.filter_map(std::result::Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if Path::new(&name).extension().is_none_or(|e| e != "lock") {
                    continue;
                }
                if let Ok(file) = entry.metadata()
                    && file.is_file()
                    && (file.mode() & 0o060 != 0o060 || file.gid() != meta.gid())
                {
                    bad.push(name);
                }
            }
        }
        bad.sort();
        if !bad.is_empty() {
            let count = bad.len();
            bad.truncate(5);
            report.problem(format!(
                "{count} lock file{} in {shown} {} not readable and writable by the directory's group ({}{}): another member cannot record itself as the holder, so waiters name a previous holder; chgrp and chmod g+rw them",
                if count == 1 { "" } else { "s" },
                if count == 1 { "is" } else { "are" },
                bad.join(", "),
                if count > 5 { ", ..." } else { "" }
            ));
        } else if mode & 0o2000 != 0 {
            report.ok(format!(
                "shared lock directory {shown} is setgid (mode {:04o}) and its lock files are group-writable",
                mode & 0o7777
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Servers.

/// This machine's clock minus the server's, from a reading taken at
/// `server_secs` by a request that took from `sent` to now.
fn skew(sent: (SystemTime, Instant), server_secs: f64) -> f64 {
    let round_trip = sent.1.elapsed();
    let local_mid = sent.0 + round_trip / 2;
    let local = local_mid
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    local - server_secs
}

fn report_skew(report: &mut Report, server: &str, skew: f64) {
    let size = Duration::from_secs_f64(skew.abs());
    let shown = if size < Duration::from_secs(1) {
        format!("{} ms", size.as_millis())
    } else {
        humantime::format_duration(Duration::from_secs(size.as_secs())).to_string()
    };
    let direction = if skew > 0.0 { "ahead of" } else { "behind" };
    if size >= SKEW_PROBLEM {
        report.problem(format!(
            "this machine's clock is {shown} {direction} {server}'s: holder records, status times and anything the command does by the wall clock (fencing by time, expiry stamps) disagree between machines; check NTP (timedatectl, chronyc tracking)"
        ));
    } else {
        report.ok(format!(
            "this machine's clock is within {shown} of {server}'s"
        ));
    }
}

/// The kernel's own view of this machine's clock: unsynchronised means no
/// NTP daemon is steering it, so it drifts away from the others.
fn check_local_clock(report: &mut Report) {
    // SAFETY: a zeroed timex with modes 0 only reads the kernel's state.
    let mut timex = unsafe { std::mem::zeroed::<libc::timex>() };
    // SAFETY: adjtimex writes only into `timex`.
    let state = unsafe { libc::adjtimex(&raw mut timex) };
    if state == libc::TIME_ERROR {
        report.note(
            "this machine's clock is not synchronised (the kernel reports no NTP steering): it drifts from other machines' clocks; enable NTP (timedatectl set-ntp true, chrony)",
        );
    }
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

async fn check_redis(config: redis::RedisConfig, report: &mut Report) -> Result<()> {
    let mut backend = redis::RedisBackend::connect(config).await?;
    let server = format!("redis at {}", backend.server_address());
    let replication: String = backend
        .doctor_query("INFO replication", ::redis::cmd("INFO").arg("replication"))
        .await?;
    match info_field(&replication, "role") {
        Some("slave" | "replica") => {
            let primary = match (
                info_field(&replication, "master_host"),
                info_field(&replication, "master_port"),
            ) {
                (Some(host), Some(port)) => format!(" of {host}:{port}"),
                _ => String::new(),
            };
            report.problem(format!(
                "{server} is a replica{primary}: lockrun cannot take locks on it, and a lock taken on its primary is lost if the primary fails over to it (replication is asynchronous); point every lockrun at the primary"
            ));
        }
        Some(_) => {
            let replicas = info_field(&replication, "connected_slaves")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            if replicas > 0 {
                report.note(format!(
                    "{server} is a primary with {replicas} replica(s): if it fails over, locks granted just before may be missing on the new primary (replication is asynchronous)"
                ));
            } else {
                report.ok(format!("{server} is a primary without replicas"));
            }
        }
        None => report.note(format!("{server} does not say whether it is a replica")),
    }
    let persistence: String = backend
        .doctor_query("INFO persistence", ::redis::cmd("INFO").arg("persistence"))
        .await?;
    let aof = info_field(&persistence, "aof_enabled") == Some("1");
    let save: Option<Vec<String>> = backend
        .doctor_query(
            "CONFIG GET save",
            ::redis::cmd("CONFIG").arg("GET").arg("save"),
        )
        .await
        .ok();
    let rdb = save
        .as_ref()
        .and_then(|pair| pair.get(1))
        .map(|rules| !rules.trim().is_empty());
    let max_ttl = humantime::format_duration(backend.max_ttl());
    match (aof, rdb) {
        (true, _) | (false, Some(true)) => report.ok(format!(
            "{server} persists its data ({}); after a restart lockrun still grants no lock for max-ttl {max_ttl}, so a restored, stale lock never outlives its holder",
            if aof { "AOF" } else { "RDB snapshots" }
        )),
        (false, Some(false)) => report.note(format!(
            "{server} has no persistence (no AOF, no RDB snapshots): a restart forgets every lock; lockrun's restart guard grants no lock for max-ttl {max_ttl} after a restart, which is safe as long as every lockrun using this server has the same max-ttl in its URL (a longer --ttl is refused)"
        )),
        (false, None) => report.note(format!(
            "{server} does not let us read its save setting (CONFIG GET); without AOF or RDB a restart forgets every lock, and the restart guard (max-ttl {max_ttl}) covers that only if every lockrun using this server has the same max-ttl"
        )),
    }
    if let Some(up) = info_field(
        &backend
            .doctor_query::<String>("INFO server", ::redis::cmd("INFO").arg("server"))
            .await?,
        "uptime_in_seconds",
    )
    .and_then(|s| s.parse::<u64>().ok())
        && Duration::from_secs(up) < backend.max_ttl()
    {
        report.note(format!(
            "{server} started {up}s ago: lockrun grants no lock on it until max-ttl {max_ttl} after its start"
        ));
    }
    let sent = (SystemTime::now(), Instant::now());
    let time: Vec<String> = backend.doctor_query("TIME", &::redis::cmd("TIME")).await?;
    if let (Some(secs), Some(micros)) = (
        time.first().and_then(|s| s.parse::<f64>().ok()),
        time.get(1).and_then(|s| s.parse::<f64>().ok()),
    ) {
        report_skew(report, &server, skew(sent, secs + micros / 1e6));
    }
    Ok(())
}

async fn check_postgres(
    config: crate::backend::postgres::PgConfig,
    report: &mut Report,
) -> Result<()> {
    let mut backend = match crate::backend::postgres::PgBackend::connect(config).await {
        Ok(backend) => backend,
        // The connection's own check found a transaction pooler: that is
        // the finding, not a failure of doctor.
        Err(Error::Unavailable(message)) if message.contains("pooler") => {
            report.problem(message);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let server = format!("postgres at {}", backend.server_address());
    report.ok(format!(
        "{server} keeps our session (no transaction pooler in the way)"
    ));
    let sent = (SystemTime::now(), Instant::now());
    let now = backend.doctor_clock().await?;
    report_skew(report, &server, skew(sent, now));
    Ok(())
}

async fn check_etcd(config: crate::backend::etcd::EtcdConfig, report: &mut Report) -> Result<()> {
    let backend = crate::backend::etcd::EtcdBackend::connect(config).await?;
    let endpoints = backend.endpoints().to_vec();
    let mut leaders = std::collections::BTreeSet::new();
    let mut answered = 0;
    let mut statuses = Vec::with_capacity(endpoints.len());
    for i in 0..endpoints.len() {
        statuses.push(backend.member_status(i).await);
    }
    // No member answers: the backend is unreachable (69), as on the others.
    if statuses.iter().all(Result::is_err)
        && let Some(Err(why)) = statuses.first()
    {
        return Err(Error::unavailable(format!(
            "etcd at {}: no member answers ({why})",
            endpoints.join(",")
        )));
    }
    for (endpoint, status) in endpoints.iter().zip(statuses) {
        match status {
            Ok(status) => {
                answered += 1;
                let leader = status["leader"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| status["leader"].as_u64().map(|n| n.to_string()))
                    .filter(|l| l != "0");
                let errors = status["errors"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                match leader {
                    Some(leader) => {
                        leaders.insert(leader);
                    }
                    None => report.problem(format!(
                        "etcd member {endpoint} has no leader: it cannot grant or renew a lock until the cluster elects one"
                    )),
                }
                if !errors.is_empty() {
                    report.problem(format!("etcd member {endpoint} reports: {errors}"));
                }
            }
            Err(why) => report.problem(format!(
                "etcd endpoint {endpoint} does not answer ({why}): lockrun fails over to the others, but check the URL lists live members"
            )),
        }
    }
    if leaders.len() > 1 {
        report.problem(format!(
            "etcd members disagree on the leader ({}): the cluster is split or electing",
            leaders.into_iter().collect::<Vec<_>>().join(", ")
        ));
    } else if let Some(leader) = leaders.first() {
        report.ok(format!(
            "{answered} of {} etcd endpoint(s) answer and agree on leader {leader}",
            endpoints.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("tmp", "tmp"));
        assert!(glob("lockrun-*", "lockrun-1000"));
        assert!(glob("*", "anything"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(!glob("tmp", "tmpx"));
    }

    #[test]
    fn tmpfiles_age_rules_cover_the_dir_and_its_parents_unless_excluded() {
        let root = tempfile::tempdir().unwrap();
        let usr = root.path().join("usr");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&usr).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            usr.join("tmp.conf"),
            "# comment\nq /tmp 1777 root root 10d\nd /run/lock 0755 root root -\n",
        )
        .unwrap();
        let roots = [etc.to_str().unwrap(), usr.to_str().unwrap()];
        let rule = tmpfiles_age_rule(Path::new("/tmp/lockrun-1000"), &roots).unwrap();
        assert_eq!(rule.age, "10d");
        assert_eq!(rule.line, "q /tmp 1777 root root 10d");
        assert_eq!(
            tmpfiles_age_rule(Path::new("/run/lock/lockrun-1000"), &roots),
            None
        );
        assert_eq!(tmpfiles_age_rule(Path::new("/tmpx/locks"), &roots), None);
        // An x line with a glob excludes it.
        std::fs::write(etc.join("lockrun.conf"), "x /tmp/lockrun-*\n").unwrap();
        assert_eq!(
            tmpfiles_age_rule(Path::new("/tmp/lockrun-1000"), &roots),
            None
        );
        // A file of the same name in a higher directory hides the lower one.
        std::fs::remove_file(etc.join("lockrun.conf")).unwrap();
        std::fs::write(etc.join("tmp.conf"), "d /tmp 1777 root root -\n").unwrap();
        assert_eq!(
            tmpfiles_age_rule(Path::new("/tmp/lockrun-1000"), &roots),
            None
        );
    }

    #[test]
    fn info_fields() {
        let info = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_host"), Some("127.0.0.1"));
        assert_eq!(info_field(info, "master_port"), None);
    }
}
