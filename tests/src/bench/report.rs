//! Figures, their statistics and the one table the benchmark prints.
//!
//! A [`Row`] holds one sample per run (each sample is already a rate or a percentile of that
//! run) and, when one applies, the matching [`Bound`] measured in the same runs. The table shows
//! the median of the samples with their spread (min–max) and the ratio `median ÷ bound`.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::Scenario;
use super::machine::Machine;

/// What a figure counts, which fixes how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Things per second.
    PerSec,
    /// A plain count.
    Count,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Secs,
    /// Kibibytes.
    KiB,
    /// Mebibytes.
    MiB,
    /// Mebibytes per second.
    MiBPerSec,
    /// A share of a whole, 0 to 1.
    Fraction,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::PerSec => "/s",
            Unit::Count => "",
            Unit::Micros => " µs",
            Unit::Millis => " ms",
            Unit::Secs => " s",
            Unit::KiB => " KiB",
            Unit::MiB => " MiB",
            Unit::MiBPerSec => " MiB/s",
            Unit::Fraction => "",
        }
    }

    /// Print `value` in this unit, with a precision that suits its size.
    pub fn format(self, value: f64) -> String {
        let number = match self {
            // Four places: a fraction that misses 1 frame in 1,000 must not print as 1.00.
            Unit::Fraction => format!("{value:.4}"),
            Unit::PerSec | Unit::Count | Unit::KiB | Unit::MiB | Unit::MiBPerSec
                if value >= 100.0 =>
            {
                thousands(value)
            }
            Unit::Millis if value >= 100.0 => thousands(value),
            _ if value >= 10.0 => format!("{value:.1}"),
            _ if value >= 0.1 => format!("{value:.2}"),
            _ => format!("{value:.3}"),
        };
        format!("{number}{}", self.suffix())
    }
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(value: f64) -> String {
    // Figures are far below 2^53, so the rounded value is exact as an integer.
    let digits = format!("{:.0}", value.round());
    if let Some(positive) = digits.strip_prefix('-') {
        return format!("-{}", thousands(positive.parse().unwrap_or(0.0)));
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count with thousands separators: `10000` → `10,000`.
pub fn count(n: usize) -> String {
    thousands(n as f64)
}

/// Whether a bound is a ceiling (a rate nothing can beat: higher is better) or a floor (a
/// latency or a memory cost nothing can undercut: lower is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundKind {
    /// The figure is at most this.
    Ceiling,
    /// The figure is at least this.
    Floor,
}

/// The ceiling or floor matching a figure, measured in the same runs on the same machine.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    /// Ceiling or floor.
    pub kind: BoundKind,
    /// What was measured, in a few words.
    pub what: String,
    /// One sample per run.
    pub samples: Vec<f64>,
}

impl Bound {
    /// A ceiling with its samples.
    pub fn ceiling(what: impl Into<String>, samples: Vec<f64>) -> Self {
        Self {
            kind: BoundKind::Ceiling,
            what: what.into(),
            samples,
        }
    }

    /// A floor with its samples.
    pub fn floor(what: impl Into<String>, samples: Vec<f64>) -> Self {
        Self {
            kind: BoundKind::Floor,
            what: what.into(),
            samples,
        }
    }

    /// The median of the samples.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// One figure of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The scenario that measured it.
    pub scenario: Scenario,
    /// What it is, e.g. `beams acked, 64 authors`.
    pub figure: String,
    /// Its unit.
    pub unit: Unit,
    /// One sample per run.
    pub samples: Vec<f64>,
    /// The matching ceiling or floor, if there is one.
    pub bound: Option<Bound>,
}

impl Row {
    /// A figure without a bound.
    pub fn new(scenario: Scenario, figure: impl Into<String>, unit: Unit) -> Self {
        Self {
            scenario,
            figure: figure.into(),
            unit,
            samples: Vec::new(),
            bound: None,
        }
    }

    /// The same row with `bound`.
    pub fn with_bound(mut self, bound: Bound) -> Self {
        self.bound = Some(bound);
        self
    }

    /// The median of the samples (0 without samples).
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    /// `median ÷ bound median`, if there is a bound with a positive median.
    pub fn ratio(&self) -> Option<f64> {
        let bound = self.bound.as_ref()?.median();
        (bound > 0.0).then(|| self.median() / bound)
    }

    fn spread(&self) -> String {
        spread(&self.samples, self.unit)
    }
}

/// Samples collected run by run for one figure and its bound.
#[derive(Debug, Default)]
pub struct Series {
    /// The figure's samples.
    pub figure: Vec<f64>,
    /// The bound's samples.
    pub bound: Vec<f64>,
}

