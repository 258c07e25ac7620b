//! The commands ops runs after an outage: `replay`, `verify --against` and `trace`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clearhouse_daemon::emit::{emit_missing, Emitted};
use clearhouse_daemon::replay::{replay as replay_topic, Bound, Original, ReplayRequest, ReplayedWindow};
use clearhouse_daemon::{dead_letters_for, Settings};
use clearhouse_formats::compare::{compare, Verdict};
use clearhouse_formats::trace::{describe, trace as trace_id};
use clearhouse_formats::DirStore;
use clearhouse_jobs::Config;

use crate::cli::{NetArgs, ReplayArgs, TraceArgs};

/// Refuses an output directory that is, holds or sits in a directory it must not touch.
fn separate(out: &Path, other: &Path, what: &str) -> Result<()> {
    let resolve = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (out, other) = (resolve(out), resolve(other));
    if out.starts_with(&other) || other.starts_with(&out) {
        anyhow::bail!(
            "--out {} overlaps the {what} {}: replay writes into a directory of its own",
            out.display(),
            other.display()
        );
    }
    Ok(())
}

pub fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    if let Some(input) = &args.input {
        let net = NetArgs {
            input: input.clone(),
            out: args.out.clone(),
            config: args.config.clone(),
            shards: None,
            now: None,
            no_progress: true,
        };
        return crate::commands::net(&net);
    }
    let config = Config::load(args.config.as_deref().context("--config is required to replay a topic")?)?;
    let settings = config.daemon_settings()?;
    separate(&args.out, &settings.out_dir, "live output directory")?;
    separate(&args.out, &settings.state_dir, "state directory")?;
    let original = match (&args.original, args.event_time_only, args.from_windows_topic) {
        (_, true, _) => Original::None,
        (_, _, true) => Original::WindowsTopic,
        (Some(dir), ..) => Original::Dir(dir.clone()),
        (None, ..) => Original::Dir(settings.out_dir.clone()),
    };
    if let Original::Dir(dir) = &original {
        separate(&args.out, dir, "original directory")?;
        if !dir.is_dir() {
            anyhow::bail!(
                "original directory {} does not exist (--from-windows-topic takes the fences from the windows topic)",
                dir.display()
            );
        }
    }
    let bound = |offset: &Option<Bound>, time: Option<jiff::Timestamp>| offset.clone().or(time.map(Bound::Time));
    let request = ReplayRequest {
        original: original.clone(),
        out: args.out.clone(),
        from: bound(&args.from_offset, args.from_time),
        to: bound(&args.to_offset, args.to_time),
        keep_credits: args.emit,
    };
    let report =
        replay_topic(&settings, &request).with_context(|| format!("replaying topic {}", settings.input_topic))?;
    let topic = &settings.input_topic;
    say!("clearhouse replay: {} messages of topic {topic} into {}", report.messages, args.out.display());
    match &original {
        Original::Dir(dir) => say!("  fences and seals from the manifests in {}", dir.display()),
        Original::WindowsTopic => say!("  fences and seals from the events on {}", settings.windows_topic),
        Original::None => say!("  no manifests: every window sealed by event time only"),
    }
    for w in &report.windows {
        let how = if w.from_manifest {
            "sealed as in its original manifest"
        } else {
            "no original manifest: sealed by event time only"
        };
        say!("  window {}: {} batches, {how}", w.window, w.batches);
    }
    if !report.open.is_empty() {
        let open: Vec<String> = report.open.iter().map(ToString::to_string).collect();
        say!("  not closed within the range, not written: {}", open.join(", "));
    }
    if args.emit {
        return emit(&settings, &args.out, &report.windows);
    }
    Ok(ExitCode::SUCCESS)
}

/// `replay --emit`: exit 0 when every window was restored or already complete, 3 if any refused.
fn emit(settings: &Settings, staged: &Path, windows: &[ReplayedWindow]) -> Result<ExitCode> {
    let outcomes = emit_missing(settings, staged, windows).context("restoring the live output")?;
    let mut refused = 0;
    for (window, outcome) in &outcomes {
        match outcome {
            Emitted::Restored { files, credits, event_sent } => {
                let event = if *event_sent { "sent" } else { "already there" };
                say!(
                    "  emit {window}: files {} written, {} already there; credits {} sent, {} already on the topic; \
                     window event {event}",
                    files.0,
                    files.1,
                    credits.0,
                    credits.1
                );
            }
            Emitted::Refused(conflicts) => {
                refused += 1;
                say!("  emit {window}: REFUSED, nothing written or sent: {}", conflicts.join("; "));
            }
            Emitted::NotClosed => say!("  emit {window}: not closed by the original run, left to the daemon"),
        }
    }
    Ok(if refused == 0 { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// `verify --against ORIGINAL REPLAY`: exit 0 identical, 3 different, 4 incomplete.
pub fn verify_against(original: &Path, replay: &Path) -> Result<ExitCode> {
    if !original.is_dir() {
        anyhow::bail!("{} is not a directory", original.display());
    }
    let comparison = DirStore::open(original)
        .and_then(|original| compare(&original, &DirStore::open(replay)?))
        .with_context(|| format!("cannot compare {} with {}", replay.display(), original.display()))?;
    say!("{}", comparison.render().trim_end_matches('\n'));
    Ok(match comparison.verdict() {
        Verdict::Identical => ExitCode::SUCCESS,
        Verdict::Incomplete => ExitCode::from(4),
        Verdict::Different => ExitCode::from(3),
    })
}

pub fn trace(args: &TraceArgs) -> Result<ExitCode> {
    if !args.out.is_dir() {
        anyhow::bail!("{} is not a directory", args.out.display());
    }
    let sightings = DirStore::open(&args.out)
        .and_then(|store| trace_id(&store, &args.id))
        .with_context(|| format!("cannot read {}", args.out.display()))?;
    let mut lines: Vec<String> = sightings.iter().map(|s| describe(&args.id, s)).collect();
    if let Some(path) = &args.config {
        let settings = Config::load(path)?.daemon_settings()?;
        let letters = dead_letters_for(&settings, &args.id)
            .with_context(|| format!("reading the dead-letter topic {}", settings.dlq_topic))?;
        for r in letters {
            let field = r.field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default();
            let at = format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset);
            lines.push(format!(
                "{}: rejected, reason {}{field}: {}\n  {at}, on the dead-letter topic {}",
                args.id, r.reason, r.message, settings.dlq_topic
            ));
        }
    }
    if lines.is_empty() {
        anyhow::bail!("{} is not in {} (no clearing record, reject or duplicate)", args.id, args.out.display());
    }
    for line in &lines {
        say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
