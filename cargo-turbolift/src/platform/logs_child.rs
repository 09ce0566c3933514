//! The `docker logs --follow` or `kubectl logs --follow` that a follower reads (a
//! container's output, a pod's), kept where the follower's stopper can kill it.

use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Mutex;

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
