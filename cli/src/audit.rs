//! `ekms audit verify`, `ekms audit tail`: the customer's side of the tamper-evident audit log.
//!
//! `verify` reads `audit.jsonl` (format: `enclave/src/audit.rs`; hashes and signed bytes:
//! [`ekms_shared::audit_format`]) line by line and names the FIRST problem: a record whose
//! hash does not match its contents (altered), a gap in the sequence (removed), a record out
//! of place (inserted or reordered), a record that does not chain onto the one before it, a
//! checkpoint that does not cover the head, is not attested, or whose signature is invalid,
//! an attestation document that does not verify or binds another key, and records no signed
//! checkpoint covers. With `--endpoint` it also asks the enclave for its durable head
//! (`Ekms.AuditHead`, signed with the current boot's checkpoint key) and checks that the file
//! reaches it, so that a cut-off tail is caught.
//!
//! What it trusts: the root certificate (`--root`, else the AWS Nitro Enclaves root) and, with
//! `--expect-pcrs`, the enclave image. Without `--expect-pcrs` any enclave image the root
//! vouches for is accepted, and the output says so. Attestation documents in the log are
//! historical: no nonce, no age limit, and each is verified at its own timestamp (the leaf
//! certificates of real Nitro documents live for hours).

use std::io::{BufRead, Read as _};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use p384::ecdsa::signature::Verifier as _;
use p384::pkcs8::DecodePublicKey as _;
use serde_json::{json, Value};

use ekms_shared::attestation::{self, Policy, TrustAnchor};
use ekms_shared::audit_format::{
    checkpoint_message, head_message, record_hash, ATTESTATION_USER_DATA,
};

use super::custody::{call, Target};

mod prune;
mod set;
mod tail;
pub use prune::{prune, PruneArgs, PruneMarker};
pub use set::{LogSet, SetIndex};
pub use tail::tail;

/// Longest line accepted (a record is a few KiB; a policy inside one at most 32 KiB).
pub const MAX_LINE: usize = 1024 * 1024;

/// `ekms audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log: hash chain, checkpoint signatures, attestations; with --endpoint,
    /// that it reaches the enclave's durable head. Names the first problem; exits non-zero.
    Verify(VerifyArgs),
    /// Print each record as one line (eventTime eventName user errorCode resources).
    Tail(TailArgs),
    /// Write the audit log held in an etcd store to a file, as `audit.jsonl` is.
    Export(ExportArgs),
    /// Retention: verify a data directory's rotated files, then remove the oldest ones older
    /// than a limit (leaving `audit-pruned.json`, from which the rest still verifies).
    Prune(PruneArgs),
}

/// `ekms audit export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store: etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
    #[arg(long, value_name = "URL")]
    pub store: ekms_parent::store::EtcdUrl,
    /// Where to write the lines (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ekms audit verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log: a data directory (its rotated `audit-*.jsonl.gz` files and `audit.jsonl`, read
    /// in order as one log), one file (`.gz` or not), or an etcd store's
    /// (etcd://HOST:PORT/PREFIX).
    pub file: PathBuf,
    /// The ekms endpoint: also check that the file reaches the enclave's durable head.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) to trust for an https endpoint.
    #[arg(long, requires = "endpoint")]
    pub ca: Option<PathBuf>,
    /// The PCRs the enclave image must have had (`pcrs.json`); several files (repeated, or
    /// separated by commas) for a log that spans image upgrades: each attestation must match one
    /// of them (the last is the current image's, for an https --endpoint). Without it, any
    /// image the root vouches for is accepted (and the output says so).
    #[arg(long, value_delimiter = ',')]
    pub expect_pcrs: Vec<PathBuf>,
    /// Root certificate (PEM) to verify against; default: the AWS Nitro Enclaves root.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Accept debug-mode enclaves (PCR0 all zero), whose memory the parent can read.
    #[arg(long)]
    pub allow_debug: bool,
    /// Accept a directory whose beginning `ekms audit prune` removed: verify from where its
    /// `audit-pruned.json` says the chains go on (the removed records are not re-checked).
    #[arg(long)]
    pub allow_pruned: bool,
}

/// `ekms audit tail` options.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The log: a data directory (its rotated files, then `audit.jsonl`, followed across
    /// rotations), or one file.
    pub file: PathBuf,
    /// Keep following: print records as they are appended (until interrupted).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Start at the first record whose seq is at least this (the lines before it skipped).
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// Print the log's lines as they are (one JSON object each: records, checkpoints and
    /// attestations), for a log shipper, instead of one summary per record.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `ekms audit` subcommand.
///
/// # Errors
/// The first problem `verify` found, or an I/O error.
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            let report = verify_command(&args)?;
            println!("{report}");
            Ok(())
        }
        AuditCommand::Tail(args) => tail(&args, &mut std::io::stdout().lock()),
        AuditCommand::Prune(args) => {
            println!("{:#}", prune(&args)?);
            Ok(())
        }
        AuditCommand::Export(args) => {
            let lines = etcd_audit(&args.store)?;
            match &args.out {
                Some(path) => std::fs::write(path, &lines)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout().lock(), &lines)?,
            }
            Ok(())
        }
    }
}

/// Every audit line an etcd store holds, each followed by `\n`.
fn etcd_audit(url: &ekms_parent::store::EtcdUrl) -> anyhow::Result<Vec<u8>> {
    let store = ekms_parent::store::EtcdStore::open(url)
        .with_context(|| format!("opening the store {url}"))?;
    let mut lines = Vec::new();
    store
        .audit_lines(|line| {
            lines.extend_from_slice(line);
            lines.push(b'\n');
        })
        .with_context(|| format!("reading the audit log of {url}"))?;
    Ok(lines)
}

