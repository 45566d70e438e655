//! `ekms audit prune DIR --older-than AGE`: retention, run by an operator (or a timer) who can
//! verify, rather than by the parent, which cannot (it never checks a signature, and a parent
//! is not trusted to say what verified).
//!
//! It verifies the rotated files first (chain, signatures, attestations against the given root
//! and PCRs), then removes the oldest compressed ones whose last change is older than the limit,
//! as a prefix of the log (never one in the middle), only if every record in them is covered by
//! a signed checkpoint, and never the newest rotated file (the parent finds where `audit.jsonl`
//! starts from it). Before removing anything it writes `audit-pruned.json`: for each chain, the
//! last removed record's seq and hash and the last attestation line before it, so that the
//! files kept still verify (`ekms audit verify DIR --allow-pruned`) from there.
//!
//! What the marker cannot prove: that the removed records were ever there. It is written by
//! whoever prunes; an auditor who needs the whole history keeps a shipped copy
//! (`ekms audit tail DIR --follow --json`), and `verify` refuses a pruned set unless told.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use ekms_parent::store::audit_files::{self, AuditFile};
use serde_json::{json, Value};

use super::{
    member_of, parse_value, read_line, verify_chains_from, AttestationLine, ChainStart, LogSet,
    SetIndex, Trust,
};

/// The marker a prune leaves in the data directory.
pub const MARKER: &str = "audit-pruned.json";

/// What `audit-pruned.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneMarker {
    /// The log offset of the first file kept: files before it were removed (one still there
    /// is a leftover of an interrupted prune, and is not read).
    pub first_kept: u64,
    /// When the last prune ran (seconds since the Unix epoch).
    pub pruned_at: u64,
    /// The files the last prune removed.
    pub removed: Vec<String>,
    /// Where each chain goes on.
    pub chains: Vec<MarkedChain>,
}

/// One chain's start in the marker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkedChain {
    /// The member (`None`: a lone enclave's chain, or the lines without a member).
    pub member: Option<String>,
    /// Where it goes on.
    #[serde(flatten)]
    pub start: ChainStart,
}

impl PruneMarker {
    /// The marker in `dir`, if any.
    ///
    /// # Errors
    /// When it exists but cannot be read or parsed.
    pub fn read(dir: &Path) -> Result<Option<PruneMarker>, String> {
        let path = dir.join(MARKER);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{MARKER} is malformed: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{MARKER} cannot be read: {e}")),
        }
    }

    /// Each chain's start, as verification takes them.
    pub fn starts(&self) -> BTreeMap<Option<String>, ChainStart> {
        self.chains
            .iter()
            .map(|c| (c.member.clone(), c.start.clone()))
            .collect()
    }

    /// Writes it to `dir` whole (a temporary file, synced, renamed into place).
    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join(format!("{MARKER}.tmp"));
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(MARKER))
            .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
        sync_dir(dir)
    }
}

/// `ekms audit prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The data directory (`<data-dir>` of ekms-parent).
    pub dir: PathBuf,
    /// Remove rotated files last changed longer ago than this (seconds, or with s, m, h, d).
    #[arg(long, value_name = "AGE", value_parser = audit_files::parse_age)]
    pub older_than: Duration,
    /// The PCRs the enclave images must have had (repeatable), as for `verify`.
    #[arg(long, value_delimiter = ',')]
    pub expect_pcrs: Vec<PathBuf>,
    /// Root certificate (PEM); default: the AWS Nitro Enclaves root.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Accept debug-mode enclaves (PCR0 all zero).
    #[arg(long)]
    pub allow_debug: bool,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `ekms audit prune`; the JSON report.
