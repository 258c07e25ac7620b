//! The run's seal and evidence: `summary.json` lists the SHA-256 of every other file, and its
//! figures must agree with the manifests, the clearing files and the evidence lines.

use std::collections::{BTreeMap, BTreeSet};

use super::{Files, Report};
use crate::evidence::{self, DuplicateLine, RejectLine, Summary, SUMMARY_FORMAT};
use crate::manifest::Manifest;
use crate::store::StoreError;

/// Checks `summary.json` and everything it seals; marks the evidence files as accounted for.
pub(super) fn check(
    files: &mut Files<'_>,
    names: &[String],
    manifests: &[Manifest],
    report: &mut Report,
    accounted: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let name = evidence::SUMMARY;
    accounted.insert(name.to_owned());
    let Some(bytes) = files.read(name, report)? else { return Ok(()) };
    let summary: Summary = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            report.problem(name, format!("not a valid summary: {e}"));
            return Ok(());
        }
    };
    if summary.to_bytes() != bytes {
        report.problem(name, "is not in the canonical form the engine writes (edited by hand?)");
    }
    if summary.format != SUMMARY_FORMAT {
        report.problem(name, format!("format is {:?}, not {SUMMARY_FORMAT:?}", summary.format));
    }
    check_sealed_files(files, names, &summary, report, accounted)?;
    let rejected = read_lines::<RejectLine>(files, evidence::REJECTED, report)?;
    let duplicates = read_lines::<DuplicateLine>(files, evidence::DUPLICATES, report)?;
    check_evidence(&summary, &rejected, &duplicates, report);
    check_figures(&summary, manifests, rejected.len() as u64, duplicates.len() as u64, report);
    Ok(())
}

/// Every file in the directory is sealed with its hash, and every sealed file is there.
fn check_sealed_files(
    files: &mut Files<'_>,
    names: &[String],
    summary: &Summary,
    report: &mut Report,
    accounted: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let name = evidence::SUMMARY;
    for (file, sealed) in &summary.files {
        if clearhouse_storage::check_name(file).is_err() || file == name {
            report.problem(name, format!("seals {file:?}, which is not a file name of a run"));
            continue;
        }
        accounted.insert(file.clone());
        match files.hash(file, report)? {
            None => report.problem(file, format!("sealed in {name} but missing")),
            Some(hash) if &hash != sealed => report.problem(file, format!("SHA-256 is {hash}, {name} seals {sealed}")),
            Some(_) => {}
        }
    }
    for file in names.iter().filter(|n| n.as_str() != name && !summary.files.contains_key(*n)) {
        if !clearhouse_storage::is_temp_name(file) {
            report.problem(file, format!("not sealed in {name}: not part of the run"));
            accounted.insert(file.clone());
        }
    }
    Ok(())
}

/// The evidence lines agree with the summary: one input name, reason counts recomputed.
fn check_evidence(summary: &Summary, rejected: &[RejectLine], duplicates: &[DuplicateLine], report: &mut Report) {
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for (i, line) in rejected.iter().enumerate() {
        *by_reason.entry(line.reason.clone()).or_default() += 1;
        let known = clearhouse_domain::RejectReason::from_code(&line.reason).is_some();
        let problem = if !known {
            Some(format!("unknown reason code {:?}", line.reason))
        } else if line.source.file != summary.input {
            Some(format!("source file {:?} is not the run's input {:?}", line.source.file, summary.input))
        } else if !matches!(line.payload_encoding.as_str(), "utf-8" | "base64") {
            Some(format!("payload_encoding {:?} is neither utf-8 nor base64", line.payload_encoding))
        } else {
            None
        };
        if let Some(problem) = problem {
            report.problem(evidence::REJECTED, format!("line {}: {problem}", i + 1));
        }
    }
    if by_reason != summary.rejected_by_reason {
        report.problem(
            evidence::SUMMARY,
            format!(
                "rejected_by_reason {:?} differs from {} {by_reason:?}",
                summary.rejected_by_reason,
                evidence::REJECTED
            ),
        );
    }
    for (i, line) in duplicates.iter().enumerate() {
        if line.source.file != summary.input || line.first_line >= line.source.line {
            let what = "names another input, or a first delivery that is not before it";
            report.problem(evidence::DUPLICATES, format!("line {}: {what}", i + 1));
        }
    }
}

/// The accounting: `instructions = accepted + rejected + duplicates`, each against its source.
fn check_figures(summary: &Summary, manifests: &[Manifest], rejected: u64, duplicates: u64, report: &mut Report) {
    let windows: Vec<&str> = manifests.iter().map(|m| m.window_id.as_str()).collect();
    let fenced_by_input = manifests.iter().all(|m| m.fences.len() == 1 && m.fences.contains_key(&summary.input));
    let total = summary.accepted.checked_add(summary.rejected).and_then(|n| n.checked_add(summary.duplicates));
    let checks = [
        (total == Some(summary.instructions), "instructions != accepted + rejected + duplicates".to_owned()),
        (
            summary.rejected == rejected,
            format!("says {} rejected, {} has {rejected} lines", summary.rejected, evidence::REJECTED),
        ),
        (
            summary.duplicates == duplicates,
            format!("says {} duplicates, {} has {duplicates} lines", summary.duplicates, evidence::DUPLICATES),
        ),
        (
            summary.accepted == report.details,
            format!("says {} accepted, the clearing files hold {}", summary.accepted, report.details),
        ),
        (summary.windows == windows, format!("lists windows {:?}, manifests found for {windows:?}", summary.windows)),
        (fenced_by_input, format!("input {:?} is not the input every manifest fences", summary.input)),
    ];
    for (ok, problem) in checks {
        if !ok {
            report.problem(evidence::SUMMARY, problem);
        }
    }
}

/// Parses every line of a JSONL evidence file; a malformed line is a problem (the first one is
/// reported) and is left out of the result.
fn read_lines<T: serde::de::DeserializeOwned>(
    files: &mut Files<'_>,
    name: &str,
    report: &mut Report,
) -> Result<Vec<T>, StoreError> {
    let bytes = files.read(name, report)?.unwrap_or_default();
    let mut out = Vec::new();
    let mut reported = false;
    for (i, line) in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        match serde_json::from_slice::<T>(line) {
            Ok(record) => out.push(record),
            Err(e) if !reported => {
                report.problem(name, format!("line {}: {e}", i + 1));
                reported = true;
            }
            Err(_) => {}
        }
    }
    Ok(out)
}