/// What the attestation lines must prove.
#[derive(Debug)]
pub struct Trust {
    /// The root the documents' chains must end at.
    pub anchor: TrustAnchor,
    /// PCRs, debug mode (no nonce, no age): a document must satisfy one of them, each named
    /// by the file it came from (one unnamed policy when the PCRs are not pinned).
    pub policies: Vec<(Option<String>, Policy)>,
    /// Whether the PCRs are pinned.
    pub pcrs_pinned: bool,
}

impl Trust {
    fn from_args(args: &VerifyArgs) -> anyhow::Result<Self> {
        Self::new(args.root.as_deref(), &args.expect_pcrs, args.allow_debug)
    }

    /// The root (`None`: the AWS Nitro Enclaves root), the images' PCR files (none: any image
    /// the root vouches for) and whether debug-mode enclaves are accepted.
    ///
    /// # Errors
    /// When a file cannot be read or parsed.
    pub fn new(
        root: Option<&std::path::Path>,
        expect_pcrs: &[PathBuf],
        allow_debug: bool,
    ) -> anyhow::Result<Self> {
        let anchor = match root {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                TrustAnchor::from_pem(&pem)
                    .with_context(|| format!("{} is not a root certificate", path.display()))?
            }
            None => TrustAnchor::aws_nitro_root(),
        };
        let mut policies = Vec::with_capacity(expect_pcrs.len().max(1));
        for path in expect_pcrs {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let pcrs = attestation::pcr_set_from_json(&text)
                .with_context(|| format!("{} is not a PCR file", path.display()))?;
            policies.push((Some(path.display().to_string()), Policy::pinned(pcrs)));
        }
        let pcrs_pinned = !policies.is_empty();
        if !pcrs_pinned {
            policies.push((None, Policy::accept_any_pcrs()));
        }
        if allow_debug {
            policies = policies
                .into_iter()
                .map(|(name, policy)| (name, policy.allowing_debug()))
                .collect();
        }
        Ok(Trust {
            anchor,
            policies,
            pcrs_pinned,
        })
    }

    /// Verifies a document against the root and one of the PCR policies: the first that
    /// accepts it, or every policy's refusal.
    fn verify(
        &self,
        document: &[u8],
        at: std::time::SystemTime,
    ) -> Result<attestation::VerifiedAttestation, String> {
        let mut refusals = Vec::with_capacity(self.policies.len());
        for (name, policy) in &self.policies {
            match attestation::verify(document, &self.anchor, at, policy) {
                Ok(verified) => return Ok(verified),
                Err(e) => refusals.push(match name {
                    Some(name) if self.policies.len() > 1 => format!("{name}: {e}"),
                    _ => e.to_string(),
                }),
            }
        }
        Err(if refusals.len() > 1 {
            format!(
                "it matches none of the {} PCR files ({})",
                refusals.len(),
                refusals.join("; ")
            )
        } else {
            refusals.concat()
        })
    }
}

/// What a log that verified holds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Records.
    pub records: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Attestation lines (one per enclave boot that wrote records).
    pub attestations: u64,
    /// The last record's seq (0 for an empty log).
    pub last_seq: u64,
    /// The last record's hash (zeros for an empty log).
    pub last_hash: [u8; 32],
    /// The checkpoint key of the last attestation line (SubjectPublicKeyInfo DER).
    pub last_key: Option<Vec<u8>>,
    /// PCR0 of each attestation, hex, in log order.
    pub pcr0: Vec<String>,
    /// Records at the end of a member's chain that no signed checkpoint covers (the member
    /// stopped first): hash-chained but not signed, so not verified.
    pub unverified_tail: u64,
    /// The seq the log starts after (0; or where `ekms audit prune` cut it) and its hash.
    base: (u64, [u8; 32]),
    /// Every record's hash, by seq - 1 - base.
    hashes: Vec<[u8; 32]>,
    /// Every record's line number, by seq - 1 - base.
    line_of: Vec<u64>,
}

impl Summary {
    /// The hash of record `seq` (zeros for seq 0), if the log has it.
    pub fn hash_at(&self, seq: u64) -> Option<[u8; 32]> {
        if seq == self.base.0 {
            return Some(self.base.1);
        }
        let index = usize::try_from(seq.checked_sub(self.base.0 + 1)?).ok()?;
        self.hashes.get(index).copied()
    }

    /// The line of record `seq` (0 if the log does not have it).
    fn line_at(&self, seq: u64) -> u64 {
        seq.checked_sub(self.base.0 + 1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.line_of.get(i).copied())
            .unwrap_or(0)
    }
}

/// Where a chain starts when the log's beginning was removed by `ekms audit prune` (which
/// verified it first): the last removed record, and the last attestation line before it (whose
/// key signs the checkpoints that cover the first records kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainStart {
    /// The last removed record's seq.
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
    /// The last attestation line before it: `publicKey` and `document`, base64, as in the log.
    pub attestation: Option<AttestationLine>,
}

/// An attestation line's fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationLine {
    /// The checkpoint key (SPKI DER), base64.
    pub public_key: String,
    /// The attestation document, base64.
    pub document: String,
}

