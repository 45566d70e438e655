//! A rotated audit log read as one: the files of a data directory in log order
//! (`ekms_parent::store::audit_files`, `.gz` read transparently), with what tells where a file
//! is missing. The hash chain is what proves a gap; this module names the files around it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use ekms_parent::store::audit_files::{self, AuditFile};
use serde_json::Value;

use super::prune::PruneMarker;
use super::{member_of, parse_value, read_line};

/// The files of one log, in order.
#[derive(Debug, Clone)]
pub struct LogSet {
    /// The files, in log order.
    pub files: Vec<AuditFile>,
    /// Whether the log was named as a directory (messages then name files).
    pub is_dir: bool,
    /// The directory's `audit-pruned.json`: its beginning was removed by `ekms audit prune`.
    pub marker: Option<PruneMarker>,
}

impl LogSet {
    /// The files of `path`: a data directory's whole set (rotated files, then `audit.jsonl`),
    /// or one file (`.gz` read decompressed).
    ///
    /// # Errors
    /// When the directory cannot be read or holds no audit file.
    pub fn at(path: &Path) -> Result<LogSet, String> {
        if path.is_dir() {
            let mut files = audit_files::list(path).map_err(|e| format!("cannot be read: {e}"))?;
            let marker = PruneMarker::read(path)?;
            if let Some(marker) = &marker {
                // Files before the first kept: left by an interrupted prune, already accounted
                // for by the marker.
                files.retain(|f| f.start.is_none_or(|start| start >= marker.first_kept));
            }
            if files.is_empty() {
                return Err("holds no audit file (audit.jsonl, audit-*.jsonl.gz)".to_owned());
            }
            return Ok(LogSet {
                files,
                is_dir: true,
                marker,
            });
        }
        let compressed = path.extension().is_some_and(|e| e == "gz");
        Ok(LogSet {
            files: vec![AuditFile {
                path: path.to_owned(),
                start: None,
                compressed,
            }],
            is_dir: false,
            marker: None,
        })
    }

    /// A reader of every file's lines in order, as one log.
    ///
    /// # Errors
    /// When a file cannot be opened.
    pub fn reader(&self) -> Result<Box<dyn BufRead + Send>, String> {
        let mut readers: Vec<Box<dyn Read + Send>> = Vec::with_capacity(self.files.len());
        for file in &self.files {
            readers.push(
                audit_files::open(file)
                    .map_err(|e| format!("{}: cannot be opened: {e}", file.name()))?,
            );
        }
        let chained = readers.into_iter().fold(
            Box::new(std::io::empty()) as Box<dyn Read + Send>,
            |all, r| Box::new(all.chain(r)),
        );
        Ok(Box::new(BufReader::with_capacity(256 * 1024, chained)))
    }
}

/// What one file of a set holds, from one read through it.
#[derive(Debug, Clone, Default)]
struct FileIndex {
    /// Lines.
    lines: u64,
    /// Bytes (decompressed).
    len: u64,
    /// Whether it ends with a newline (or is empty).
    whole: bool,
    /// Per chain (member), the first and last record seq in the file.
    chains: BTreeMap<Option<String>, (u64, u64)>,
}

/// Where each file's lines are in the set, to name a line by file, and the checks that find a
/// missing file.
#[derive(Debug, Clone)]
pub struct SetIndex {
    names: Vec<String>,
    /// Global line number (1-based) of each file's first line.
    first_line: Vec<u64>,
}

