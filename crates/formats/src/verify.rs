//! `clearhouse verify DIR`: re-reads every output and checks it against itself and against the
//! manifests: hashes, record counts, control totals, conservation, credit totals, and the
//! run accounting. It reports every problem it finds, each naming the file and what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use clearhouse_domain::{Currency, Totals};
use rust_decimal::Decimal;

use crate::evidence::{self, Summary};
use crate::manifest::{Manifest, ManifestBatch, FORMAT};
use crate::store::OutputStore;
use crate::{clearing, pain001, sha256_hex};

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Manifests checked.
    pub windows: usize,
    /// Files checked (manifests included).
    pub files: usize,
    /// Batches checked.
    pub batches: usize,
    /// Accepted instructions found in clearing files.
    pub details: u64,
    /// Problems, each naming its file.
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, file: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("{file}: {what}"));
    }
}

/// Verifies every window and the evidence files in `store`.
pub fn verify(store: &dyn OutputStore) -> Result<Report, crate::StoreError> {
    let mut report = Report::default();
    let names = store.list()?;
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut windows = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("manifest-") && n.ends_with(".json")) {
        report.files += 1;
        let Some(bytes) = store.get(name)? else { continue };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                report.problem(name, format!("not a valid manifest: {e}"));
                continue;
            }
        };
        windows.push(manifest.window_id.clone());
        check_manifest(store, name, &manifest, &mut report, &mut listed)?;
    }
    for name in &names {
        let window_file = name.starts_with("clearing-") || name.starts_with("pain001-");
        if window_file && !listed.contains(name) {
            report.problem(name, "not listed in any manifest");
        }
    }
    if names.iter().any(|n| n == evidence::SUMMARY) {
        check_summary(store, &windows, &mut report)?;
    } else if windows.is_empty() {
        report.problems.push("no manifest or summary found: is this an output directory?".to_owned());
    }
    Ok(report)
}

fn check_manifest(
    store: &dyn OutputStore,
    name: &str,
    m: &Manifest,
    report: &mut Report,
    listed: &mut BTreeSet<String>,
) -> Result<(), crate::StoreError> {
    report.windows += 1;
    if m.format != FORMAT || name != format!("manifest-{}.json", m.window_id) {
        report
            .problem(name, format!("format {:?} or window id {} does not match the file name", m.format, m.window_id));
    }
    for batch in &m.batches {
        report.batches += 1;
        if let Err(e) = manifest_totals(batch)
            .map(|t| t.is_conserved())
            .and_then(|ok| ok.then_some(()).ok_or("does not balance".to_owned()))
        {
            report.problem(name, format!("batch {}/{}: {e}", batch.merchant_id, batch.currency));
        }
    }
    let sorted =
        m.batches.windows(2).all(|p| (&p[0].merchant_id, &p[0].currency) < (&p[1].merchant_id, &p[1].currency));
    if !sorted {
        report.problem(name, "batches are not sorted by merchant and currency");
    }
    let mut clearing_by_currency: BTreeMap<String, clearing::ReadFile> = BTreeMap::new();
    let mut pain_by_currency: BTreeMap<String, pain001::ReadPain> = BTreeMap::new();
    for file in &m.files {
        listed.insert(file.path.clone());
        report.files += 1;
        let Some(bytes) = store.get(&file.path)? else {
            report.problem(&file.path, format!("listed in {name} but missing"));
            continue;
        };
        let hash = sha256_hex(&bytes);
        if hash != file.sha256 {
            report.problem(&file.path, format!("SHA-256 is {hash}, {name} says {}", file.sha256));
        }
        let currency = file.path.rsplit_once('-').and_then(|(_, rest)| rest.get(..3)).and_then(Currency::from_code);
        let Some(currency) = currency else {
            report.problem(&file.path, "file name does not end in a known currency");
            continue;
        };
        let records = if file.path.starts_with("clearing-") {
            match clearing::read(&bytes) {
                Ok(read) => {
                    let records = read.records;
                    clearing_by_currency.insert(currency.to_string(), read);
                    records
                }
                Err(e) => {
                    report.problem(&file.path, e);
                    continue;
                }
            }
        } else {
            match pain001::read(&bytes, currency) {
                Ok(read) => {
                    let records = read.payments.iter().map(|p| p.transfers.len() as u64).sum();
                    pain_by_currency.insert(currency.to_string(), read);
                    records
                }
                Err(e) => {
                    report.problem(&file.path, e);
                    continue;
                }
            }
        };
        if records != file.records {
            report.problem(&file.path, format!("has {records} records, {name} says {}", file.records));
        }
    }
    cross_check(name, m, &clearing_by_currency, &pain_by_currency, report);
    Ok(())
}