/// Checks an attestation line: the document verifies (root, PCRs) and binds the checkpoint
/// key; returns the key and the document's PCR0, hex.
fn check_attestation(
    trust: &Trust,
    public_key: &[u8],
    document: &[u8],
) -> Result<(p384::ecdsa::VerifyingKey, String), String> {
    let at = attestation::unverified_timestamp(document)
        .map_err(|e| format!("attestation document malformed: {e}"))?;
    let verified = trust
        .verify(document, at)
        .map_err(|e| format!("attestation document does not verify: {e}"))?;
    if verified.public_key() != Some(public_key) {
        return Err(
            "attestation does not bind its publicKey (the document attests another key)".to_owned(),
        );
    }
    if verified.user_data() != Some(ATTESTATION_USER_DATA) {
        return Err(format!(
            "attestation document is not for an audit checkpoint key (user_data is not {:?})",
            String::from_utf8_lossy(ATTESTATION_USER_DATA)
        ));
    }
    let key = verifying_key(public_key)
        .ok_or_else(|| "attested publicKey is not a P-384 public key".to_owned())?;
    Ok((
        key,
        hex::encode(verified.pcrs().get(&0).cloned().unwrap_or_default()),
    ))
}

/// One line, parsed enough to check.
enum Line {
    Record {
        seq: u64,
        prev: [u8; 32],
        hash: [u8; 32],
        record: Value,
    },
    Checkpoint {
        seq: u64,
        hash: [u8; 32],
        signature: Vec<u8>,
    },
    Attestation {
        public_key: Vec<u8>,
        document: Vec<u8>,
    },
}

fn hash32(value: &Value, field: &str) -> Result<[u8; 32], String> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| format!("no {field} string"))?;
    let bytes = hex::decode(text).map_err(|_| format!("{field} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{field} is not 32 bytes"))
}

fn u64_field(value: &Value, field: &str) -> Result<u64, String> {
    value[field]
        .as_u64()
        .ok_or_else(|| format!("no {field} number"))
}

fn b64_field(value: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| format!("no {field} string"))?;
    B64.decode(text)
        .map_err(|_| format!("{field} is not base64"))
}

/// The member whose chain a line belongs to (`None`: a log one enclave wrote alone).
fn member_of(value: &Value) -> Option<&str> {
    value.get("member").and_then(Value::as_str)
}

fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_owned())?;
    if !value.is_object() {
        return Err("not a JSON object".to_owned());
    }
    Ok(value)
}

fn parse_fields(value: &Value) -> Result<Line, String> {
    match value["type"].as_str() {
        Some("record") => Ok(Line::Record {
            seq: u64_field(value, "seq")?,
            prev: hash32(value, "prev")?,
            hash: hash32(value, "hash")?,
            record: value
                .get("record")
                .filter(|r| r.is_object())
                .cloned()
                .ok_or("no record object")?,
        }),
        Some("checkpoint") => Ok(Line::Checkpoint {
            seq: u64_field(value, "seq")?,
            hash: hash32(value, "hash")?,
            signature: b64_field(value, "signature")?,
        }),
        Some("attestation") => Ok(Line::Attestation {
            public_key: b64_field(value, "publicKey")?,
            document: b64_field(value, "document")?,
        }),
        Some(other) => Err(format!("unknown line type {:?}", clean(other))),
        None => Err("no type".to_owned()),
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes (without its `\n`) into `buf`; `Ok(false)` at
/// the end of the input. A last line without `\n` is returned as a line (`complete` false).
fn read_line<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    complete: &mut bool,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    *complete = buf.last() == Some(&b'\n');
    if *complete {
        buf.pop();
    }
    Ok(Some(buf.len() <= MAX_LINE))
}

fn verifying_key(spki: &[u8]) -> Option<p384::ecdsa::VerifyingKey> {
    p384::ecdsa::VerifyingKey::from_public_key_der(spki).ok()
}

fn signature_valid(key: &p384::ecdsa::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    p384::ecdsa::Signature::from_der(signature)
        .map(|s| key.verify(message, &s).is_ok())
        .unwrap_or(false)
}

/// Looks ahead (from the reader's position) for record `seq`; its line number if found.
fn find_later<R: BufRead>(
    reader: &mut R,
    mut line_no: u64,
    seq: u64,
    chain: Chain<'_>,
) -> Option<u64> {
    let mut buf = Vec::new();
    let mut complete = true;
    while let Ok(Some(fits)) = read_line(reader, &mut buf, &mut complete) {
        line_no += 1;
        if !fits {
            continue;
        }
        let Ok(value) = parse_value(&buf) else {
            continue;
        };
        if !chain.holds(&value) {
            continue;
        }
        if let Ok(Line::Record { seq: s, .. }) = parse_fields(&value) {
            if s == seq {
                return Some(line_no);
            }
        }
    }
    None
}

/// Which lines of a log one verification reads.
#[derive(Debug, Clone, Copy)]
pub enum Chain<'a> {
    /// Every line: a log one enclave wrote alone.
    All,
    /// The lines of one member of several sharing a store (`None`: lines without a member,
    /// written before the store was shared).
    Member(Option<&'a str>),
}

impl Chain<'_> {
    fn holds(self, value: &Value) -> bool {
        match self {
            Chain::All => true,
            Chain::Member(member) => member_of(value) == member,
        }
    }
}

/// Verifies a whole log; the summary, or the first problem (`line N: ...`).
///
/// # Errors
/// The first problem, named, as a message.
pub fn verify_log<R: BufRead>(reader: R, trust: &Trust) -> Result<Summary, String> {
    verify_chain(reader, trust, Chain::All)
}

