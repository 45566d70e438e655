//! `ekms audit tail`: the log's records as summaries, or its lines as they are (`--json`, for
//! a log shipper), from a seq on (`--from`), and with `--follow` as they are appended, across
//! the parent's rotations of `audit.jsonl`.
//!
//! Following a rotation: the parent appends to `audit.jsonl`, and between two commits renames
//! it to `audit-<offset>.jsonl` (then compresses it) and starts a new one. This keeps the file
//! it opened (the renamed file is the same file), and once a rotated file named by that file's
//! start exists, reads it to its end (nothing is appended after the rename) and opens the new
//! `audit.jsonl`.

use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ekms_parent::store::audit_files::{self, AuditFile};

use super::{summarize, TailArgs, MAX_LINE};

/// How often `--follow` looks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Turns bytes into output lines: skips to `--from`, prints summaries or lines.
struct Printer<'a> {
    out: &'a mut dyn Write,
    from: Option<u64>,
    json: bool,
    /// The part of a line read so far.
    pending: Vec<u8>,
    /// What the messages name.
    name: String,
}

impl Printer<'_> {
    fn feed(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&bytes[..i]);
            self.check_len()?;
            let line = std::mem::take(&mut self.pending);
            self.line(&line)?;
            bytes = &bytes[i + 1..];
        }
        self.pending.extend_from_slice(bytes);
        self.check_len()
    }

    fn check_len(&self) -> anyhow::Result<()> {
        if self.pending.len() > MAX_LINE {
            bail!("{}: a line is longer than {MAX_LINE} bytes", self.name);
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if let Some(from) = self.from {
            let seq = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| super::set::record_seq(&v));
            match seq {
                Some(seq) if seq >= from => self.from = None,
                _ => return Ok(()),
            }
        }
        if self.json {
            self.out.write_all(line)?;
            self.out.write_all(b"\n")?;
        } else if let Some(summary) = summarize(line) {
            writeln!(self.out, "{summary}")?;
        }
        Ok(())
    }

    /// Reads `reader` to its end; the bytes read.
    fn drain(&mut self, reader: &mut dyn std::io::Read) -> anyhow::Result<u64> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut chunk)
                .with_context(|| format!("reading {}", self.name))?;
            if n == 0 {
                self.out.flush()?;
                return Ok(total);
            }
            total += n as u64;
            self.feed(&chunk[..n])?;
        }
    }
}

/// Runs `ekms audit tail`.
///
/// # Errors
/// When a file cannot be read, a line is longer than [`MAX_LINE`], or `out` fails.
pub fn tail(args: &TailArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut printer = Printer {
        out,
        from: args.from,
        json: args.json,
        pending: Vec::new(),
        name: args.file.display().to_string(),
    };
    if args.file.is_dir() {
        return tail_dir(&args.file, args.follow, &mut printer);
    }
    tail_file(&args.file, args.follow, &mut printer)
}

/// One file, followed as it grows (a copy, or a file outside a data directory).
fn tail_file(path: &Path, follow: bool, printer: &mut Printer<'_>) -> anyhow::Result<()> {
    let file = AuditFile {
        path: path.to_owned(),
        start: None,
        compressed: path.extension().is_some_and(|e| e == "gz"),
    };
    if file.compressed {
        let mut reader =
            audit_files::open(&file).with_context(|| format!("opening {}", path.display()))?;
        printer.drain(&mut reader)?;
        return Ok(());
    }
    let mut handle = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut pos = printer.drain(&mut handle)?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let len = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        if len < pos {
            // An unacknowledged append was undone (or the file was cut): go on from its end.
            eprintln!(
                "{}: the file shrank from {pos} to {len} bytes; following from there",
                path.display()
            );
            handle.seek(SeekFrom::Start(len))?;
            pos = len;
            printer.pending.clear();
        }
        pos += printer.drain(&mut handle)?;
    }
}

/// A data directory's log: the rotated files, then `audit.jsonl`, followed across rotations.
fn tail_dir(dir: &Path, follow: bool, printer: &mut Printer<'_>) -> anyhow::Result<()> {
    let mut next = 0u64;
    for file in list_rotated(dir)? {
        let mut reader =
            audit_files::open(&file).with_context(|| format!("opening {}", file.path.display()))?;
        let len = printer.drain(&mut reader)?;
        next = file.start.unwrap_or(0) + len;
    }
    let (mut handle, mut current_start) = open_current(dir, next, printer)?;
    let mut pos = printer.drain(&mut handle)?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        pos += printer.drain(&mut handle)?;
        if rotated_at(dir, current_start).is_none() {
            continue;
        }
        // Renamed only after its last line was written: read its end, then what follows it.
        pos += printer.drain(&mut handle)?;
        (handle, current_start) = open_current(dir, current_start + pos, printer)?;
        pos = printer.drain(&mut handle)?;
    }
}

/// Opens `audit.jsonl`, which starts at log offset `next` unless it was rotated meanwhile
/// (perhaps several times): the rotated files from `next` on are read whole first. Returns the
/// file and its start.
fn open_current(
    dir: &Path,
    mut next: u64,
    printer: &mut Printer<'_>,
) -> anyhow::Result<(File, u64)> {
    let current = dir.join(audit_files::CURRENT);
    loop {
        if let Some(file) = rotated_at(dir, next) {
            let mut reader = match audit_files::open(&file) {
                Ok(reader) => reader,
                // The plain file, removed once compressed: the next round reads the `.gz`.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("opening {}", file.path.display()))
                }
            };
            next += printer.drain(&mut reader)?;
            continue;
        }
        let handle = match File::open(&current) {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Between a rotation's rename and the new file.
                std::thread::sleep(FOLLOW_INTERVAL);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", current.display())),
        };
        // A rotation renames before it creates: if the file at `next` is still not rotated,
        // the file opened is it.
        if rotated_at(dir, next).is_none() {
            return Ok((handle, next));
        }
    }
}

/// The rotated file that starts at log offset `start`, compressed or not yet.
fn rotated_at(dir: &Path, start: u64) -> Option<AuditFile> {
    // The compressed one first: it is renamed into place whole, before the plain one goes.
    [true, false].into_iter().find_map(|compressed| {
        let path = dir.join(audit_files::rotated_name(start, compressed));
        path.exists().then_some(AuditFile {
            path,
            start: Some(start),
            compressed,
        })
    })
}

fn list_rotated(dir: &Path) -> anyhow::Result<Vec<AuditFile>> {
    let mut files = audit_files::list(dir).with_context(|| format!("reading {}", dir.display()))?;
    files.retain(|f| f.start.is_some());
    Ok(files)
}