///
/// # Errors
/// When the rotated files do not verify, or a file cannot be read, written or removed.
pub fn prune(args: &PruneArgs) -> anyhow::Result<Value> {
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let trust = Trust::new(args.root.as_deref(), &args.expect_pcrs, args.allow_debug)?;
    let old = PruneMarker::read(dir).map_err(|why| anyhow!("{}: {why}", dir.display()))?;
    let all = LogSet::at(dir).map_err(|why| anyhow!("{}: {why}", dir.display()))?;
    // The rotated files only: audit.jsonl is being written.
    let rotated = LogSet {
        files: all
            .files
            .iter()
            .filter(|f| f.start.is_some())
            .cloned()
            .collect(),
        is_dir: true,
        marker: all.marker.clone(),
    };
    if rotated.files.is_empty() {
        return Ok(json!({ "removed": [], "why": "no rotated file" }));
    }
    let index = SetIndex::build(&rotated).map_err(|why| anyhow!("{}: {why}", dir.display()))?;
    let starts = old.as_ref().map(PruneMarker::starts).unwrap_or_default();
    let chains = verify_chains_from(
        || rotated.reader().map(|r| r as Box<dyn BufRead>),
        &trust,
        &starts,
        true,
    )
    .map_err(|why| {
        anyhow!(
            "{}: {} (nothing removed)",
            dir.display(),
            index.name_lines(&why)
        )
    })?;

    // The oldest compressed files past the limit, never the newest rotated one.
    let now = SystemTime::now();
    let newest = rotated.files.len() - 1;
    let mut candidates: Vec<&AuditFile> = Vec::new();
    for file in &rotated.files[..newest] {
        let modified = std::fs::metadata(&file.path)
            .and_then(|m| m.modified())
            .with_context(|| format!("{}", file.path.display()))?;
        let old_enough = now
            .duration_since(modified)
            .is_ok_and(|age| age >= args.older_than);
        if !file.compressed || !old_enough {
            break;
        }
        candidates.push(file);
    }
    if candidates.is_empty() {
        return Ok(json!({ "removed": [], "why": "no rotated file is old enough" }));
    }

    // Where each chain goes on after them, and that every record in them is covered.
    let mut next: BTreeMap<Option<String>, ChainStart> = starts;
    for file in &candidates {
        carry(file, &mut next)?;
    }
    for (member, summary) in &chains {
        let covered = summary.last_seq - summary.unverified_tail;
        if let Some(start) = next.get(member) {
            if start.seq > covered {
                bail!(
                    "{}: records up to seq {} would be removed, but the rotated files' signed \
                     checkpoints cover only seq {covered}: nothing removed",
                    dir.display(),
                    start.seq
                );
            }
        }
    }
    let kept = &rotated.files[candidates.len()];
    let marker = PruneMarker {
        first_kept: kept.start.unwrap_or(0),
        pruned_at: now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        removed: candidates.iter().map(|f| f.name()).collect(),
        chains: next
            .into_iter()
            .map(|(member, start)| MarkedChain { member, start })
            .collect(),
    };
    let report = json!({
        "removed": marker.removed,
        "firstKept": kept.name(),
        "chains": marker.chains,
        "dryRun": args.dry_run,
    });
    if args.dry_run {
        return Ok(report);
    }
    // The marker first: a prune interrupted after it leaves files that verification skips
    // (they come before the first kept) and the next prune removes.
    marker.write(dir)?;
    for file in &candidates {
        std::fs::remove_file(&file.path)
            .with_context(|| format!("removing {}", file.path.display()))?;
    }
    for leftover in leftovers(dir, marker.first_kept)? {
        std::fs::remove_file(&leftover)
            .with_context(|| format!("removing {}", leftover.display()))?;
    }
    sync_dir(dir)?;
    Ok(report)
}

/// Moves each chain's start past `file`'s records and attestation lines.
fn carry(
    file: &AuditFile,
    starts: &mut BTreeMap<Option<String>, ChainStart>,
) -> anyhow::Result<()> {
    let reader =
        audit_files::open(file).with_context(|| format!("opening {}", file.path.display()))?;
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut complete = true;
    while let Some(fits) = read_line(&mut reader, &mut buf, &mut complete)
        .with_context(|| format!("reading {}", file.path.display()))?
    {
        // Verified above: every line parses.
        let Some(value) = parse_value(&buf).ok().filter(|_| fits) else {
            continue;
        };
        let chain = member_of(&value).map(str::to_owned);
        let entry = starts.entry(chain).or_insert_with(|| ChainStart {
            seq: 0,
            hash: hex::encode([0u8; 32]),
            attestation: None,
        });
        match value["type"].as_str() {
            Some("record") => {
                if let (Some(seq), Some(hash)) = (value["seq"].as_u64(), value["hash"].as_str()) {
                    entry.seq = seq;
                    entry.hash = hash.to_owned();
                }
            }
            Some("attestation") => {
                if let (Some(public_key), Some(document)) =
                    (value["publicKey"].as_str(), value["document"].as_str())
                {
                    entry.attestation = Some(AttestationLine {
                        public_key: public_key.to_owned(),
                        document: document.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rotated files before `first_kept`: left by an interrupted prune.
fn leftovers(dir: &Path, first_kept: u64) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        for compressed in [true, false] {
            let start = name
                .strip_prefix("audit-")
                .and_then(|rest| rest.get(..20))
                .and_then(|digits| digits.parse::<u64>().ok());
            if let Some(start) = start {
                if start < first_kept && name == audit_files::rotated_name(start, compressed) {
                    out.push(entry.path());
                }
            }
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