/// Verifies one chain of a log (line numbers count every line of the log); the summary, or the
/// first problem. A member's chain may end with records no checkpoint covers (the member
/// stopped before its next one): they are counted in [`Summary::unverified_tail`], not
/// verified, and not an error; any other chain must end covered.
///
/// # Errors
/// The first problem, named, as a message.
pub fn verify_chain<R: BufRead>(
    reader: R,
    trust: &Trust,
    chain: Chain<'_>,
) -> Result<Summary, String> {
    verify_chain_from(reader, trust, chain, None, false)
}

/// [`verify_chain`] of a log whose beginning was pruned: the chain goes on from `start`. With
/// `open_end` (the log goes on past what is read: a live set's rotated files), records at the
/// end that no checkpoint covers yet are counted in [`Summary::unverified_tail`] rather than
/// refused.
///
/// # Errors
/// The first problem, named, as a message; a `start` whose attestation does not verify.
pub fn verify_chain_from<R: BufRead>(
    mut reader: R,
    trust: &Trust,
    chain: Chain<'_>,
    start: Option<&ChainStart>,
    open_end: bool,
) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut key: Option<p384::ecdsa::VerifyingKey> = None;
    if let Some(start) = start {
        let hash: [u8; 32] = hex::decode(&start.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or("the pruned start's hash is not 32 bytes of hex")?;
        s.base = (start.seq, hash);
        s.last_seq = start.seq;
        s.last_hash = hash;
        if let Some(line) = &start.attestation {
            let decode = |text: &str| B64.decode(text).map_err(|_| "not base64".to_owned());
            let public_key = decode(&line.public_key)?;
            let (k, pcr0) = check_attestation(trust, &public_key, &decode(&line.document)?)
                .map_err(|why| format!("the pruned start's {why}"))?;
            key = Some(k);
            s.last_key = Some(public_key);
            s.pcr0.push(pcr0);
        }
    }
    // The seq the last signed checkpoint covers, and the line of the first record after it.
    let mut covered = 0u64;
    let mut first_uncovered: Option<u64> = None;
    let mut last_attestation_line: Option<u64> = None;
    let mut previous_was_attestation = false;
    let mut buf = Vec::new();
    let mut complete = true;
    loop {
        let fits = match read_line(&mut reader, &mut buf, &mut complete) {
            Ok(Some(fits)) => fits,
            Ok(None) => break,
            Err(e) => return Err(format!("line {}: cannot be read: {e}", s.lines + 1)),
        };
        s.lines += 1;
        let n = s.lines;
        if !fits {
            return Err(format!("line {n}: longer than {MAX_LINE} bytes"));
        }
        if !complete {
            return Err(format!(
                "line {n}: the last line is torn (no newline at its end)"
            ));
        }
        let value = parse_value(&buf).map_err(|why| format!("line {n}: malformed line: {why}"))?;
        if !chain.holds(&value) {
            continue;
        }
        let line =
            parse_fields(&value).map_err(|why| format!("line {n}: malformed line: {why}"))?;
        let was_attestation = std::mem::replace(
            &mut previous_was_attestation,
            matches!(line, Line::Attestation { .. }),
        );
        match line {
            Line::Record {
                seq,
                prev,
                hash,
                record,
            } => {
                // Its own contents first: a record whose fields were changed (seq included)
                // no longer hashes to its `hash`.
                if record_hash(&prev, seq, &record) != hash {
                    return Err(format!(
                        "line {n}: record seq {seq} altered (hash does not match its contents)"
                    ));
                }
                let expected = s.last_seq + 1;
                if seq > expected {
                    return Err(match find_later(&mut reader, n, expected, chain) {
                        Some(later) => format!(
                            "line {n}: record seq {seq} inserted or reordered (expected seq \
                             {expected}, which comes later, at line {later})"
                        ),
                        None => format!(
                            "line {n}: record(s) removed (expected seq {expected}, found {seq})"
                        ),
                    });
                }
                if seq < expected {
                    let earlier = s.hash_at(seq);
                    let earlier_line = s.line_at(seq);
                    if earlier == Some(hash) {
                        return Err(format!(
                            "line {n}: record seq {seq} inserted or reordered (expected seq \
                             {expected}; it is a copy of line {earlier_line})"
                        ));
                    }
                    if was_attestation && seq >= 1 && s.hash_at(seq - 1) == Some(prev) {
                        return Err(format!(
                            "line {n}: the enclave restarted (attestation at line {}) and \
                             continued the chain from seq {}, but the log already holds records \
                             up to seq {}: records {seq}..{} (from line {earlier_line}) were never \
                             acknowledged (a crash between the log write and the commit) or the \
                             sealed store was rolled back",
                            n - 1,
                            seq - 1,
                            s.last_seq,
                            s.last_seq
                        ));
                    }
                    return Err(format!(
                        "line {n}: record seq {seq} inserted or reordered (expected seq \
                         {expected}; seq {seq} is already at line {earlier_line})"
                    ));
                }
                if prev != s.last_hash {
                    return Err(if seq == 1 {
                        format!("line {n}: record seq 1 does not start the chain (prev is not zeros): the log's beginning was cut")
                    } else {
                        format!(
                            "line {n}: record seq {seq} does not chain onto the previous record: \
                             record seq {} (line {}) was altered or replaced (its hash recomputed)",
                            seq - 1,
                            s.line_of.last().copied().unwrap_or(0)
                        )
                    });
                }
                s.records += 1;
                s.last_seq = seq;
                s.last_hash = hash;
                s.hashes.push(hash);
                s.line_of.push(n);
                if first_uncovered.is_none() {
                    first_uncovered = Some(n);
                }
            }
            Line::Checkpoint {
                seq,
                hash,
                signature,
            } => {
                if seq > s.last_seq {
                    return Err(format!(
                        "line {n}: record(s) removed (checkpoint covers seq {seq}, but the last \
                         record before it is seq {})",
                        s.last_seq
                    ));
                }
                if seq == s.last_seq && seq > 0 && hash != s.last_hash {
                    return Err(format!(
                        "line {n}: checkpoint seq {seq} does not match record seq {seq} (line {}): \
                         the record was altered or replaced (its hash recomputed)",
                        s.line_of.last().copied().unwrap_or(0)
                    ));
                }
                if seq != s.last_seq || hash != s.last_hash {
                    return Err(format!(
                        "line {n}: checkpoint (seq {seq}, hash {}) does not cover the head (the \
                         last record before it is seq {}, hash {})",
                        hex::encode(hash),
                        s.last_seq,
                        hex::encode(s.last_hash)
                    ));
                }
                let Some(k) = &key else {
                    return Err(format!(
                        "line {n}: checkpoint seq {seq} not attested (no attestation line before \
                         it binds a checkpoint key)"
                    ));
                };
                if !signature_valid(k, &checkpoint_message(seq, &hash), &signature) {
                    return Err(format!(
                        "line {n}: checkpoint seq {seq} signature invalid (not made by the key \
                         attested at line {})",
                        last_attestation_line.unwrap_or(0)
                    ));
                }
                s.checkpoints += 1;
                covered = seq;
                first_uncovered = None;
            }
            Line::Attestation {
                public_key,
                document,
            } => {
                let (k, pcr0) = check_attestation(trust, &public_key, &document)
                    .map_err(|why| format!("line {n}: {why}"))?;
                key = Some(k);
                s.attestations += 1;
                s.last_key = Some(public_key);
                s.pcr0.push(pcr0);
                last_attestation_line = Some(n);
            }
        }
    }
    if let (Some(_), Chain::Member(Some(_)), _) | (Some(_), _, true) =
        (first_uncovered, chain, open_end)
    {
        s.unverified_tail = s.last_seq - covered;
    } else if let Some(line) = first_uncovered {
        return Err(format!(
            "line {line}: records seq {}..{} are not covered by a signed checkpoint (the log ends \
             at line {} without one; the last checkpoint covers seq {covered})",
            covered + 1,
            s.last_seq,
            s.lines
        ));
    }
    Ok(s)
}

