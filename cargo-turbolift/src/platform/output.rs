//! The replicas' output on the terminal (local processes, Docker containers, and during
//! `run --platform kubernetes` the service pods, from `kubernetes/follow.rs`): with
//! `--service-output stream` (the default), every line a replica writes, on its stdout or
//! its stderr, is also written to `cargo turbolift`'s stderr as `<replica> | <line>`, so
//! that the program's stdout stays exactly what `cargo run` prints.
//!
//! - A line is written whole, prefix included, in one write under stderr's lock: lines of
//!   replicas, of the program (which writes to the same terminal) and status lines are
//!   interleaved by line, never torn. A line longer than [`MAX_LINE`] bytes is cut there,
//!   with a marker saying how much was left out, rather than held in memory however long
//!   it grows.
//! - The prefix is padded to the longest replica name of the run and, when stderr is
//!   coloured ([`Shell::stderr_has_color`]: `--color`, `NO_COLOR`, a terminal), coloured
//!   per replica.
//! - A replica never waits for the terminal: its lines go to the log file as they come,
//!   and to the terminal through a queue of [`QUEUED_LINES`] lines that one thread
//!   writes to stderr. When stderr is not read fast enough (a pipe nobody drains, a
//!   paused terminal) and the queue is full, lines are left out of the terminal only,
//!   and a line says how many: a replica blocked on its own stderr would stop serving.
//! - turbolift's own lines ([`is_turbolift_line`]: the listening line, and the service's
//!   log events whose target is turbolift's, such as `serving` and `stopped`) stay in
//!   the logs unless `-v` is given. Everything else is the user's: `println!`,
//!   `eprintln!`, a panic's message, the user's own `tracing` events.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use turbolift_shared::protocol;

use crate::cli::ServiceOutput;
use crate::shell::Shell;

/// The longest line shown whole; the rest of a longer one is left out.
pub const MAX_LINE: usize = 64 * 1024;

/// Lines waiting for the terminal, at most; beyond, lines are left out of it.
pub const QUEUED_LINES: usize = 4096;

/// Lines queued and not yet written, and lines left out since the last note of it.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
static LEFT_OUT: AtomicU64 = AtomicU64::new(0);

/// The queue of the one thread that writes replicas' lines to stderr (started with the
/// first line).
fn terminal_queue() -> Option<&'static SyncSender<Vec<u8>>> {
    static QUEUE: OnceLock<Option<SyncSender<Vec<u8>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (sender, receiver) = sync_channel::<Vec<u8>>(QUEUED_LINES);
            std::thread::Builder::new()
                .name("replica-output".to_owned())
                .spawn(move || {
                    for whole in receiver {
                        // Above a spinner, if one turns: never on its line.
                        crate::shell::above_spinner(|| {
                            let mut stderr = std::io::stderr().lock();
                            let left_out = LEFT_OUT.swap(0, Ordering::Relaxed);
                            if left_out > 0 {
                                let _ = writeln!(
                                    stderr,
                                    "... {left_out} line(s) of the replicas' output were not shown here (the terminal did not keep up); they are in the logs"
                                );
                            }
                            let _ = stderr.write_all(&whole);
                        });
                        QUEUED.fetch_sub(1, Ordering::Release);
                    }
                })
                .ok()
                .map(|_| sender)
        })
        .as_ref()
}

