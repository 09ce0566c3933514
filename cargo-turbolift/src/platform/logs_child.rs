//! What the followers of a container's or a pod's output share: the `docker logs
//! --follow` or `kubectl logs --follow` they read, kept where the follower's stopper can
//! kill it, and the showing of its timestamped lines.

use std::io::Read;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use super::output::{Echo, Lines};

/// Shows the lines of a `logs --timestamps` stream whose timestamp (`split` takes it off
/// the line) `is_new` keeps, without it (a line without one is shown whole); the
/// timestamp of the last one shown, to follow again from.
pub fn show_new<S>(
    stream: impl Read,
    echo: &Echo,
    split: impl for<'l> Fn(&'l [u8]) -> Option<(S, &'l [u8])>,
    is_new: impl Fn(&S) -> bool,
) -> Option<S> {
    let mut last = None;
    let mut lines = Lines::new(stream);
    while let Some(line) = lines.next_line() {
        let Some((stamp, text)) = split(line) else {
            echo.line(line);
            continue;
        };
        if is_new(&stamp) {
            echo.line(text);
            last = Some(stamp);
        }
    }
    last
}

/// The running `logs --follow`, while it runs.
#[derive(Default)]
pub struct LogsChild(Mutex<Option<Child>>);

impl LogsChild {
    /// Starts `command` with its stdout and stderr piped, unless `ended()`: spawned under
    /// the lock, so that a stopper sees either this process or the end; killed if
    /// `cargo turbolift` dies. `None` when ended or when it cannot start.
    pub fn spawn(
        &self,
        command: &mut Command,
        ended: impl Fn() -> bool,
    ) -> Option<(Option<ChildStdout>, Option<ChildStderr>)> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::process::tie_to_parent(command, libc::SIGKILL, false);
        let mut running = self.0.lock().expect("logs lock");
        if ended() {
            return None;
        }
        let mut child = command.spawn().ok()?;
        let streams = (child.stdout.take(), child.stderr.take());
        *running = Some(child);
        Some(streams)
    }

    /// Reaps the process once its output has ended. Taken out under the lock first:
    /// [`LogsChild::kill`] never signals a pid that could be another process's by then.
    pub fn reap(&self) {
        let taken = self.0.lock().expect("logs lock").take();
        if let Some(mut child) = taken {
            let _ = child.wait();
        }
    }

    /// Kills the process, if one runs; the follower reaps it.
    pub fn kill(&self) {
        if let Some(child) = self.0.lock().expect("logs lock").as_mut() {
            let _ = child.kill();
        }
    }
}