/// Verifies every chain of a log `open` reads (it is read once to find the chains, then once
/// per chain): a log one enclave wrote alone is one chain; a shared store's log has one chain
/// per member, and the lines from before it was shared (member `None`).
///
/// # Errors
/// The first problem, naming its member.
pub fn verify_chains<'a>(
    open: impl Fn() -> Result<Box<dyn BufRead + 'a>, String>,
    trust: &Trust,
) -> Result<Vec<(Option<String>, Summary)>, String> {
    verify_chains_from(open, trust, &std::collections::BTreeMap::new(), false)
}

/// [`verify_chains`] of a log whose beginning was pruned: each chain named in `starts` goes
/// on from there (`None`: the lines without a member, or a lone enclave's); `open_end` as for
/// [`verify_chain_from`].
///
/// # Errors
/// The first problem, naming its member.
pub fn verify_chains_from<'a>(
    open: impl Fn() -> Result<Box<dyn BufRead + 'a>, String>,
    trust: &Trust,
    starts: &std::collections::BTreeMap<Option<String>, ChainStart>,
    open_end: bool,
) -> Result<Vec<(Option<String>, Summary)>, String> {
    let mut members = std::collections::BTreeSet::new();
    let mut unmembered = false;
    {
        let mut reader = open()?;
        let mut buf = Vec::new();
        let mut complete = true;
        while let Ok(Some(fits)) = read_line(&mut reader, &mut buf, &mut complete) {
            // Unreadable lines are named by the chains' verification below.
            match parse_value(&buf).ok().filter(|_| fits) {
                Some(value) => match member_of(&value) {
                    Some(member) => {
                        members.insert(member.to_owned());
                    }
                    None => unmembered = true,
                },
                None => unmembered = true,
            }
        }
    }
    if members.is_empty() {
        let start = starts.get(&None);
        return Ok(vec![(
            None,
            verify_chain_from(open()?, trust, Chain::All, start, open_end)?,
        )]);
    }
    let mut chains = Vec::with_capacity(members.len() + 1);
    if unmembered {
        let summary = verify_chain_from(
            open()?,
            trust,
            Chain::Member(None),
            starts.get(&None),
            open_end,
        )
        .map_err(|why| format!("the lines without a member: {why}"))?;
        chains.push((None, summary));
    }
    for member in members {
        let start = starts.get(&Some(member.clone()));
        let summary = verify_chain_from(
            open()?,
            trust,
            Chain::Member(Some(&member)),
            start,
            open_end,
        )
        .map_err(|why| format!("member {}: {why}", clean(&member)))?;
        chains.push((Some(member), summary));
    }
    Ok(chains)
}

/// The enclave's durable head, as `Ekms.AuditHead` answers it.
#[derive(Debug, Clone)]
pub struct SignedHead {
    /// Seq of the last durable record.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// ECDSA P-384 / SHA-384 (DER) over the checkpoint message of (seq, hash).
    pub signature: Vec<u8>,
    /// The current boot's checkpoint key (SPKI DER).
    pub public_key: Vec<u8>,
    /// The attestation document binding `public_key` (verified by [`check_head`]).
    pub attestation_document: Vec<u8>,
    /// The member whose chain the head is of, when several enclaves share the store.
    pub member: Option<String>,
}

