//! Medians, ranges, ratios, goals, and how they are printed.

use serde_json::{Value, json};

/// One figure over repeats: the median and the range.
#[derive(Clone, Debug)]
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Figure {
    pub fn of(mut samples: Vec<f64>) -> Figure {
        assert!(!samples.is_empty(), "a figure needs samples");
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Figure {
            median,
            min: samples[0],
            max: samples[n - 1],
            samples,
        }
    }

    fn text(&self) -> String {
        if self.samples.len() == 1 {
            number(self.median)
        } else {
            format!(
                "{} [{}–{}]",
                number(self.median),
                number(self.min),
                number(self.max)
            )
        }
    }

    fn json(&self) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max, "samples": self.samples})
    }
}

fn number(x: f64) -> String {
    if x >= 1000.0 {
        format!("{x:.0}")
    } else if x >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A goal: on the ratio turbolift/peer, or on turbolift's own figure.
#[derive(Clone, Debug)]
struct Goal {
    text: String,
    bound: f64,
    higher_is_better: bool,
    on_ratio: bool,
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    name: String,
    unit: String,
    turbolift: Figure,
    peer: Option<Figure>,
    peer_name: String,
    goal: Option<Goal>,
}

impl Row {
    pub fn pair(
        name: &str,
        unit: &str,
        turbolift: Figure,
        peer: Figure,
        goal: Option<(&str, f64, bool)>,
    ) -> Row {
        Row {
            name: name.to_owned(),
            unit: unit.to_owned(),
            turbolift,
            peer: Some(peer),
            peer_name: "peer".to_owned(),
            goal: goal.map(|(text, bound, higher_is_better)| Goal {
                text: text.to_owned(),
                bound,
                higher_is_better,
                on_ratio: true,
            }),
        }
    }

    pub fn single(name: &str, unit: &str, turbolift: Figure) -> Row {
        Row {
            name: name.to_owned(),
            unit: unit.to_owned(),
            turbolift,
            peer: None,
            peer_name: String::new(),
            goal: None,
        }
    }

    pub fn with_goal_absolute(mut self, text: &str, bound: f64, higher_is_better: bool) -> Row {
        self.goal = Some(Goal {
            text: text.to_owned(),
            bound,
            higher_is_better,
            on_ratio: false,
        });
        self
    }

    pub fn with_peer_name(mut self, name: &str) -> Row {
        self.peer_name = name.to_owned();
        self
    }

    /// A row of another system's figures (Ray), with the turbolift figure as its peer.
    pub fn other(name: &str, unit: &str, theirs: Figure, turbolift: Option<Figure>) -> Row {
        Row {
            name: name.to_owned(),
            unit: unit.to_owned(),
            turbolift: theirs,
            peer: turbolift,
            peer_name: "turbolift".to_owned(),
            goal: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn turbolift(&self) -> &Figure {
        &self.turbolift
    }

    fn ratio(&self) -> Option<f64> {
        self.peer.as_ref().map(|p| self.turbolift.median / p.median)
    }

    fn met(&self) -> Option<bool> {
        let goal = self.goal.as_ref()?;
        let value = if goal.on_ratio {
            self.ratio()?
        } else {
            self.turbolift.median
        };
        Some(if goal.higher_is_better {
            value >= goal.bound
        } else {
            value <= goal.bound
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "turbolift": self.turbolift.json(),
            "peer": self.peer.as_ref().map(Figure::json),
            "peer_name": self.peer_name,
            "ratio": self.ratio(),
            "goal": self.goal.as_ref().map(|g| g.text.clone()),
            "met": self.met(),
        })
    }

    /// [`Row::json`] of a row of a variant's table (TLS, metrics): its figures named
    /// `ours` (the variant: `tls`, `on`) and `theirs` (`plain`, `off`).
    pub fn renamed_json(&self, ours: &str, theirs: &str) -> Value {
        let mut value = self.json();
        let object = value.as_object_mut().expect("a row is an object");
        for (from, to) in [("turbolift", ours), ("peer", theirs)] {
            let figure = object.remove(from).unwrap_or(Value::Null);
            object.insert(to.to_owned(), figure);
        }
        object.remove("peer_name");
        value
    }

    /// The row's cells; the other side's figure is named unless it is `column`'s.
    fn cells(&self, column: &str) -> [String; 6] {
        [
            format!("{} ({})", self.name, self.unit),
            self.turbolift.text(),
            self.peer
                .as_ref()
                .map(|p| {
                    if self.peer_name == column {
                        p.text()
                    } else {
                        format!("{} ({})", p.text(), self.peer_name)
                    }
                })
                .unwrap_or_default(),
            self.ratio().map(|r| format!("{r:.2}×")).unwrap_or_default(),
            self.goal
                .as_ref()
                .map(|g| g.text.clone())
                .unwrap_or_default(),
            match self.met() {
                Some(true) => "met".to_owned(),
                Some(false) => "MISSED".to_owned(),
                None => String::new(),
            },
        ]
    }
}

/// A table whose third column is `column`'s figures.
fn table(title: [&str; 6], column: &str, rows: &[Row]) {
    let mut lines = vec![title.map(str::to_owned)];
    lines.extend(rows.iter().map(|row| row.cells(column)));
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", cells.join(" | "));
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("|-{}-|", rule.join("-|-"));
        }
    }
}

/// The results as Markdown tables on stdout: against the axum peer (and the rest), against
/// tarpc, against Ray, turbolift over TLS against turbolift in plain HTTP, and with metrics
/// against without.
pub fn print(rows: &[Row], tarpc: &[Row], ray: &[Row], tls: &[Row], metrics: &[Row]) {
    println!();
    table(
        [
            "measurement",
            "turbolift median [min–max]",
            "peer median [min–max]",
            "turbolift/peer",
            "goal",
            "",
        ],
        "peer",
        rows,
    );
    if !tarpc.is_empty() {
        println!();
        table(
            [
                "tarpc measurement",
                "turbolift median [min–max]",
                "tarpc median [min–max]",
                "turbolift/tarpc",
                "",
                "",
            ],
            "tarpc",
            tarpc,
        );
    }
    if !ray.is_empty() {
        println!();
        table(
            [
                "Ray measurement",
                "Ray median [min–max]",
                "turbolift median",
                "Ray/turbolift",
                "",
                "",
            ],
            // The figures in its third column are named: "(turbolift)".
            "",
            ray,
        );
    }
    if !tls.is_empty() {
        println!();
        table(
            [
                "TLS measurement",
                "TLS median [min–max]",
                "plain median [min–max]",
                "TLS / plain",
                "goal",
                "",
            ],
            "plain",
            tls,
        );
    }
    if !metrics.is_empty() {
        println!();
        table(
            [
                "metrics measurement",
                "on median [min–max]",
                "off median [min–max]",
                "on / off",
                "goal",
                "",
            ],
            "off",
            metrics,
        );
    }
}