/// Waits until the replicas' lines queued for the terminal are written, for at most a
/// second (before the run says it stopped).
pub fn drain() {
    let deadline = Instant::now() + Duration::from_secs(1);
    while QUEUED.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The replicas' colours, in turn, as `docker compose` gives its containers theirs (red
/// is left for errors).
const PALETTE: [AnsiColor; 10] = [
    AnsiColor::Cyan,
    AnsiColor::Yellow,
    AnsiColor::Green,
    AnsiColor::Magenta,
    AnsiColor::Blue,
    AnsiColor::BrightCyan,
    AnsiColor::BrightYellow,
    AnsiColor::BrightGreen,
    AnsiColor::BrightMagenta,
    AnsiColor::BrightBlue,
];

/// How the replicas of one run show on the terminal; decided once, when they start.
#[derive(Clone, Debug)]
pub struct Terminal {
    stream: bool,
    own_lines: bool,
    color: bool,
    width: usize,
}

impl Terminal {
    /// For replicas named `names` (`<service>-<index>`, as their logs are), streamed or
    /// not as `--service-output` says; turbolift's own lines too with `-v`.
    pub fn new<'a>(
        shell: &Shell,
        output: ServiceOutput,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Terminal {
        Terminal {
            stream: output == ServiceOutput::Stream,
            own_lines: shell.verbosity() > 0,
            color: shell.stderr_has_color(),
            width: names.into_iter().map(str::len).max().unwrap_or(0),
        }
    }

    /// Where the lines of the replica `name` go; the `index`th replica of the run gets
    /// the `index`th colour.
    pub fn replica(&self, name: &str, index: usize) -> Echo {
        if !self.stream {
            return Echo::none();
        }
        let width = self.width;
        let prefix = if self.color {
            let style = Style::new().fg_color(Some(PALETTE[index % PALETTE.len()].into()));
            format!("{style}{name:<width$} |{style:#} ")
        } else {
            format!("{name:<width$} | ")
        };
        Echo {
            prefix: Some(prefix.into_bytes().into()),
            own_lines: self.own_lines,
        }
    }
}

/// Writes one replica's lines to the terminal, or nothing with `--service-output log`.
#[derive(Clone, Debug)]
pub struct Echo {
    prefix: Option<Arc<[u8]>>,
    own_lines: bool,
}

impl Echo {
    /// Shows nothing.
    pub fn none() -> Echo {
        Echo {
            prefix: None,
            own_lines: false,
        }
    }

    /// Queues `line` (as [`Lines`] gives it, ending in `\n`) for stderr after the
    /// replica's prefix, to be written in one write; turbolift's own lines only with
    /// `-v`. Never waits: a full queue leaves the line out of the terminal.
    pub fn line(&self, line: &[u8]) {
        let Some(prefix) = &self.prefix else { return };
        if !self.own_lines && is_turbolift_line(line) {
            return;
        }
        let mut whole = Vec::with_capacity(prefix.len() + line.len() + 1);
        whole.extend_from_slice(prefix);
        whole.extend_from_slice(line);
        if !whole.ends_with(b"\n") {
            whole.push(b'\n');
        }
        let Some(queue) = terminal_queue() else {
            return;
        };
        QUEUED.fetch_add(1, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(whole) {
            QUEUED.fetch_sub(1, Ordering::AcqRel);
            LEFT_OUT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The lines of a replica's stdout or stderr, each at most [`MAX_LINE`] bytes and a
/// marker.
pub struct Lines<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> Lines<R> {
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader: BufReader::new(reader),
            line: Vec::new(),
        }
    }

    /// The next line, ending in `\n` (also the last one, if the stream ends without);
    /// one longer than [`MAX_LINE`] bytes is cut there and ends with
    /// `… [N more bytes of this line left out]`. `None` once the stream ends or fails.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        self.line.clear();
        let mut left_out = 0usize;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if buf.is_empty() {
                if self.line.is_empty() && left_out == 0 {
                    return None;
                }
                break;
            }
            let (piece, ends) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (&buf[..at], true),
                None => (buf, false),
            };
            let room = MAX_LINE - self.line.len();
            let kept = piece.len().min(room);
            self.line.extend_from_slice(&piece[..kept]);
            left_out += piece.len() - kept;
            let used = piece.len() + usize::from(ends);
            self.reader.consume(used);
            if ends {
                break;
            }
        }
        if left_out > 0 {
            let marker = format!("… [{left_out} more bytes of this line left out]");
            self.line.extend_from_slice(marker.as_bytes());
        }
        self.line.push(b'\n');
        Some(&self.line)
    }
}