impl Series {
    /// Add one run's figure and bound.
    pub fn push(&mut self, figure: f64, bound: f64) {
        self.figure.push(figure);
        self.bound.push(bound);
    }
}

/// The median (the mean of the middle two for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The `p`-th percentile (0–100) of `sorted`, by nearest rank; 0 for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50 and p99 of latencies, in ms.
pub fn p50_p99(latencies: &mut [Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 50.0), percentile(&ms, 99.0))
}

fn spread(samples: &[f64], unit: Unit) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match samples.len() {
        0 => "—".into(),
        1 => "(1 run)".into(),
        _ => format!("{}–{}", strip(unit.format(min), unit), unit.format(max)),
    }
}

/// A value without its unit, to print a range once.
fn strip(text: String, unit: Unit) -> String {
    text.trim_end_matches(unit.suffix()).to_owned()
}

/// Everything one benchmark run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Runs per figure.
    pub runs: usize,
    /// Whether this was the short smoke run.
    pub smoke: bool,
    /// The settings used, as `(name, value)`.
    pub settings: Vec<(String, String)>,
    /// The figures, scenario by scenario.
    pub rows: Vec<Row>,
    /// What the reader must know to read the figures (scaled counts, skipped parts, …).
    pub notes: Vec<String>,
    /// How long the whole benchmark took, in seconds.
    pub elapsed_secs: f64,
}

impl Report {
    /// The rows of one scenario.
    pub fn rows_of(&self, scenario: Scenario) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |r| r.scenario == scenario)
    }

    /// The header and the table, as Markdown.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Northstar benchmark{} — {} runs per figure, median and spread (min–max)\n",
            if self.smoke {
                " (SMOKE: tiny counts)"
            } else {
                ""
            },
            self.runs
        );
        let _ = writeln!(
            out,
            "- CPU: {} — {} cores (available parallelism {})",
            m.cpu_model, m.logical_cpus, m.cores
        );
        let _ = writeln!(
            out,
            "- memory {:.1} GiB, kernel {}, open files limit {} (hard {})",
            m.memory_gib, m.kernel, m.nofile_soft, m.nofile_hard
        );
        let _ = writeln!(
            out,
            "- data directories on {} ({}), fsync p50 {:.2} ms",
            m.data_fs,
            m.data_root.display(),
            m.fsync_p50_ms
        );
        let _ = writeln!(out, "- build: {}", m.build);
        for (name, value) in &self.settings {
            let _ = writeln!(out, "- {name}: {value}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| scenario | figure | median | spread | ceiling / floor | ratio |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---|---:|");
        for row in &self.rows {
            let (bound, ratio) = match (&row.bound, row.ratio()) {
                (Some(b), Some(r)) => {
                    let kind = match b.kind {
                        BoundKind::Ceiling => "ceiling",
                        BoundKind::Floor => "floor",
                    };
                    (
                        format!("{kind} {} ({})", row.unit.format(b.median()), b.what),
                        format!("{r:.2}"),
                    )
                }
                _ => ("—".to_owned(), "—".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.scenario.name(),
                row.figure,
                row.unit.format(row.median()),
                row.spread(),
                bound,
                ratio
            );
        }
        let _ = writeln!(
            out,
            "\nratio = median ÷ bound. Rates: higher is better, 1.00 is the ceiling. Latencies \
             and memory: lower is better, 1.00 is the floor."
        );
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out, "\nTotal time: {:.0} s", self.elapsed_secs);
        out
    }

    /// The whole report as JSON, each row with its median, spread and ratio worked out.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario.name(),
                    "figure": r.figure,
                    "unit": r.unit,
                    "median": r.median(),
                    "samples": r.samples,
                    "bound": r.bound.as_ref().map(|b| json!({
                        "kind": b.kind,
                        "what": b.what,
                        "median": b.median(),
                        "samples": b.samples,
                    })),
                    "ratio": r.ratio(),
                })
            })
            .collect();
        json!({
            "machine": self.machine,
            "runs": self.runs,
            "smoke": self.smoke,
            "settings": self.settings,
            "rows": rows,
            "notes": self.notes,
            "elapsed_secs": self.elapsed_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles_pick_the_middle_and_the_nearest_rank() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn figures_print_with_separators_and_units() {
        assert_eq!(Unit::PerSec.format(1_234_567.4), "1,234,567/s");
        assert_eq!(Unit::Millis.format(1.234), "1.23 ms");
        assert_eq!(Unit::KiB.format(12.34), "12.3 KiB");
        assert_eq!(Unit::MiBPerSec.format(1234.5), "1,235 MiB/s");
        assert_eq!(Unit::Fraction.format(0.99876), "0.9988");
        assert_eq!(spread(&[1.0, 2.0], Unit::Millis), "1.00–2.00 ms");
    }
}
