//! The text `verify --against` prints: one line per window with counts, then every file and
//! batch that is not identical with where it first differs, then the verdict.

use std::fmt::Write as _;

use super::{Comparison, Status, Verdict, WindowComparison};

fn kind(status: &Status) -> &'static str {
    match status {
        Status::Identical => "identical",
        Status::Missing => "missing",
        Status::Extra => "extra",
        Status::Different(_) => "different",
    }
}

/// "9 identical, 1 different" over `statuses`, in a fixed order.
fn counts<'a>(statuses: impl Iterator<Item = &'a Status>) -> String {
    let mut n = [0usize; 4];
    for s in statuses {
        n[["identical", "missing", "extra", "different"].iter().position(|k| *k == kind(s)).unwrap_or(0)] += 1;
    }
    let parts: Vec<String> = ["identical", "missing", "extra", "different"]
        .iter()
        .zip(n)
        .filter(|(_, count)| *count > 0)
        .map(|(k, count)| format!("{count} {k}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn window(out: &mut String, w: &WindowComparison) {
    let label = if w.window == "run" { "evidence (no window)".to_owned() } else { format!("window {}", w.window) };
    let _ = write!(out, "{label}: files {}", counts(w.files.values()));
    if !w.batches.is_empty() {
        let _ = write!(out, "; batches {}", counts(w.batches.values()));
    }
    out.push('\n');
    for (name, status) in w.files.iter().filter(|(_, s)| **s != Status::Identical) {
        let _ = writeln!(out, "  {:<9} {name}", kind(status));
        if let Status::Different(d) = status {
            let batch = d.batch.as_ref().map(|b| format!(" (batch {b})")).unwrap_or_default();
            let _ = writeln!(out, "            first difference at {}{batch}", d.at);
            let _ = writeln!(out, "            original: {}", d.original);
            let _ = writeln!(out, "            replay:   {}", d.replay);
        }
    }
    for (batch, status) in w.batches.iter().filter(|(_, s)| **s != Status::Identical) {
        let _ = write!(out, "  {:<9} batch {batch}", kind(status));
        if let Status::Different(d) = status {
            let _ = write!(out, ": {} is {} in the original, {} in the replay", d.at, d.original, d.replay);
        }
        out.push('\n');
    }
}

impl Comparison {
    /// The report, ending with the verdict line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for w in &self.windows {
            window(&mut out, w);
        }
        let all = self.windows.iter().flat_map(|w| w.files.values());
        let verdict = match self.verdict() {
            Verdict::Identical => "IDENTICAL",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::Different => "DIFFERENT",
        };
        let windows = self.windows.iter().filter(|w| w.window != "run").count();
        let _ = writeln!(out, "verify --against: {verdict} ({windows} windows; files {})", counts(all));
        out
    }
}
