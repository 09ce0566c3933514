//! Child processes that cannot outlive `cargo turbolift`, signals, and exit codes.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child receive `signal` when this process dies, even by SIGKILL; with
/// `own_group`, also puts it in a process group of its own, so that a Ctrl-C at the
/// terminal reaches only the program and `cargo turbolift` decides when services stop.
pub fn tie_to_parent(command: &mut Command, signal: libc::c_int, own_group: bool) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, setpgid, _exit) run between
    // fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl took effect: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a stale pid at worst gets a harmless ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// The shell's view of an exit status: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}
