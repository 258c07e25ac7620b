//! The checks of one window: its manifest against itself, its bounds, and every file it lists.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use clearhouse_domain::{Currency, Totals, WindowId};
use rust_decimal::Decimal;

use super::{Files, Report};
use crate::ids::sorted_distinct;
use crate::manifest::{Manifest, ManifestBatch, FORMAT};
use crate::store::{OutputStore, StoreError};
use crate::{bounded_amount, clearing, pain001, sha256_hex};

/// Checks one manifest: its own figures and bounds, then every file it lists.
pub(super) fn check(
    files: &mut Files<'_>,
    name: &str,
    m: &Manifest,
    report: &mut Report,
    accounted: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    report.windows += 1;
    let window = m.window_id.parse::<WindowId>().ok();
    if m.format != FORMAT || window.is_none() || name != format!("manifest-{}.json", m.window_id) {
        report
            .problem(name, format!("format {:?} or window id {} does not match the file name", m.format, m.window_id));
    }
    if let Some(window) = window {
        check_bounds(name, m, window, report);
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
    // Only this window's own file names: a manifest cannot send verify anywhere else. Each is
    // read once: what is held at a time is then bounded by the window's own files.
    let currencies: Vec<Option<Currency>> =
        m.files.iter().map(|file| window.and_then(|w| window_file_currency(&file.path, w))).collect();
    let mut first = BTreeSet::new();
    let once: Vec<bool> = m.files.iter().map(|file| first.insert(file.path.as_str())).collect();
    let jobs = m.files.iter().zip(&currencies).zip(&once).enumerate();
    let jobs: Vec<(usize, &str, Currency)> =
        jobs.filter_map(|(at, ((f, c), once))| Some((at, f.path.as_str(), (*c).filter(|_| *once)?))).collect();
    let mut read = read_all(files.store, &jobs, m.files.len());
    for (((file, currency), once), got) in m.files.iter().zip(currencies).zip(once).zip(read.iter_mut()) {
        let Some(currency) = currency else {
            report.problem(name, format!("lists {:?}, which is not a file name of window {}", file.path, m.window_id));
            continue;
        };
        let (true, Some(got)) = (once, got.take()) else {
            report.problem(name, format!("lists {:?} more than once", file.path));
            continue;
        };
        accounted.insert(file.path.clone());
        let Some((content, hash)) = files.record(&file.path, got, report)? else {
            report.problem(&file.path, format!("listed in {name} but missing"));
            continue;
        };
        if hash != file.sha256 {
            report.problem(&file.path, format!("SHA-256 is {hash}, {name} says {}", file.sha256));
        }
        let records = match content {
            Content::Clearing(Ok(read)) => {
                let records = read.records;
                clearing_by_currency.insert(currency.to_string(), read);
                records
            }
            Content::Credits(Ok(read)) => {
                let records = read.payments.iter().map(|p| p.transfers.len() as u64).sum();
                // A window's credits in one currency may span several files: check them as one.
                let all = pain_by_currency.entry(currency.to_string()).or_default();
                all.total += read.total;
                all.payments.extend(read.payments);
                records
            }
            Content::Clearing(Err(e)) => {
                report.problem(&file.path, e);
                continue;
            }
            Content::Credits(Err(e)) => {
                report.problem(&file.path, e);
                continue;
            }
        };
        if records != file.records {
            report.problem(&file.path, format!("has {records} records, {name} says {}", file.records));
        }
    }
    cross_check(name, m, &clearing_by_currency, &pain_by_currency, report);
    Ok(())
}

/// What a listed file holds, read by its kind.
enum Content {
    Clearing(Result<clearing::ReadFile, clearing::ClearingError>),
    Credits(Result<pain001::ReadPain, String>),
}

/// A listed file read, parsed and hashed (`None` when absent).
type Got = Result<Option<(Content, String)>, StoreError>;

/// Reads, hashes and parses the files of `jobs` (position, name, currency) on as many threads
/// as there are cores, each holding one file's bytes at a time; returns what each gave, by
/// position among `len`. The report is then written in the manifest's order, so it is the same
/// whatever the threads' timing. A clearing file's hash comes from its read, which hashes
/// every line anyway; a credit file is hashed, then parsed.
fn read_all(store: &dyn OutputStore, jobs: &[(usize, &str, Currency)], len: usize) -> Vec<Option<Got>> {
    let read_one = |name: &str, currency: Currency| -> Got {
        let Some(bytes) = store.get(name)? else { return Ok(None) };
        Ok(Some(if name.starts_with("clearing-") {
            match clearing::read_hashed(&bytes) {
                Ok((read, hash)) => (Content::Clearing(Ok(read)), hash),
                Err(e) => (Content::Clearing(Err(e)), sha256_hex(&bytes)),
            }
        } else {
            (Content::Credits(pain001::read(&bytes, currency)), sha256_hex(&bytes))
        }))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Got>> = (0..len).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(&(at, name, currency)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        done.push((at, read_one(name, currency)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            let done = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (at, got) in done {
                out[at] = Some(got);
            }
        }
    });
    out
}

/// The currency of `path` when it is one of `window`'s clearing or credit file names.
fn window_file_currency(path: &str, window: WindowId) -> Option<Currency> {
    let rest = path.strip_prefix("clearing-").or_else(|| path.strip_prefix("pain001-"))?;
    let rest = rest.strip_prefix(window.to_string().as_str())?.strip_prefix('-')?;
    let currency = Currency::from_code(rest.get(..3)?)?;
    let part = match rest.get(3..).and_then(|r| r.strip_suffix(".xml")).and_then(|r| r.strip_prefix('-')) {
        Some(n) => n.parse().ok().filter(|n| *n >= 2)?,
        None => 1,
    };
    let names = [crate::clearing_name(window, currency), crate::pain001_name(window, currency, part)];
    names.contains(&path.to_owned()).then_some(currency)
}

/// Recomputes what the window id and timezone fix: the local end, a start before it in the same
/// zone, a settlement date not before the end's local date.
fn check_bounds(name: &str, m: &Manifest, window: WindowId, report: &mut Report) {
    let Ok(tz) = jiff::tz::TimeZone::get(&m.timezone) else {
        report.problem(name, format!("timezone {:?} is not an IANA time zone", m.timezone));
        return;
    };
    let local = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let end = local(window.end());
    if m.end != end {
        report.problem(name, format!("end is {}, but window {} ends at {end} in {}", m.end, m.window_id, m.timezone));
    }
    match m.start.parse::<jiff::Timestamp>() {
        Ok(start) if start < window.end() && local(start) == m.start => {}
        _ => report.problem(name, format!("start {} is not an instant in {} before the end", m.start, m.timezone)),
    }
    let end_date = window.end().to_zoned(tz).date();
    match m.settlement_date.parse::<jiff::civil::Date>() {
        Ok(date) if date >= end_date => {}
        _ => {
            report.problem(name, format!("settlement date {} is not a date on or after {end_date}", m.settlement_date))
        }
    }
}

pub(super) fn manifest_totals(b: &ManifestBatch) -> Result<Totals, String> {
    let d = |s: &str| bounded_amount(s).ok_or_else(|| format!("{s:?} is not an amount"));
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
    let refund_ids = sorted_distinct(file.batches.iter().flat_map(|b| &b.end_to_end_ids).map(String::as_str));
    let payout_total: Decimal = file.batches.iter().map(|b| b.totals.payout).sum();
    let Some(pain) = pain else {
        if !refund_ids.is_empty() {
            report.problem(name, format!("{ccy} has refund credits but no pain.001 file"));
        }
        return;
    };
    let transfers = pain.payments.iter().flat_map(|p| &p.transfers);
    let (refunds, payouts): (Vec<_>, Vec<_>) = transfers.partition(|(e2e, _)| e2e.as_bytes().get(14) == Some(&b'R'));
    let pain_refund_ids = sorted_distinct(refunds.iter().map(|(e, _)| e.as_str()));
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