/// Whether a replica's line is turbolift's rather than the user's: the line announcing
/// where the service listens, or an event of the service's log (`tracing`'s format:
/// `2026-11-27T02:09:33.169582Z  INFO turbolift::service: serving ...`) whose target is
/// turbolift's (`turbolift`, `turbolift::*`, `turbolift_*`). An event of the user's own
/// target is the user's. Colour codes, if any, are ignored.
pub fn is_turbolift_line(line: &[u8]) -> bool {
    let plain = without_escapes(line);
    let Ok(line) = std::str::from_utf8(&plain) else {
        return false;
    };
    if line.starts_with(protocol::LISTENING_LINE) {
        return true;
    }
    let Some((stamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let Some((level, rest)) = rest.trim_start().split_once(' ') else {
        return false;
    };
    if !is_timestamp(stamp) || !matches!(level, "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR") {
        return false;
    }
    let target = rest.trim_start().split(':').next().unwrap_or_default();
    target == "turbolift" || target.starts_with("turbolift_")
}

/// `2026-11-27T02:09:33.169582Z`, as `tracing` writes the time in UTC.
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && word.ends_with('Z')
}

/// `line` without ANSI escape sequences (`ESC [ ... final byte`).
fn without_escapes(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] == 0x1b && line.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < line.len() && !(0x40..=0x7e).contains(&line[i]) {
                i += 1;
            }
            i += 1;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut lines = Lines::new(input);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line() {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        out
    }

    #[test]
    fn lines_end_in_a_newline_even_the_last_one() {
        assert_eq!(lines(b"a\n\nb\nc"), ["a\n", "\n", "b\n", "c\n"]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn a_line_too_long_is_cut_with_a_marker_and_the_next_one_is_whole() {
        let mut input = vec![b'x'; MAX_LINE + 10_000];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(
            got[0].ends_with("x… [10000 more bytes of this line left out]\n"),
            "{}",
            &got[0][MAX_LINE - 5..]
        );
        assert_eq!(got[1], "next\n");
    }

    #[test]
    fn turbolift_lines_are_told_from_the_users() {
        let own = [
            "2026-11-27T02:09:33.169582Z  INFO turbolift::service: serving function=\"quickstart::square\" addr=127.0.0.1:45105",
            "2026-11-27T02:09:33.186486Z  INFO turbolift::service: stopped served=5 rejected=0",
            "2026-11-27T02:09:33.186486Z  WARN turbolift::service::serve: refused a request (unauthorized)",
            "2026-11-27T02:09:33.186486Z ERROR turbolift_shared::x: something",
            "\x1b[2m2026-11-27T02:09:33.169582Z\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mturbolift::service\x1b[0m\x1b[2m:\x1b[0m serving",
            "turbolift: listening on http://127.0.0.1:4000",
        ];
        for line in own {
            assert!(is_turbolift_line(line.as_bytes()), "{line}");
        }
        let users = [
            "hello from square",
            "2026-11-27T02:09:33.169582Z  INFO graph_engine::stats: the user's own event",
            "thread 'tokio-runtime-worker' panicked at src/lib.rs:3:5:",
            "turbolift::service: not a log line without its time and level",
            "INFO turbolift::service: serving",
            "",
        ];
        for line in users {
            assert!(!is_turbolift_line(line.as_bytes()), "{line}");
        }
        assert!(!is_turbolift_line(b"\xff\xfe turbolift"));
    }

    #[test]
    fn prefixes_are_padded_to_the_longest_name_and_coloured_only_when_asked() {
        let terminal = Terminal {
            stream: true,
            own_lines: false,
            color: false,
            width: "square-10".len(),
        };
        let echo = terminal.replica("square-0", 0);
        assert_eq!(&*echo.prefix.unwrap(), b"square-0  | ");
        let coloured = Terminal {
            color: true,
            ..terminal.clone()
        };
        let prefix = coloured.replica("square-1", 1).prefix.unwrap();
        let text = String::from_utf8_lossy(&prefix);
        assert!(
            text.starts_with("\x1b[33m") && text.contains("square-1  |"),
            "{text:?}"
        );
        let off = Terminal {
            stream: false,
            ..terminal
        };
        assert!(off.replica("square-0", 0).prefix.is_none());
    }
}