impl SetIndex {
    /// Reads every file once: line counts for naming lines, and the checks between files. A
    /// file missing in the middle (its neighbours' records do not follow on, or the byte
    /// offsets in their names leave a hole) is an error naming it and the records it held.
    ///
    /// # Errors
    /// A missing file or records missing between files, named; a file that cannot be read.
    pub fn build(set: &LogSet) -> Result<SetIndex, String> {
        let mut indexes = Vec::with_capacity(set.files.len());
        for file in &set.files {
            indexes.push(index_file(file)?);
        }
        // Each chain's last record so far, and the file it is in.
        let mut last: BTreeMap<Option<String>, (u64, usize)> = BTreeMap::new();
        for (i, (file, index)) in set.files.iter().zip(&indexes).enumerate() {
            if i + 1 < set.files.len() && !index.whole {
                return Err(format!(
                    "{}: does not end with a newline, yet files follow it (torn or cut)",
                    file.name()
                ));
            }
            // Bytes: a rotated file's name says where it starts, so a hole before it is a
            // missing file's bytes (the current file's start is not in its name).
            let hole = match (i.checked_sub(1), file.start) {
                (Some(p), Some(start)) => match set.files[p].start {
                    Some(prev_start) if prev_start + indexes[p].len < start => {
                        Some((prev_start + indexes[p].len, start))
                    }
                    Some(prev_start) if prev_start + indexes[p].len > start => {
                        return Err(format!(
                            "{} holds bytes {}..{} of the log, but {} starts at {start}: the files \
                             overlap (one was altered or does not belong to this log)",
                            set.files[p].name(),
                            prev_start,
                            prev_start + indexes[p].len,
                            file.name()
                        ));
                    }
                    _ => None,
                },
                _ => None,
            };
            for (chain, &(first, last_seq)) in &index.chains {
                let member = chain
                    .as_deref()
                    .map(|m| format!(" of member {}", super::clean(m)))
                    .unwrap_or_default();
                match last.get(chain) {
                    Some(&(prev, p)) if first > prev + 1 && p != i => {
                        return Err(missing(
                            set,
                            p,
                            i,
                            prev + 1,
                            first - 1,
                            &member,
                            hole,
                            indexes[p].len,
                        ));
                    }
                    None if first > 1 && i > 0 && chain.is_none() => {
                        return Err(format!(
                            "records seq 1..{}{member} missing before {} (the files before it do \
                             not hold them)",
                            first - 1,
                            file.name()
                        ));
                    }
                    _ => {}
                }
                last.insert(chain.clone(), (last_seq, i));
            }
            if let Some((from, to)) = hole {
                return Err(format!(
                    "bytes {from}..{to} of the log missing between {} and {}: the file {} was \
                     removed",
                    set.files[i - 1].name(),
                    file.name(),
                    audit_files::rotated_name(from, true)
                ));
            }
        }
        let mut first_line = Vec::with_capacity(indexes.len());
        let mut next = 1;
        for index in &indexes {
            first_line.push(next);
            next += index.lines;
        }
        Ok(SetIndex {
            names: set.files.iter().map(AuditFile::name).collect(),
            first_line,
        })
    }

    /// `line N` of the set as `FILE line K`.
    pub fn name_line(&self, line: u64) -> String {
        let i = self
            .first_line
            .partition_point(|&first| first <= line)
            .saturating_sub(1);
        match (self.names.get(i), self.first_line.get(i)) {
            (Some(name), Some(first)) => format!("{name} line {}", line - first + 1),
            _ => format!("line {line}"),
        }
    }

    /// `message` with each `line N` in it named by file.
    pub fn name_lines(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len() + 64);
        let mut rest = message;
        while let Some(at) = rest.find("line ") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 5..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits].parse::<u64>() {
                Ok(n) if digits > 0 => out.push_str(&self.name_line(n)),
                _ => out.push_str(&rest[at..at + 5]),
            }
            rest = if digits > 0 { &after[digits..] } else { after };
        }
        out.push_str(rest);
        out
    }
}

/// The error for records `from..=to` missing between files `p` and `i`.
#[allow(clippy::too_many_arguments)]
fn missing(
    set: &LogSet,
    p: usize,
    i: usize,
    from: u64,
    to: u64,
    member: &str,
    hole: Option<(u64, u64)>,
    prev_len: u64,
) -> String {
    let (x, y) = (set.files[p].name(), set.files[i].name());
    let which = match (hole, set.files[p].start) {
        (Some((start, end)), _) => format!(
            ": the file {} (bytes {start}..{end} of the log) was removed",
            audit_files::rotated_name(start, true)
        ),
        (None, Some(start)) if i == p + 1 && set.files[i].start.is_none() => format!(
            ": the file {} was removed",
            audit_files::rotated_name(start + prev_len, true)
        ),
        _ => ": a file between them was removed".to_owned(),
    };
    format!("records seq {from}..{to}{member} missing between {x} and {y}{which}")
}

