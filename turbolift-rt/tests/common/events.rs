//! A `tracing` subscriber for tests: it takes every span and event at every level, from
//! every thread of the test process, and keeps each one's target, level and fields.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// A span or an event as the subscriber saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub kind: &'static str,
    pub target: String,
    pub level: Level,
    pub fields: Vec<(String, String)>,
}

impl Recorded {
    /// The value of field `name`: a string as it is, anything else as `Debug` shows it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

static RECORDED: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// Makes the recorder the process's subscriber, at TRACE for every target (once per test
/// process; later calls do nothing).
pub fn record_everything() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Recorder {
            next_span: AtomicU64::new(1),
        })
        .expect("no other subscriber in this test process");
    });
}

/// Everything recorded so far.
pub fn recorded() -> Vec<Recorded> {
    RECORDED.lock().unwrap().clone()
}

struct Recorder {
    next_span: AtomicU64,
}

fn keep(kind: &'static str, metadata: &Metadata<'_>, fields: Fields) {
    RECORDED.lock().unwrap().push(Recorded {
        kind,
        target: metadata.target().to_owned(),
        level: *metadata.level(),
        fields: fields.0,
    });
}

impl Subscriber for Recorder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        keep("span", span.metadata(), fields);
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        keep("event", event.metadata(), fields);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}
