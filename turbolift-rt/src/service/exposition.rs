//! The two text formats a scraper reads metrics in: Prometheus' (version 0.0.4) and
//! OpenMetrics 1.0, written from numbers the service already holds.
//!
//! A family is its `# HELP` and `# TYPE` lines (and in OpenMetrics `# UNIT`), then its
//! samples; a counter's samples end in `_total`, a histogram's are its cumulative
//! `_bucket`s up to `le="+Inf"`, `_count` and `_sum`. The formats differ in what a
//! counter's family is called (Prometheus names it with `_total`, OpenMetrics without), in
//! `# UNIT`, in what `# HELP` escapes, and in OpenMetrics' closing `# EOF`.

use std::fmt::Write;

/// The content type of OpenMetrics' text format.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus' text format, version 0.0.4.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Metric families written one after the other.
pub(crate) struct Exposition {
    text: String,
    openmetrics: bool,
}

impl Exposition {
    pub(crate) fn new(openmetrics: bool) -> Self {
        Exposition {
            text: String::with_capacity(8 * 1024),
            openmetrics,
        }
    }

    /// Starts the family `name` (with `unit` as its suffix, e.g. `seconds`), whose
    /// samples follow through the [`Family`].
    pub(crate) fn family(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&str>,
        kind: Kind,
    ) -> Family<'_> {
        let name = match unit {
            Some(unit) => format!("{name}_{unit}"),
            None => name.to_owned(),
        };
        let family = if kind == Kind::Counter && !self.openmetrics {
            format!("{name}_total")
        } else {
            name.clone()
        };
        let text = &mut self.text;
        text.push_str("# HELP ");
        text.push_str(&family);
        text.push(' ');
        // Prometheus' text format escapes no quote in help; OpenMetrics does.
        push_escaped(text, help, self.openmetrics);
        let kind_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(text, "\n# TYPE {family} {kind_name}");
        if let (Some(unit), true) = (unit, self.openmetrics) {
            let _ = writeln!(text, "# UNIT {family} {unit}");
        }
        Family { text, name, kind }
    }

    /// The text, closed as its format asks.
    pub(crate) fn finish(mut self) -> String {
        if self.openmetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

/// The samples of one family.
pub(crate) struct Family<'a> {
    text: &'a mut String,
    /// The family's name with its unit, without `_total`.
    name: String,
    kind: Kind,
}

impl Family<'_> {
    /// A counter's or a gauge's value for `labels`.
    pub(crate) fn value(&mut self, labels: &[(&str, &str)], value: u64) {
        debug_assert_ne!(self.kind, Kind::Histogram);
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        self.sample(suffix, labels, None, format_args!("{value}"));
    }

    /// A histogram for `labels`: `buckets` are (upper bound, count in that bucket alone),
    /// in ascending order, the last one's bound infinite; `sum` is of every observation.
    pub(crate) fn histogram(&mut self, labels: &[(&str, &str)], buckets: &[(f64, u64)], sum: f64) {
        debug_assert_eq!(self.kind, Kind::Histogram);
        debug_assert!(buckets.last().is_some_and(|(b, _)| b.is_infinite()));
        let mut cumulative = 0u64;
        for &(bound, count) in buckets {
            cumulative += count;
            let le = Float(bound).to_string();
            self.sample("_bucket", labels, Some(&le), format_args!("{cumulative}"));
        }
        self.sample("_count", labels, None, format_args!("{cumulative}"));
        self.sample("_sum", labels, None, format_args!("{}", Float(sum)));
    }

    fn sample(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: std::fmt::Arguments<'_>,
    ) {
        let text = &mut *self.text;
        text.push_str(&self.name);
        text.push_str(suffix);
        let le = le.map(|le| ("le", le));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_some() {
            text.push('{');
            for (i, (key, value)) in all.enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(key);
                text.push_str("=\"");
                push_escaped(text, value, true);
                text.push('"');
            }
            text.push('}');
        }
        let _ = writeln!(text, " {value}");
    }
}