fn index_file(file: &AuditFile) -> Result<FileIndex, String> {
    let reader =
        audit_files::open(file).map_err(|e| format!("{}: cannot be opened: {e}", file.name()))?;
    let mut reader = BufReader::new(Counting {
        inner: reader,
        n: 0,
    });
    let mut index = FileIndex {
        whole: true,
        ..FileIndex::default()
    };
    let mut buf = Vec::new();
    let mut complete = true;
    loop {
        match read_line(&mut reader, &mut buf, &mut complete) {
            Ok(Some(fits)) => {
                index.lines += 1;
                index.whole = complete;
                let value = parse_value(&buf).ok().filter(|_| fits);
                if let Some(value) = value.filter(|v| v["type"] == "record") {
                    if let Some(seq) = value["seq"].as_u64() {
                        let chain = member_of(&value).map(str::to_owned);
                        index
                            .chains
                            .entry(chain)
                            .and_modify(|(_, last)| *last = seq)
                            .or_insert((seq, seq));
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return Err(format!("{}: cannot be read: {e}", file.name())),
        }
    }
    index.len = reader.get_ref().n;
    Ok(index)
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// The record seq of a line, if it is a record.
pub fn record_seq(value: &Value) -> Option<u64> {
    (value["type"] == "record")
        .then(|| value["seq"].as_u64())
        .flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(seq: u64) -> String {
        format!("{{\"type\":\"record\",\"seq\":{seq}}}\n")
    }

    fn write_set(dir: &Path, files: &[(Option<u64>, &[u64])]) {
        for (start, seqs) in files {
            let text: String = seqs.iter().map(|&s| record(s)).collect();
            let name = match start {
                Some(start) => audit_files::rotated_name(*start, false),
                None => audit_files::CURRENT.to_owned(),
            };
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn names_the_missing_file_between_two_others() {
        let len = record(1).len() as u64; // every record here is as long
        let dir = tempfile::tempdir().unwrap();
        write_set(
            dir.path(),
            &[(Some(0), &[1, 2]), (Some(4 * len), &[5, 6]), (None, &[7])],
        );
        let set = LogSet::at(dir.path()).unwrap();
        let e = SetIndex::build(&set).unwrap_err();
        assert_eq!(
            e,
            format!(
                "records seq 3..4 missing between audit-00000000000000000000.jsonl and \
                 audit-{:020}.jsonl: the file audit-{:020}.jsonl.gz (bytes {}..{} of the log) \
                 was removed",
                4 * len,
                2 * len,
                2 * len,
                4 * len
            )
        );

        // The whole set: lines named by file.
        let dir = tempfile::tempdir().unwrap();
        write_set(
            dir.path(),
            &[(Some(0), &[1, 2]), (Some(2 * len), &[3]), (None, &[4])],
        );
        let set = LogSet::at(dir.path()).unwrap();
        let index = SetIndex::build(&set).unwrap();
        assert_eq!(
            index.name_lines("line 3: x (line 4), line x"),
            format!(
                "audit-{:020}.jsonl line 1: x (audit.jsonl line 1), line x",
                2 * len
            )
        );
        let mut text = String::new();
        set.reader().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text.lines().count(), 4);

        // The last rotated file removed: named from the one before it.
        std::fs::remove_file(dir.path().join(audit_files::rotated_name(2 * len, false))).unwrap();
        let set = LogSet::at(dir.path()).unwrap();
        let e = SetIndex::build(&set).unwrap_err();
        assert!(
            e.ends_with(&format!(
                "missing between audit-00000000000000000000.jsonl and audit.jsonl: the file \
                 audit-{:020}.jsonl.gz was removed",
                2 * len
            )),
            "{e}"
        );
    }
}
