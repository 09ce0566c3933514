//! A container's output on the terminal while the run goes on: `docker logs --follow
//! --timestamps` of the container, each line without its timestamp handed to the
//! replica's [`Echo`] (stdout and stderr each read on a thread of their own).
//!
//! `docker logs --follow` ends when the container stops, also when Docker is about to
//! restart it (`--restart on-failure`); the follower then follows it again from the time
//! of the last line it showed (`--since`), skipping lines not newer than that, until the
//! run stops it. The containers' logs themselves are saved when they stop, from
//! `docker logs` (`Containers::stop`).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::platform::image::engine::docker;
use crate::platform::logs_child::{LogsChild, show_new};
use crate::platform::output::Echo;

/// How long a follower has to end once its container stopped, before its `docker logs`
/// is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The pause before following a container again that stopped (and may be restarting).
const AGAIN_AFTER: Duration = Duration::from_millis(250);

/// Shows one container's lines until [`Follower::stop`].
pub struct Follower {
    stopping: Arc<AtomicBool>,
    /// The running `docker logs`, while it runs; killed if it outlasts the container.
    logs: Arc<LogsChild>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Follows `container`'s output onto `echo`; `None` if no thread could be started
    /// (the run goes on, its output in the logs only).
    pub fn start(container: &str, echo: Echo) -> Option<Follower> {
        let stopping = Arc::new(AtomicBool::new(false));
        let logs = Arc::new(LogsChild::default());
        let (name, stop, slot) = (container.to_owned(), stopping.clone(), logs.clone());
        let thread = std::thread::Builder::new()
            .name(format!("logs {container}"))
            .spawn(move || follow(&name, &echo, &stop, &slot))
            .ok()?;
        Some(Follower {
            stopping,
            logs,
            thread: Some(thread),
        })
    }

    /// Waits until the container's last lines are shown (its `docker logs` ends once the
    /// container is stopped or removed), at most [`STOP_GRACE`], then kills what is left.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_GRACE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            self.logs.kill();
        }
        let _ = thread.join();
    }
}

/// Follows `container` again each time `docker logs --follow` ends, until `stopping`.
fn follow(container: &str, echo: &Echo, stopping: &AtomicBool, slot: &LogsChild) {
    let mut since: Option<String> = None;
    while !stopping.load(Ordering::SeqCst) {
        let mut command = docker(["logs", "--follow", "--timestamps"]);
        if let Some(since) = &since {
            command.arg("--since").arg(since);
        }
        command.arg(container);
        let Some((stdout, stderr)) = slot.spawn(&mut command, || stopping.load(Ordering::SeqCst))
        else {
            return;
        };
        let shown = since.clone();
        let (out_last, err_last) = std::thread::scope(|scope| {
            let err = scope.spawn(|| stderr.map(|s| show(s, shown.as_deref(), echo)));
            let out = stdout.and_then(|s| show(s, shown.as_deref(), echo));
            (out, err.join().ok().flatten().flatten())
        });
        slot.reap();
        since = [since, out_last, err_last].into_iter().flatten().max();
        let again = Instant::now() + AGAIN_AFTER;
        while Instant::now() < again && !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Shows the lines of one stream of `docker logs --timestamps` that are newer than
/// `since`, without their timestamps; the timestamp of the last one shown.
fn show(stream: impl Read, since: Option<&str>, echo: &Echo) -> Option<String> {
    show_new(
        stream,
        echo,
        |line| split_timestamp(line).map(|(stamp, text)| (stamp.to_owned(), text)),
        |stamp| since.is_none_or(|since| stamp.as_str() > since),
    )
}

/// `2026-12-06T03:02:26.986504060Z text` as the timestamp and the text. Docker writes
/// every timestamp with nine digits of nanoseconds, so that they compare as text.
fn split_timestamp(line: &[u8]) -> Option<(&str, &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let stamp = std::str::from_utf8(&line[..space]).ok()?;
    let looks_right = stamp.len() == "2026-12-06T03:02:26.986504060Z".len()
        && stamp.as_bytes()[10] == b'T'
        && stamp.ends_with('Z');
    looks_right.then_some((stamp, &line[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::split_timestamp;

    #[test]
    fn the_timestamp_docker_adds_is_taken_off() {
        assert_eq!(
            split_timestamp(b"2026-12-06T03:02:26.986504060Z hello there\n"),
            Some(("2026-12-06T03:02:26.986504060Z", &b"hello there\n"[..]))
        );
        assert_eq!(
            split_timestamp(b"2026-12-06T03:02:26.986504060Z \n"),
            Some(("2026-12-06T03:02:26.986504060Z", &b"\n"[..]))
        );
        assert_eq!(split_timestamp(b"hello there\n"), None);
        assert!("2026-12-06T03:02:26.986504060Z" < "2026-12-06T03:02:27.000000001Z");
    }
}
