//! Whether this machine lets the supervisor start so many replicas, checked before any
//! starts: processes and threads (this user's `RLIMIT_NPROC`, the cgroup's `pids.max`, the
//! kernel's `threads-max` and `pid_max`, minus what already runs) and open files
//! (`RLIMIT_NOFILE`, raised up to its hard limit when needed).

use std::path::Path;

use anyhow::{Result, bail};

use super::super::ServiceSpec;

/// Threads of a replica besides one per core (tokio's workers): its main thread, a few
/// of tokio's blocking pool, and the supervisor's two threads that watch it and read its
/// stderr.
const THREADS_BESIDES_WORKERS: u64 = 5;
/// Files the supervisor holds per replica: its port, its stdout, its stderr, its log
/// (twice).
const FILES_PER_REPLICA: u64 = 5;
/// Files the supervisor needs besides its replicas'.
const FILES_BESIDES: u64 = 64;

/// Refuses to start `specs` when the machine could not run them all, with what to change.
pub fn check(specs: &[ServiceSpec]) -> Result<()> {
    let replicas: u64 = specs.iter().map(|s| u64::from(s.replicas)).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let tasks = replicas * (cores + THREADS_BESIDES_WORKERS);
    if let Some(limit) = tightest(&task_limits(), tasks) {
        bail!(
            "{replicas} replica{} would need about {tasks} processes and threads ({} per replica on {cores} cores), but {limit}; lower `--replicas` (or the functions' `replicas`)",
            if replicas == 1 { "" } else { "s" },
            cores + THREADS_BESIDES_WORKERS
        );
    }
    open_files(replicas * FILES_PER_REPLICA + FILES_BESIDES)
}

/// A limit on tasks (processes and threads): what it is, how high, and how many of the
/// tasks it counts run now.
#[derive(Debug)]
struct Limit {
    what: &'static str,
    max: u64,
    running: u64,
}

/// The first limit too tight for `tasks` more, described.
fn tightest(limits: &[Limit], tasks: u64) -> Option<String> {
    limits
        .iter()
        .find(|l| l.running.saturating_add(tasks) > l.max)
        .map(|l| {
            format!(
                "{} is {} with {} running, so only {} more can start",
                l.what,
                l.max,
                l.running,
                l.max.saturating_sub(l.running)
            )
        })
}

/// Every limit on tasks that applies to this process and can be read.
fn task_limits() -> Vec<Limit> {
    let mut limits = Vec::new();
    // SAFETY: getuid has no failure and no memory effects.
    let uid = unsafe { libc::getuid() };
    // Root is not held to RLIMIT_NPROC.
    if uid != 0
        && let Some(max) = nproc()
    {
        limits.push(Limit {
            what: "this user's process limit (RLIMIT_NPROC, `ulimit -u`)",
            max,
            running: tasks_of(Some(uid)),
        });
    }
    if let Some((max, running)) = cgroup_pids() {
        limits.push(Limit {
            what: "the cgroup's limit of processes and threads (pids.max)",
            max,
            running,
        });
    }
    let all = || tasks_of(None);
    for (file, what) in [
        (
            "/proc/sys/kernel/threads-max",
            "the kernel's limit of threads (kernel.threads-max)",
        ),
        (
            "/proc/sys/kernel/pid_max",
            "the kernel's limit of process ids (kernel.pid_max)",
        ),
    ] {
        if let Some(max) = read_number(Path::new(file)) {
            limits.push(Limit {
                what,
                max,
                running: all(),
            });
        }
    }
    limits
}

/// The soft limit of processes and threads of this user, unless unlimited or unreadable.
fn nproc() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

/// Tasks (threads of every process) running now, of the user `uid` or of everyone.
fn tasks_of(uid: Option<libc::uid_t>) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut tasks = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        if uid.is_none_or(|uid| field("Uid:") == Some(u64::from(uid))) {
            tasks += field("Threads:").unwrap_or(1);
        }
    }
    tasks
}

/// The cgroup (v2) `pids.max` of this process and its `pids.current`, when limited.
fn cgroup_pids() -> Option<(u64, u64)> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max = read_number(&dir.join("pids.max"))?;
    Some((max, read_number(&dir.join("pids.current"))?))
}

fn read_number(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Raises this process's soft limit of open files to `needed` when it is lower, up to the
/// hard limit; refuses when the hard limit is lower.
fn open_files(needed: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= needed
    {
        return Ok(());
    }
    if limit.rlim_max < needed {
        bail!(
            "so many replicas need about {needed} open files in `cargo turbolift`, but its hard limit is {} (`ulimit -Hn`); lower `--replicas` (or the functions' `replicas`)",
            limit.rlim_max
        );
    }
    limit.rlim_cur = needed;
    // SAFETY: `limit` is a valid rlimit, below the hard limit.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_limit_too_tight_is_named() {
        let limits = [
            Limit {
                what: "roomy",
                max: 100_000,
                running: 100,
            },
            Limit {
                what: "this user's process limit",
                max: 4096,
                running: 4000,
            },
        ];
        assert_eq!(tightest(&limits, 96), None);
        assert_eq!(
            tightest(&limits, 97).as_deref(),
            Some("this user's process limit is 4096 with 4000 running, so only 96 more can start")
        );
    }

    #[test]
    fn this_machine_has_limits_to_read() {
        let limits = task_limits();
        assert!(
            limits.iter().any(|l| l.what.contains("kernel")),
            "{limits:?}"
        );
        assert!(limits.iter().all(|l| l.running > 0), "{limits:?}");
        assert!(check(&[]).is_ok());
    }
}