impl SignedHead {
    /// Parses an `Ekms.AuditHead` answer.
    ///
    /// # Errors
    /// When a field is missing or malformed.
    pub fn from_json(value: &Value) -> anyhow::Result<Self> {
        let hash = hex::decode(value["Hash"].as_str().unwrap_or_default())
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| anyhow!("Ekms.AuditHead answered no 32-byte hex Hash"))?;
        let b64 = |field: &str| {
            value[field]
                .as_str()
                .and_then(|t| B64.decode(t).ok())
                .ok_or_else(|| anyhow!("Ekms.AuditHead answered no base64 {field}"))
        };
        Ok(SignedHead {
            seq: value["Seq"]
                .as_u64()
                .ok_or_else(|| anyhow!("Ekms.AuditHead answered no Seq"))?,
            hash,
            signature: b64("Signature")?,
            public_key: b64("PublicKey")?,
            attestation_document: b64("AttestationDocument")?,
            member: value["Member"].as_str().map(str::to_owned),
        })
    }
}

/// Checks that the head answer is genuine: its key is bound by an attestation document that
/// verifies (root and PCRs as for the log), and its signature covers this call's nonce.
///
/// # Errors
/// What is wrong.
pub fn check_head(head: &SignedHead, nonce: &[u8], trust: &Trust) -> Result<(), String> {
    let at = attestation::unverified_timestamp(&head.attestation_document)
        .map_err(|e| format!("the enclave's head attestation is malformed: {e}"))?;
    let verified = trust
        .verify(&head.attestation_document, at)
        .map_err(|e| format!("the enclave's head attestation does not verify: {e}"))?;
    // Public values.
    if verified.public_key() != Some(&head.public_key[..])
        || verified.user_data() != Some(ATTESTATION_USER_DATA)
    {
        return Err("the enclave's head attestation binds another key".to_owned());
    }
    let key = verifying_key(&head.public_key)
        .ok_or("the enclave's checkpoint key is not a P-384 public key")?;
    if !signature_valid(
        &key,
        &head_message(nonce, head.seq, &head.hash),
        &head.signature,
    ) {
        return Err(format!(
            "the enclave's durable head (seq {}) signature invalid for this call's nonce",
            head.seq
        ));
    }
    Ok(())
}

/// Checks that a verified log reaches the enclave's durable head (already checked genuine by
/// [`check_head`]).
///
/// # Errors
/// When the log does not reach it.
pub fn check_reaches(summary: &Summary, head: &SignedHead) -> Result<(), String> {
    if summary.last_seq < head.seq {
        return Err(format!(
            "the file stops at seq {} but the enclave's durable head is {}: its tail was cut",
            summary.last_seq, head.seq
        ));
    }
    if summary.hash_at(head.seq) != Some(head.hash) {
        return Err(format!(
            "the file's record seq {} is not the enclave's (the enclave's durable head has hash \
             {}): the file was replaced or forked",
            head.seq,
            hex::encode(head.hash)
        ));
    }
    Ok(())
}