fn manifest_totals(b: &ManifestBatch) -> Result<Totals, String> {
    let d = |s: &str| Decimal::from_str(s).map_err(|_| format!("{s:?} is not an amount"));
    Ok(Totals {
        captures: d(&b.captures)?,
        refunds: d(&b.refunds)?,
        recoveries: d(&b.recoveries)?,
        fees: d(&b.fees)?,
        carried_in: d(&b.carried_in)?,
        net: d(&b.net)?,
        payout: d(&b.payout)?,
        carried_out: d(&b.carried_out)?,
        refund_credits: d(&b.refund_credits)?,
    })
}

/// Manifest batches against clearing control records; refund credits against pain.001.
fn cross_check(
    name: &str,
    m: &Manifest,
    clearing: &BTreeMap<String, clearing::ReadFile>,
    pain: &BTreeMap<String, pain001::ReadPain>,
    report: &mut Report,
) {
    let from_files: Vec<(String, String, Totals, [u64; 4], u64)> = clearing
        .iter()
        .flat_map(|(ccy, f)| {
            f.batches
                .iter()
                .map(move |b| (b.merchant_id.clone(), ccy.clone(), b.totals, b.counts, b.refund_credit_count))
        })
        .collect();
    let mut from_manifest = Vec::new();
    for b in &m.batches {
        if let Ok(t) = manifest_totals(b) {
            let c = &b.counts;
            from_manifest.push((
                b.merchant_id.clone(),
                b.currency.clone(),
                t,
                [c.captures, c.refunds, c.reversals, c.late],
                b.refund_credit_count,
            ));
        }
    }
    let mut sorted_files = from_files.clone();
    sorted_files.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    if sorted_files != from_manifest {
        let first =
            sorted_files.iter().zip(&from_manifest).find(|(a, b)| a != b).map(|(a, _)| format!("{}/{}", a.0, a.1));
        let at = first
            .unwrap_or_else(|| format!("{} batches in files, {} in manifest", sorted_files.len(), from_manifest.len()));
        report.problem(name, format!("batches differ from the clearing files' control records (first at {at})"));
    }
    report.details += from_files.iter().map(|b| b.3[0] + b.3[1] + b.3[2]).sum::<u64>();
    for (ccy, file) in clearing {
        check_credits(name, ccy, file, pain.get(ccy), report);
    }
    for f in clearing.values() {
        if f.window_id != m.window_id || f.settlement_date != m.settlement_date {
            report.problem(
                name,
                format!("clearing file header says window {} settling {}", f.window_id, f.settlement_date),
            );
        }
    }
}

