//! A closed window's files: the clearing and credit files of each currency, written and
//! checked, then the manifest that lists them.
//!
//! The files are independent of each other, so they are encoded as jobs on a few threads, the
//! largest first: a credit file is about 1.7 times its clearing file, and pairing each
//! currency's two files on two threads left one thread idle while the other finished the
//! credit file. Each file's bytes depend only on its batches, never on which thread wrote it or
//! when, and the manifest lists the files in a fixed order.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clearhouse_domain::{Currency, Payee, SettledBatch};

use crate::{
    clearing, clearing_name, manifest_name, pain001, pain001_name, sha256_hex, Draft, Fences, Manifest, ManifestFile,
    OutputFile, StoreError, WindowMeta,
};

/// A window's file, written through its check into a draft, not yet published.
#[derive(Debug)]
pub struct DraftFile {
    /// File name.
    pub name: String,
    /// What was written.
    pub draft: Draft,
    /// SHA-256 of the content (hex), computed once as it was written.
    pub sha256: String,
}

/// Makes the draft each of a window's files is written into (called from more than one thread).
pub type NewDraft<'a> = dyn Fn() -> Result<Draft, StoreError> + Sync + 'a;

fn write_error(name: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: name.into(), source }
}

fn encode_clearing(
    meta: &WindowMeta,
    currency: Currency,
    group: &[&SettledBatch],
    new_draft: &NewDraft<'_>,
) -> Result<(DraftFile, u64), StoreError> {
    let name = clearing_name(meta.id, currency);
    let mut draft = new_draft()?;
    let encoded = clearing::encode(meta, currency, group, &mut draft).map_err(write_error(&name))?;
    Ok((DraftFile { name, draft, sha256: encoded.sha256 }, encoded.records))
}

fn encode_pain001(
    meta: &WindowMeta,
    currency: Currency,
    group: &[&SettledBatch],
    (debtor, new_draft): (&Payee, &NewDraft<'_>),
) -> Result<Vec<(DraftFile, u64)>, StoreError> {
    let mut total = rust_decimal::Decimal::ZERO;
    let mut out = Vec::new();
    for part in pain001::parts(currency, group) {
        let name = pain001_name(meta.id, currency, part.number());
        let mut draft = new_draft()?;
        let encoded = pain001::encode(meta, currency, &part, debtor, &mut draft).map_err(write_error(&name))?;
        total += encoded.total;
        out.push((DraftFile { name, draft, sha256: encoded.sha256 }, encoded.records));
    }
    let expected: rust_decimal::Decimal = group.iter().flat_map(|b| b.credits.amounts(0..b.credits.len())).sum();
    assert_eq!(total, expected, "pain.001 total differs from the credits");
    Ok(out)
}

/// Writes every file of a closed window into drafts from `new_draft`, manifest last, each
/// checked as it is written (see [`clearing::encode`] and [`pain001::encode`]); returns them
/// and the manifest. `batches` must be sorted by merchant and currency.
pub fn encode_window(
    meta: &WindowMeta,
    batches: &[SettledBatch],
    fences: Fences,
    (debtor, new_draft): (&Payee, &NewDraft<'_>),
) -> Result<(Vec<DraftFile>, Manifest), StoreError> {
    let mut by_currency: BTreeMap<Currency, Vec<&SettledBatch>> = BTreeMap::new();
    for batch in batches {
        assert_eq!(batch.window, meta.id, "batch of another window");
        by_currency.entry(batch.currency).or_default().push(batch);
    }
    let groups: Vec<(Currency, Vec<&SettledBatch>)> = by_currency.into_iter().collect();
    // Per currency, its clearing file (job 2i) and its credit files (job 2i + 1).
    let cost = |job: usize| estimated_bytes(&groups[job / 2].1, job % 2 == 1);
    let encoded = run_jobs(2 * groups.len(), &cost, &|job| {
        let (currency, group) = &groups[job / 2];
        match job % 2 {
            0 => encode_clearing(meta, *currency, group, new_draft).map(|file| vec![file]),
            _ => encode_pain001(meta, *currency, group, (debtor, new_draft)),
        }
    });
    let mut files = Vec::new();
    let mut listed = Vec::new();
    // In job order, whatever order they finished in; the first failure is the window's.
    for result in encoded {
        for (file, records) in result? {
            listed.push(ManifestFile { path: file.name.clone(), sha256: file.sha256.clone(), records });
            files.push(file);
        }
    }
    let name = manifest_name(meta.id);
    let manifest = Manifest::new(meta, fences, batches, listed);
    let bytes = manifest.to_bytes();
    let mut draft = new_draft()?;
    draft.write_all(&bytes).map_err(write_error(&name))?;
    files.push(DraftFile { name, draft, sha256: sha256_hex(&bytes) });
    Ok((files, manifest))
}

/// Every file of a closed window in memory, manifest last; see [`encode_window`].
pub fn window_files(meta: &WindowMeta, batches: &[SettledBatch], fences: Fences, debtor: &Payee) -> Vec<OutputFile> {
    let in_memory = || Ok(Draft::memory());
    let (files, _) = encode_window(meta, batches, fences, (debtor, &in_memory))
        .unwrap_or_else(|e| unreachable!("writing to memory cannot fail: {e}"));
    let file =
        |f: DraftFile| OutputFile { name: f.name, bytes: f.draft.into_bytes().unwrap_or_default(), sha256: f.sha256 };
    files.into_iter().map(file).collect()
}

/// About how many bytes a currency's clearing file (about 110 a detail) or credit files (about
/// 560 a credit) come to: what orders the jobs, largest first.
fn estimated_bytes(group: &[&SettledBatch], credit_files: bool) -> usize {
    match credit_files {
        true => group.iter().map(|b| b.credits.len() * 560).sum(),
        false => group.iter().map(|b| b.details.len() * 110).sum(),
    }
}

/// Runs jobs `0..jobs` on up to as many threads as the machine has cores (this one among
/// them), each thread taking the largest job left by `cost`; returns the results in job order.
/// A job that panics is resumed here once the others have finished.
fn run_jobs<T: Send>(jobs: usize, cost: &(dyn Fn(usize) -> usize + Sync), run: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let mut order: Vec<usize> = (0..jobs).collect();
    order.sort_by_key(|&job| std::cmp::Reverse(cost(job)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..jobs).map(|_| None).collect());
    let work = || {
        while let Some(&job) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let result = run(job);
            results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[job] = Some(result);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).clamp(1, jobs.max(1));
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        work();
        for helper in helpers {
            helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
    let results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    results.into_iter().map(|result| result.expect("every job ran")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_once_each_and_come_back_in_job_order_whatever_their_cost() {
        let runs = AtomicUsize::new(0);
        let results = run_jobs(9, &|job| (job * 7) % 5, &|job| {
            runs.fetch_add(1, Ordering::Relaxed);
            job * 10
        });
        assert_eq!(results, (0..9).map(|job| job * 10).collect::<Vec<_>>());
        assert_eq!(runs.load(Ordering::Relaxed), 9);
        assert!(run_jobs(0, &|_| 0, &|job| job).is_empty());
    }

    #[test]
    fn a_job_that_panics_stops_the_window_with_its_panic() {
        let panic = std::panic::catch_unwind(|| run_jobs(4, &|_| 1, &|job| assert_ne!(job, 2, "job two fails")));
        let message = panic.expect_err("the panic comes through");
        let message = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        assert!(message.contains("job two fails"), "{message}");
    }
}
