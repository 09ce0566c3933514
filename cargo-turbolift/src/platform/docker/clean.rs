//! Leftovers of runs that did not stop their containers (`cargo turbolift` killed by
//! SIGKILL, a machine that went down): found by the `turbolift.run` label, and removed
//! when the process named by the run's `turbolift.owner` label is gone.
//!
//! The owner is `host/boot-id/pid/start-time`: a pid alone could have been reused, and a
//! run of another machine sharing the daemon cannot be judged from here, so it is left
//! alone (unless `--all`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::cli::CleanArgs;
use crate::platform::image::engine::{self, docker, label};
use crate::shell::Shell;

/// Removes what `--platform docker` runs left behind: of dead runs, or with `--all` of
/// every run.
pub fn clean(shell: &Shell, args: &CleanArgs) -> Result<()> {
    engine::ensure_daemon()?;
    let cleaned = remove_leftovers(args.all)?;
    if cleaned.is_empty() {
        shell.status("Clean", "nothing left behind by `--platform docker` runs");
    }
    for line in cleaned.report() {
        shell.status("Removed", line);
    }
    if cleaned.live > 0 && !args.all {
        shell.status(
            "Kept",
            format!(
                "{} run{} still going (or of another machine); `--all` removes {} too",
                cleaned.live,
                if cleaned.live == 1 { "" } else { "s" },
                if cleaned.live == 1 { "it" } else { "them" }
            ),
        );
    }
    Ok(())
}

/// What [`remove_leftovers`] removed.
#[derive(Default)]
pub struct Cleaned {
    /// Run id → (containers, networks) removed.
    pub runs: BTreeMap<String, (usize, usize)>,
    /// Runs left alone because their owner lives (or is on another machine).
    pub live: usize,
}

impl Cleaned {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// One line per run: `run 0123456789ab: 4 containers and its network`.
    pub fn report(&self) -> Vec<String> {
        self.runs
            .iter()
            .map(|(run, (containers, networks))| {
                format!(
                    "what run {run} left behind: {containers} container{}, {networks} network{}",
                    if *containers == 1 { "" } else { "s" },
                    if *networks == 1 { "" } else { "s" },
                )
            })
            .collect()
    }
}

/// Removes the containers and networks of runs whose owner is gone (or of every run, with
/// `all`), and their secret files if any were left.
pub fn remove_leftovers(all: bool) -> Result<Cleaned> {
    // run id → (owner, container ids, network ids)
    let mut runs: BTreeMap<String, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
    let format = format!(
        "{{{{.ID}}}}\t{{{{.Label \"{}\"}}}}\t{{{{.Label \"{}\"}}}}",
        label::RUN,
        label::OWNER
    );
    let filter = format!("label={}", label::RUN);
    let containers = engine::run(
        docker(["ps", "--all", "--filter", &filter, "--format", &format]),
        "listing turbolift's containers",
    )?;
    let networks = engine::run(
        docker(["network", "ls", "--filter", &filter, "--format", &format]),
        "listing turbolift's networks",
    )?;
    for (text, is_network) in [(containers, false), (networks, true)] {
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (Some(id), Some(run), owner) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let entry = runs.entry(run.to_owned()).or_default();
            if let Some(owner) = owner.filter(|o| !o.is_empty()) {
                entry.0 = owner.to_owned();
            }
            if is_network {
                entry.2.push(id.to_owned());
            } else {
                entry.1.push(id.to_owned());
            }
        }
    }
    let mut cleaned = Cleaned::default();
    for (run, (owner, containers, networks)) in runs {
        if !all && owner_state(&owner) != Owner::Gone {
            cleaned.live += 1;
            continue;
        }
        remove(&containers, &networks)?;
        let _ = std::fs::remove_file(secret_file(&run));
        cleaned.runs.insert(run, (containers.len(), networks.len()));
    }
    Ok(cleaned)
}

/// Force-removes containers, then networks; ones already gone are not an error.
pub fn remove(containers: &[String], networks: &[String]) -> Result<()> {
    let mut failures = Vec::new();
    if !containers.is_empty() {
        let mut rm = docker(["rm", "--force", "--volumes"]);
        rm.args(containers);
        let output = engine::capture(&mut rm)?;
        let why = engine::stderr_of(&output);
        if !output.status.success() && !why.contains("No such container") {
            failures.push(format!("`docker rm` failed: {why}"));
        }
    }
    for network in networks {
        let output = engine::capture(&mut docker(["network", "rm", network]))?;
        let why = engine::stderr_of(&output);
        if !output.status.success() && !why.contains("not found") {
            failures.push(format!("`docker network rm {network}` failed: {why}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("\n"))
    }
}

/// Where a run keeps its secret for `docker run --env-file` while it starts containers.
pub fn secret_file(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("turbolift-{run_id}.env"))
}

/// This process, as the owner label names it.
pub fn owner_label() -> String {
    let pid = std::process::id();
    format!(
        "{}/{}/{pid}/{}",
        hostname(),
        boot_id(),
        start_time(pid).unwrap_or_default()
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Alive,
    Gone,
    /// On another machine: cannot tell.
    Elsewhere,
}

fn owner_state(owner: &str) -> Owner {
    let parts: Vec<&str> = owner.split('/').collect();
    let [host, boot, pid, start] = parts[..] else {
        // No readable owner: a run of something else that used the label; leave it.
        return Owner::Elsewhere;
    };
    if host != hostname() {
        return Owner::Elsewhere;
    }
    if boot != boot_id() {
        return Owner::Gone; // this machine restarted since
    }
    match pid.parse::<u32>().ok().and_then(start_time) {
        Some(now) if now == start => Owner::Alive,
        _ => Owner::Gone,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('/', "_"))
        .unwrap_or_default()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of a live (not zombie) process, in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // Field 22 of stat is the 20th after the name.
    fields.get(19).map(|s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_owns_its_label_and_a_dead_pid_does_not() {
        let me = owner_label();
        assert_eq!(owner_state(&me), Owner::Alive);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let parts: Vec<&str> = me.split('/').collect();
        let dead = format!("{}/{}/{pid}/{}", parts[0], parts[1], parts[3]);
        assert_eq!(owner_state(&dead), Owner::Gone);
        let rebooted = format!("{}/another-boot/{}/{}", parts[0], parts[2], parts[3]);
        assert_eq!(owner_state(&rebooted), Owner::Gone);
        let reused = format!("{}/{}/{}/1", parts[0], parts[1], parts[2]);
        assert_eq!(owner_state(&reused), Owner::Gone);
        let elsewhere = format!("another-host/{}/{}/{}", parts[1], parts[2], parts[3]);
        assert_eq!(owner_state(&elsewhere), Owner::Elsewhere);
        assert_eq!(owner_state("garbage"), Owner::Elsewhere);
    }
}