/// Verifies as `ekms audit verify` does; the JSON report it prints.
///
/// # Errors
/// The first problem, named.
pub fn verify_command(args: &VerifyArgs) -> anyhow::Result<Value> {
    let trust = Trust::from_args(args)?;
    // The head first: every line up to a durable head is in the file before the enclave
    // hears the commit acknowledged, so a file read afterwards must reach it.
    let head = match &args.endpoint {
        Some(endpoint) => {
            let target = Target {
                endpoint: endpoint.clone(),
                ca: args.ca.clone(),
            };
            let mut nonce = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                .map_err(|_| anyhow!("the OS random source failed"))?;
            let body = json!({ "Nonce": B64.encode(nonce) });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let https_unpinned = endpoint.starts_with("https://") && args.ca.is_none();
            let answer = match (args.expect_pcrs.last(), https_unpinned) {
                // Over https with pinned PCRs and no CA: the certificate is proven by
                // attestation on the connection the head is asked on.
                (Some(pcrs), true) => {
                    let expect = crate::custody::Expectation {
                        expect_pcrs: pcrs.clone(),
                        root: args.root.clone(),
                        allow_debug: args.allow_debug,
                    };
                    runtime.block_on(async {
                        crate::trust::attested_connection(endpoint, &expect)
                            .await
                            .context("proving the endpoint's certificate by attestation")?
                            .call("AuditHead", &body)
                            .await
                    })?
                }
                _ => runtime.block_on(call(&target, "AuditHead", body))?,
            };
            let head = SignedHead::from_json(&answer)?;
            check_head(&head, &nonce, &trust).map_err(|why| anyhow!("{endpoint}: {why}"))?;
            Some(head)
        }
        None => None,
    };
    let etcd_lines = match args.file.to_str().filter(|f| f.starts_with("etcd://")) {
        Some(url) => {
            let url = url.parse().map_err(|why: String| anyhow!(why))?;
            Some(etcd_audit(&url)?)
        }
        None => None,
    };
    let set = match etcd_lines {
        Some(_) => None,
        None => {
            Some(LogSet::at(&args.file).map_err(|why| anyhow!("{}: {why}", args.file.display()))?)
        }
    };
    // A directory's files: first what their names and record numbers say about a missing one.
    let index = match &set {
        Some(set) if set.is_dir => {
            Some(SetIndex::build(set).map_err(|why| anyhow!("{}: {why}", args.file.display()))?)
        }
        _ => None,
    };
    let open = || -> Result<Box<dyn BufRead + '_>, String> {
        match (&etcd_lines, &set) {
            (Some(lines), _) => Ok(Box::new(std::io::Cursor::new(lines.as_slice()))),
            (None, Some(set)) => set.reader().map(|r| r as Box<dyn BufRead>),
            (None, None) => Err("nothing to read".to_owned()),
        }
    };
    let marker = set.as_ref().and_then(|s| s.marker.as_ref());
    if let (Some(marker), false) = (marker, args.allow_pruned) {
        bail!(
            "{}: its beginning was pruned ({} says records up to {} were removed by `ekms audit \
             prune`): pass --allow-pruned to verify from there",
            args.file.display(),
            prune::MARKER,
            marker
                .chains
                .iter()
                .map(|c| format!("seq {}", c.start.seq))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let starts = marker.map(PruneMarker::starts).unwrap_or_default();
    let chains = verify_chains_from(open, &trust, &starts, false).map_err(|why| {
        let why = match &index {
            Some(index) => index.name_lines(&why),
            None => why,
        };
        anyhow!("{}: {why}", args.file.display())
    })?;
    if let Some(head) = &head {
        let chain = chains
            .iter()
            .find(|(member, _)| *member == head.member)
            .map(|(_, summary)| summary)
            .ok_or_else(|| {
                anyhow!(
                    "{}: the enclave's durable head is member {}'s, which has no line here",
                    args.file.display(),
                    head.member.as_deref().unwrap_or("(none)")
                )
            })?;
        check_reaches(chain, head).map_err(|why| anyhow!("{}: {why}", args.file.display()))?;
    }
    let members: Vec<Value> = chains
        .iter()
        .filter_map(|(member, c)| {
            member.as_ref().map(|m| {
                json!({
                    "member": m,
                    "records": c.records,
                    "checkpoints": c.checkpoints,
                    "lastSeq": c.last_seq,
                    "lastHash": hex::encode(c.last_hash),
                    "unverifiedTail": c.unverified_tail,
                })
            })
        })
        .collect();
    let mut summary = chains
        .iter()
        .find(|(member, _)| member.is_none())
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    for (_, c) in chains.iter().filter(|(member, _)| member.is_some()) {
        summary.records += c.records;
        summary.checkpoints += c.checkpoints;
        summary.attestations += c.attestations;
        summary.pcr0.extend(c.pcr0.iter().cloned());
    }
    let attestation_note = if trust.pcrs_pinned {
        "verified: chain to the pinned root, pinned PCRs".to_owned()
    } else {
        format!(
            "chain to the pinned root verified, but PCRs NOT checked (no --expect-pcrs): any \
             enclave image was accepted; PCR0 of each boot: {}",
            if summary.pcr0.is_empty() {
                "none".to_owned()
            } else {
                summary.pcr0.join(", ")
            }
        )
    };
    let mut report = json!({
        "ok": true,
        "file": args.file.display().to_string(),
        "pruned": marker.map(|m| json!({
            "firstKept": ekms_parent::store::audit_files::rotated_name(m.first_kept, true),
            "prunedAt": m.pruned_at,
            "chains": m.chains,
        })),
        "files": set.as_ref().filter(|s| s.is_dir).map(|s| s.files.iter().map(|f| f.name()).collect::<Vec<_>>()),
        "records": summary.records,
        "checkpoints": summary.checkpoints,
        "attestations": summary.attestations,
        "lastSeq": summary.last_seq,
        "lastHash": hex::encode(summary.last_hash),
        "attestation": attestation_note,
        "pcrsPinned": trust.pcrs_pinned,
        "root": hex::encode(trust.anchor.fingerprint_sha256()),
        "enclaveHead": head.as_ref().map(|h| json!({
            "seq": h.seq,
            "hash": hex::encode(h.hash),
            "reached": true,
        })),
    });
    if !members.is_empty() {
        // A shared store's log: each member's chain.
        report["members"] = Value::Array(members);
    }
    Ok(report)
}

/// Replaces control characters (terminal escapes, newlines) with `?`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The one-line summary of a `record` line (`None` for other lines).
pub fn summarize(line: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(line).ok()?;
    if value["type"].as_str() != Some("record") {
        return None;
    }
    let r = &value["record"];
    let text = |v: &Value| v.as_str().map(clean).unwrap_or_else(|| "-".to_owned());
    let user = match r["userIdentity"]["arn"].as_str() {
        Some(arn) => clean(arn),
        None => match r["userIdentity"]["accessKeyId"].as_str() {
            Some(id) => format!("unauthenticated:{}", clean(id)),
            None => "unauthenticated".to_owned(),
        },
    };
    let resources: Vec<String> = r["resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["ARN"].as_str())
                .map(clean)
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "{} {} {} {} {} {}",
        value["seq"].as_u64().unwrap_or(0),
        text(&r["eventTime"]),
        text(&r["eventName"]),
        user,
        text(&r["errorCode"]),
        if resources.is_empty() {
            "-".to_owned()
        } else {
            resources.join(",")
        }
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_records_only_and_cleans_control_characters() {
        let line = br#"{"type":"record","seq":3,"prev":"","hash":"","record":{"eventTime":"2025-01-01T00:00:00Z","eventName":"Encrypt","userIdentity":{"arn":"arn:aws:iam::1:user/a\u001b[31m"},"errorCode":"AccessDeniedException","resources":[{"ARN":"arn:k"}]}}"#;
        assert_eq!(
            summarize(line).unwrap(),
            "3 2025-01-01T00:00:00Z Encrypt arn:aws:iam::1:user/a?[31m AccessDeniedException arn:k"
        );
        assert!(summarize(br#"{"type":"checkpoint"}"#).is_none());
        let unknown = br#"{"type":"record","seq":4,"record":{"eventName":"Decrypt","userIdentity":{"type":"Unknown","accessKeyId":"AKIA1"}}}"#;
        assert_eq!(
            summarize(unknown).unwrap(),
            "4 - Decrypt unauthenticated:AKIA1 - -"
        );
    }

    fn trust_any() -> Trust {
        Trust {
            anchor: TrustAnchor::aws_nitro_root(),
            policies: vec![(None, Policy::accept_any_pcrs())],
            pcrs_pinned: false,
        }
    }

    fn record_line(prev: &[u8; 32], seq: u64, x: u64) -> (String, [u8; 32]) {
        let record = json!({"x": x});
        let hash = record_hash(prev, seq, &record);
        let line = json!({"type":"record","seq":seq,"prev":hex::encode(prev),"hash":hex::encode(hash),"record":record});
        (line.to_string(), hash)
    }

    fn member_line(member: &str, prev: &[u8; 32], seq: u64) -> (String, [u8; 32]) {
        // Records of different members differ (each is a request of its own).
        let x = seq + if member == "bb" { 100 } else { 0 };
        let (line, hash) = record_line(prev, seq, x);
        let mut value: Value = serde_json::from_str(&line).unwrap();
        value["member"] = member.into();
        (value.to_string(), hash)
    }

    #[test]
    fn splits_a_shared_stores_log_into_members_chains() {
        let (a1, ha1) = member_line("aa", &[0; 32], 1);
        let (a2, _) = member_line("aa", &ha1, 2);
        let (b1, hb1) = member_line("bb", &[0; 32], 1);
        let (b2, hb2) = member_line("bb", &hb1, 2);
        let (b3, _) = member_line("bb", &hb2, 3);
        let run = |lines: &[&str]| {
            let text = lines.join("\n") + "\n";
            let open = || -> Result<Box<dyn BufRead + '_>, String> {
                Ok(Box::new(std::io::Cursor::new(text.clone().into_bytes())))
            };
            verify_chains(open, &trust_any())
        };
        // Interleaved, each member's chain whole: two chains, their uncovered ends reported
        // as not verified (the members stopped before a checkpoint) rather than refused.
        let chains = run(&[&b1, &a1, &b2, &a2, &b3]).unwrap();
        let found: Vec<(Option<&str>, u64, u64)> = chains
            .iter()
            .map(|(m, s)| (m.as_deref(), s.records, s.unverified_tail))
            .collect();
        assert_eq!(found, [(Some("aa"), 2, 2), (Some("bb"), 3, 3)]);
        // A record cut from one member's chain is named, with that member and the log's line.
        let e = run(&[&b1, &a1, &a2, &b3]).unwrap_err();
        assert!(
            e.contains("member bb: line 4: record(s) removed (expected seq 2, found 3)"),
            "{e}"
        );
        // A record moved into another member's chain does not chain there.
        let moved = b2.replace("\"bb\"", "\"aa\"");
        let e = run(&[&b1, &a1, &moved, &a2, &b3]).unwrap_err();
        assert!(e.starts_with("member aa: line 3:"), "{e}");
        // Lines without a member (from before the store was shared) are a chain that must end
        // covered, as a lone enclave's log must.
        let (l1, _) = record_line(&[0; 32], 1, 1);
        let e = run(&[&l1, &a1]).unwrap_err();
        assert!(
            e.contains("the lines without a member: line 1: records seq 1..1 are not covered"),
            "{e}"
        );
    }

    #[test]
    fn names_chain_problems_without_checkpoints() {
        let (l1, h1) = record_line(&[0; 32], 1, 1);
        let (l2, h2) = record_line(&h1, 2, 2);
        let (l3, _) = record_line(&h2, 3, 3);
        let run = |lines: &[&str]| {
            let text = lines.join("\n") + "\n";
            verify_log(text.as_bytes(), &trust_any()).unwrap_err()
        };
        assert!(run(&[&l1, &l3]).contains("line 2: record(s) removed (expected seq 2, found 3)"));
        assert!(run(&[&l1, &l3, &l2]).contains("line 2: record seq 3 inserted or reordered"));
        assert!(run(&[&l1, &l2, &l1]).contains("line 3: record seq 1 inserted or reordered"));
        let altered = l2.replace(r#""x":2"#, r#""x":9"#);
        assert!(run(&[&l1, &altered]).contains("line 2: record seq 2 altered"));
        assert!(run(&[&l1, &l2]).contains("not covered by a signed checkpoint"));
        let forged = json!({"type":"checkpoint","seq":2,"hash":hex::encode(h2),"signature":"AA=="});
        assert!(
            run(&[&l1, &l2, &forged.to_string()]).contains("line 3: checkpoint seq 2 not attested")
        );
        assert!(run(&[&l2]).contains("line 1: record(s) removed (expected seq 1, found 2)"));
        // Altered with its hash recomputed: the next record does not chain onto it.
        let (forged2, _) = record_line(&h1, 2, 7);
        assert!(run(&[&l1, &forged2, &l3]).contains(
            "line 3: record seq 3 does not chain onto the previous record: record seq 2 (line 2) \
             was altered or replaced"
        ));
    }

    #[test]
    fn refuses_overlong_and_torn_lines() {
        let long = vec![b'a'; MAX_LINE + 10];
        let e = verify_log(&long[..], &trust_any()).unwrap_err();
        assert!(e.contains("line 1: longer than"), "{e}");
        let (l1, _) = record_line(&[0; 32], 1, 1);
        let e = verify_log(l1.as_bytes(), &trust_any()).unwrap_err();
        assert!(e.contains("torn"), "{e}");
    }
}