/// `value` with its backslashes and line feeds escaped, and its double quotes if `quotes`.
fn push_escaped(text: &mut String, value: &str, quotes: bool) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '\n' => text.push_str("\\n"),
            '"' if quotes => text.push_str("\\\""),
            c => text.push(c),
        }
    }
}

/// A float as both formats read it: Rust's shortest form that reads back the same, which
/// never has an exponent, and `+Inf`, `-Inf` and `NaN` by their names.
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            x if x.is_nan() => f.write_str("NaN"),
            x if x == f64::INFINITY => f.write_str("+Inf"),
            x if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            x => write!(f, "{x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(write: impl Fn(&mut Exposition)) -> (String, String) {
        let mut prometheus = Exposition::new(false);
        write(&mut prometheus);
        let mut openmetrics = Exposition::new(true);
        write(&mut openmetrics);
        (prometheus.finish(), openmetrics.finish())
    }

    #[test]
    fn a_counter_is_named_with_total_in_prometheus_text_and_without_in_openmetrics() {
        let (prometheus, openmetrics) = both(|e| {
            let mut calls = e.family("calls", "Calls served.", None, Kind::Counter);
            calls.value(&[("function", "a::b")], 3);
            calls.value(&[], 4);
        });
        assert_eq!(
            prometheus,
            "# HELP calls_total Calls served.\n# TYPE calls_total counter\n\
             calls_total{function=\"a::b\"} 3\ncalls_total 4\n"
        );
        assert_eq!(
            openmetrics,
            "# HELP calls Calls served.\n# TYPE calls counter\n\
             calls_total{function=\"a::b\"} 3\ncalls_total 4\n# EOF\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_with_its_unit() {
        let (prometheus, openmetrics) = both(|e| {
            let buckets = [(0.000_001, 2), (0.25, 0), (10.0, 1), (f64::INFINITY, 1)];
            e.family("time", "Time.", Some("seconds"), Kind::Histogram)
                .histogram(&[("function", "f")], &buckets, 12.5);
        });
        let samples = "time_seconds_bucket{function=\"f\",le=\"0.000001\"} 2\n\
                       time_seconds_bucket{function=\"f\",le=\"0.25\"} 2\n\
                       time_seconds_bucket{function=\"f\",le=\"10\"} 3\n\
                       time_seconds_bucket{function=\"f\",le=\"+Inf\"} 4\n\
                       time_seconds_count{function=\"f\"} 4\n\
                       time_seconds_sum{function=\"f\"} 12.5\n";
        assert_eq!(
            prometheus,
            format!("# HELP time_seconds Time.\n# TYPE time_seconds histogram\n{samples}")
        );
        assert_eq!(
            openmetrics,
            format!(
                "# HELP time_seconds Time.\n# TYPE time_seconds histogram\n\
                 # UNIT time_seconds seconds\n{samples}# EOF\n"
            )
        );
    }

    #[test]
    fn help_and_label_values_are_escaped() {
        let (prometheus, openmetrics) = both(|e| {
            e.family("g", "a \"b\" \\ c\nd", None, Kind::Gauge)
                .value(&[("k", "x\"y\\z\nw")], 1);
        });
        let sample = "g{k=\"x\\\"y\\\\z\\nw\"} 1\n";
        assert_eq!(
            prometheus,
            format!("# HELP g a \"b\" \\\\ c\\nd\n# TYPE g gauge\n{sample}")
        );
        assert_eq!(
            openmetrics,
            format!("# HELP g a \\\"b\\\" \\\\ c\\nd\n# TYPE g gauge\n{sample}# EOF\n")
        );
    }

    #[test]
    fn floats_read_back_as_written() {
        for x in [0.016_997_021, 1e-9, 123_456_789.5, 0.0] {
            assert_eq!(Float(x).to_string().parse::<f64>().unwrap(), x);
        }
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
    }
}