fn check_credits(
    name: &str,
    ccy: &str,
    file: &clearing::ReadFile,
    pain: Option<&pain001::ReadPain>,
    report: &mut Report,
) {
    let refund_total: Decimal = file.batches.iter().map(|b| b.totals.refund_credits).sum();
    let refund_ids: BTreeSet<&str> = file.batches.iter().flat_map(|b| &b.end_to_end_ids).map(String::as_str).collect();
    let payout_total: Decimal = file.batches.iter().map(|b| b.totals.payout).sum();
    let Some(pain) = pain else {
        if !refund_ids.is_empty() {
            report.problem(name, format!("{ccy} has refund credits but no pain.001 file"));
        }
        return;
    };
    let transfers = pain.payments.iter().flat_map(|p| &p.transfers);
    let (refunds, payouts): (Vec<_>, Vec<_>) = transfers.partition(|(e2e, _)| e2e.as_bytes().get(14) == Some(&b'R'));
    let pain_refund_ids: BTreeSet<&str> = refunds.iter().map(|(e, _)| e.as_str()).collect();
    let pain_refund_total: Decimal = refunds.iter().map(|(_, a)| *a).sum();
    let pain_payout_total: Decimal = payouts.iter().map(|(_, a)| *a).sum();
    if pain_refund_ids != refund_ids || pain_refund_total != refund_total {
        report.problem(
            name,
            format!(
                "{ccy} refund credits in pain.001 ({pain_refund_total}) differ from the clearing file ({refund_total})"
            ),
        );
    }
    if pain_payout_total > payout_total {
        report.problem(
            name,
            format!("{ccy} pain.001 pays out {pain_payout_total}, more than the batches' payouts {payout_total}"),
        );
    }
    if pain.payments.iter().any(|p| p.execution_date != file.settlement_date) {
        report.problem(
            name,
            format!("{ccy} pain.001 execution date differs from settlement date {}", file.settlement_date),
        );
    }
}

fn check_summary(store: &dyn OutputStore, windows: &[String], report: &mut Report) -> Result<(), crate::StoreError> {
    let name = evidence::SUMMARY;
    let bytes = store.get(name)?.unwrap_or_default();
    let summary: Summary = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            report.problem(name, format!("not a valid summary: {e}"));
            return Ok(());
        }
    };
    report.files += 1;
    let rejected = evidence_lines::<evidence::RejectLine>(store, evidence::REJECTED, report, |line| {
        clearhouse_domain::RejectReason::from_code(&line.reason)
            .map(|_| ())
            .ok_or(format!("unknown reason code {:?}", line.reason))
    })?;
    let duplicates = evidence_lines::<evidence::DuplicateLine>(store, evidence::DUPLICATES, report, |_| Ok(()))?;
    let checks = [
        (
            summary.instructions == summary.accepted + summary.rejected + summary.duplicates,
            "instructions != accepted + rejected + duplicates".to_owned(),
        ),
        (
            summary.rejected == rejected,
            format!("says {} rejected, {} has {rejected} lines", summary.rejected, evidence::REJECTED),
        ),
        (
            summary.duplicates == duplicates,
            format!("says {} duplicates, {} has {duplicates} lines", summary.duplicates, evidence::DUPLICATES),
        ),
        (
            summary.rejected_by_reason.values().sum::<u64>() == summary.rejected,
            "rejected_by_reason does not add up".to_owned(),
        ),
        (
            summary.accepted == report.details,
            format!("says {} accepted, the clearing files hold {}", summary.accepted, report.details),
        ),
        (summary.windows == windows, format!("lists windows {:?}, manifests found for {windows:?}", summary.windows)),
    ];
    for (ok, problem) in checks {
        if !ok {
            report.problem(name, problem);
        }
    }
    Ok(())
}

/// Parses every line of a JSONL evidence file, reporting the first malformed line; returns the
/// number of lines.
fn evidence_lines<T: serde::de::DeserializeOwned>(
    store: &dyn OutputStore,
    name: &str,
    report: &mut Report,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<u64, crate::StoreError> {
    let bytes = store.get(name)?.unwrap_or_default();
    let mut count = 0;
    for (i, line) in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        count += 1;
        let problem = match serde_json::from_slice::<T>(line) {
            Ok(record) => check(&record).err(),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            report.problem(name, format!("line {}: {problem}", i + 1));
            break;
        }
    }
    Ok(count)
}
