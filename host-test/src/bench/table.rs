//! The result table: one row per figure, printed as Markdown.

/// Whether a row meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Met {
    /// Every condition of the target holds.
    Yes,
    /// At least one condition fails.
    No,
    /// The row has no target.
    NoTarget,
    /// Not measured in this run.
    NotMeasured,
    /// A smoke run: sizes too small to judge.
    Smoke,
}

impl Met {
    /// `Yes` when `ok`, `No` otherwise; `Smoke` in a smoke run.
    pub fn judge(ok: bool, smoke: bool) -> Self {
        match (smoke, ok) {
            (true, _) => Met::Smoke,
            (false, true) => Met::Yes,
            (false, false) => Met::No,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::NoTarget => "—",
            Met::NotMeasured => "not measured",
            Met::Smoke => "(smoke)",
        }
    }
}

/// One figure with its comparison.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured.
    pub figure: String,
    /// tagguard's median.
    pub tagguard: String,
    /// What it is compared with, and its median.
    pub comparison: String,
    /// The ratio, saying which way it goes.
    pub ratio: String,
    /// The target, if any.
    pub target: String,
    /// Whether the target is met.
    pub met: Met,
}

impl Row {
    /// A row whose figure could not be measured in this run, with the reason.
    pub fn not_measured(figure: &str, why: &str, target: &str) -> Self {
        Row {
            figure: figure.into(),
            tagguard: "not measured".into(),
            comparison: why.into(),
            ratio: "—".into(),
            target: target.into(),
            met: Met::NotMeasured,
        }
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// The rows as a Markdown table with aligned columns.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.figure.clone(),
                r.tagguard.clone(),
                r.comparison.clone(),
                r.ratio.clone(),
                r.target.clone(),
                r.met.text().to_string(),
            ]
        })
        .collect();
    render_columns(
        &[
            "figure",
            "tagguard",
            "comparison",
            "ratio",
            "target",
            "met?",
        ],
        &cells,
    )
}

/// Any cells under `header` as a Markdown table with aligned columns.
pub fn render_columns(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - width(c))))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}
