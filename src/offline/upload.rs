//! Chunked, resumable blob uploads (the OCI distribution spec's chunked upload: POST to
//! open a session, one PATCH with `Content-Range` per chunk, PUT `?digest=` to close it)
//! and the small state file that lets a rerun find an interrupted session.
//!
//! The resume offset always comes from the registry (GET on the upload URL answers its
//! `Range`), never from our own record: Debian's docker-registry 2.8 keeps the bytes of a
//! PATCH cut midway and cancels a session resumed at any other offset than the one it
//! holds. The bytes before that offset are read again from the bundle and hashed, not
//! sent, so the digest is still checked here before the last byte goes out.
//!
//! The state file is hostile input: it is read up to [`MAX_STATE`] bytes, an entry is used
//! only for the registry origin and repository it was written for (an upload URL on any
//! other origin is never contacted: no credentials, no data go there), it holds no
//! credentials (only the upload URL the registry issued, never one with user info), it is
//! replaced atomically (a temporary file renamed over it) and removed once nothing is
//! unfinished. Not done: several tool runs sharing one state file at once (the last
//! writer wins; a lost entry only means that blob starts again).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::digest::{shown, Digest, Hasher};
use super::registry::{refused, Counting, Origin, Progress, Registry, Repository};
use crate::error::{Error, Result};

/// The default `--chunk-size`.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;
/// The smallest `--chunk-size`: below it the requests cost more than the bytes.
pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
/// The largest `--chunk-size`: one PATCH must finish within the rate bound.
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
/// The default `--jobs`.
pub const DEFAULT_JOBS: usize = 4;
/// The most `--jobs`.
pub const MAX_JOBS: usize = 32;
/// The state file's name in the state directory.
pub const STATE_FILE: &str = "offline-install-uploads";
/// The state file's first line (its format).
const STATE_HEADER: &str = "offline-install upload state 1";
/// The state file is read up to this size; a larger one is ignored.
pub const MAX_STATE: u64 = 1 << 20;
/// Entries kept at most (one per unfinished blob).
const MAX_ENTRIES: usize = 4096;
/// An upload URL longer than this is not kept.
const MAX_LOCATION: usize = 4096;

/// `SIZE` as bytes, or with a `K`, `M` or `G` suffix (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("{} is not a size: use bytes, or a K, M or G suffix (powers of 1024)", shown(text))),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{} is not a size: use bytes, or a K, M or G suffix (powers of 1024)", shown(text)))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{} is too large", shown(text)))
}

/// `--chunk-size`, within [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
pub fn parse_chunk_size(text: &str) -> std::result::Result<u64, String> {
    let n = parse_size(text).map_err(|why| format!("--chunk-size: {why}"))?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&n) {
        return Err(format!("--chunk-size {}: give 64K to 1G", shown(text)));
    }
    Ok(n)
}

/// `--jobs`, within 1..=[`MAX_JOBS`].
pub fn parse_jobs(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!("--jobs {}: give a number from 1 to {MAX_JOBS}", shown(text))),
    }
}

/// How blobs move: the chunk size, where the state file lives, how many at once.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Bytes per PATCH (default [`DEFAULT_CHUNK_SIZE`]).
    pub chunk_size: u64,
    /// The directory of the state file (default: the current directory).
    pub state_dir: PathBuf,
    /// Concurrent blob transfers (default [`DEFAULT_JOBS`]).
    pub jobs: usize,
}

impl Default for Transfer {
    fn default() -> Transfer {
        Transfer { chunk_size: DEFAULT_CHUNK_SIZE, state_dir: PathBuf::from("."), jobs: DEFAULT_JOBS }
    }
}

/// Whether the registry takes chunks: not yet known, yes, no (then uploads are monolithic).
const UNKNOWN: u8 = 0;
const CHUNKS: u8 = 1;
const WHOLE: u8 = 2;

/// The chunked-upload side of one push: settings, the state file, what the registry
/// showed it supports, and the stop flag the parallel workers share.
pub struct Uploads {
    chunk_size: u64,
    state: StateFile,
    support: AtomicU8,
    /// Set when one worker failed: the others stop after their current chunk.
    pub stop: Arc<AtomicBool>,
}

impl Uploads {
    /// Uploads under `transfer`, with the state file of its state directory loaded.
    pub fn new(transfer: &Transfer) -> Uploads {
        Uploads {
            chunk_size: transfer.chunk_size.clamp(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
            state: StateFile::load(&transfer.state_dir),
            support: AtomicU8::new(UNKNOWN),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True once the registry showed it takes no chunks.
    pub fn monolithic(&self) -> bool {
        self.support.load(Ordering::Relaxed) == WHOLE
    }

    /// Whether a blob of `size` bytes goes up in chunks: only when it is larger than one
    /// (a blob of at most a chunk gains nothing from them, and distribution answers
    /// `Range: 0-0` for both 0 and 1 byte held, so a 1-byte chunk could never be confirmed).
    pub fn chunked(&self, size: u64) -> bool {
        !self.monolithic() && size > self.chunk_size
    }
}

/// One unfinished upload: which registry origin and repository, which blob, and the upload
/// URL the registry last issued for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    origin: String,
    repository: String,
    digest: String,
    location: String,
}

/// The state file: one line per unfinished blob, tab-separated.
struct StateFile {
    path: PathBuf,
    entries: Mutex<Vec<Entry>>,
    /// Set after the first failed write (said once; uploads go on, resumable or not).
    unwritable: AtomicBool,
}

impl StateFile {
    /// Reads the state file of `dir`; a missing, oversized or unreadable one is empty, and
    /// every line that is not a well-formed entry is dropped.
    fn load(dir: &Path) -> StateFile {
        let path = dir.join(STATE_FILE);
        let mut entries = Vec::new();
        // Only a regular file is read (a FIFO or a device there would block or never end).
        let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if let Some(file) = regular.then(|| std::fs::File::open(&path).ok()).flatten() {
            let mut text = String::new();
            let read = file.take(MAX_STATE + 1).read_to_string(&mut text);
            if read.is_err() || text.len() as u64 > MAX_STATE || !text.starts_with(STATE_HEADER) {
                eprintln!("ignoring the upload state file {}: it is not one this tool wrote (or larger than 1 MiB)", path.display());
            } else {
                entries = text.lines().skip(1).filter_map(Entry::parse).take(MAX_ENTRIES).collect();
            }
        }
        StateFile { path, entries: Mutex::new(entries), unwritable: AtomicBool::new(false) }
    }

    fn find(&self, origin: &str, repository: &str, digest: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().find(|e| e.origin == origin && e.repository == repository && e.digest == digest).map(|e| e.location.clone())
    }

    /// Records (or, with `None`, forgets) the upload URL of one blob, then writes the file.
    fn set(&self, origin: &str, repository: &str, digest: &str, location: Option<&str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !(e.origin == origin && e.repository == repository && e.digest == digest));
        if let Some(location) = location {
            let entry = Entry { origin: origin.into(), repository: repository.into(), digest: digest.into(), location: location.into() };
            if entry.ok() && entries.len() < MAX_ENTRIES {
                entries.push(entry);
            }
        }
        if let Err(e) = self.write(&entries) {
            if !self.unwritable.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: cannot keep the upload state in {} ({e}); uploads go on, but an interrupted one will start again: give --state-dir a writable directory",
                    self.path.display()
                );
            }
        }
    }

    /// Replaces the file atomically (a temporary file renamed over it), or removes it when
    /// nothing is unfinished.
    fn write(&self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut text = format!("{STATE_HEADER}\n");
        for e in entries {
            text.push_str(&format!("{}\t{}\t{}\t{}\n", e.origin, e.repository, e.digest, e.location));
        }
        let temp = self.path.with_file_name(format!("{STATE_FILE}.{}.tmp", std::process::id()));
        let written = (|| {
            // Created afresh (a leftover of a killed run is removed, never written through:
            // it may be a symlink), readable by its owner only.
            let _ = std::fs::remove_file(&temp);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let mut fields = line.split('\t');
        let entry = Entry { origin: fields.next()?.into(), repository: fields.next()?.into(), digest: fields.next()?.into(), location: fields.next()?.into() };
        (fields.next().is_none() && entry.ok()).then_some(entry)
    }

    /// Every field is what this tool writes: an origin, a repository path, a digest, and an
    /// http(s) URL without user info, nothing holding a control character.
    fn ok(&self) -> bool {
        let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_control() || c.is_whitespace());
        [&self.origin, &self.repository, &self.digest, &self.location].iter().all(|s| clean(s))
            && self.location.len() <= MAX_LOCATION
            && Origin::of(&self.location).is_ok()
            && Repository::parse(&self.repository).is_ok()
            && Digest::parse(&self.digest).is_ok()
    }
}

/// What became of a chunked upload.
pub enum Outcome {
    /// The blob is in the registry; this many bytes were sent.
    Done(u64),
    /// Upload it whole: the registry takes no chunks (said once), or its upload URL is on
    /// another origin (then this session, which is never resumed, is used).
    Whole(Option<String>),
}

/// A reader of the blob from a byte offset.
pub type OpenAt<'a> = dyn Fn(u64) -> std::io::Result<Box<dyn Read>> + Sync + 'a;

/// `0-N` (or `bytes=0-N`) of a `Range` header as the bytes it says the registry holds.
/// `0-0` is read as nothing held (docker-registry answers it for an empty session).
pub fn held(range: &str) -> Option<u64> {
    let r = range.trim().strip_prefix("bytes=").unwrap_or(range.trim());
    let (start, end) = r.split_once('-')?;
    let end: u64 = end.parse().ok()?;
    if start != "0" {
        return None;
    }
    if end == 0 {
        Some(0)
    } else {
        end.checked_add(1)
    }
}

/// Uploads `digest` (`size` bytes from `open`) to `repository` in chunks, resuming the
/// session the state file names when the registry still has it.
pub fn push(registry: &Registry, uploads: &Uploads, repository: &Repository, digest: &Digest, size: u64, open: &OpenAt) -> Result<Outcome> {
    let scope = format!("repository:{repository}:pull,push");
    let origin = registry.origin().to_string();
    let (repo, key) = (repository.as_str(), digest.to_string());
    let short = digest.short();
    let remember = |location: Option<&str>| {
        // An upload URL on another origin is never resumed, so it is not kept either.
        let ours = location.filter(|l| registry.upload_url_ok(l, repository));
        uploads.state.set(&origin, repo, &key, ours);
    };
    let mut resumed = None;
    if let Some(location) = uploads.state.find(&origin, repo, &key) {
        if !registry.upload_url_ok(&location, repository) {
            eprintln!("  {short}: the state file's upload URL is not on {origin} under {repo}: ignored, starting again");
        } else {
            match registry.upload_status(&location, &scope) {
                Ok((offset, fresh)) if offset <= size && registry.upload_url_ok(&fresh, repository) => resumed = Some((offset, fresh)),
                Ok((offset, _)) => eprintln!("  {short}: the registry reports {offset} bytes of a {size}-byte blob: starting again"),
                Err(e) => eprintln!("  {short}: the interrupted upload could not be resumed ({e}); starting again"),
            }
        }
    }
    let fresh_session = resumed.is_none();
    let (mut offset, mut location) = match resumed {
        Some(r) => r,
        None => (0, registry.start_upload(repository, &scope)?),
    };
    if fresh_session && !registry.upload_url_ok(&location, repository) {
        return Ok(Outcome::Whole(Some(location)));
    }
    remember(Some(&location));
    let mut hasher = Hasher::new();
    if offset > 0 {
        eprintln!("  {short}: resuming at byte {offset} of {size} (the registry's offset); re-reading the bytes before it to check the digest");
        let mut prefix = open(0).map_err(|e| Error::io(format!("reading blob {digest}"), e))?.take(offset);
        let mut buf = vec![0u8; 256 << 10];
        let mut read = 0u64;
        loop {
            let n = prefix.read(&mut buf).map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
        }
        if read != offset {
            return Err(Error::io(format!("reading blob {digest}"), std::io::Error::other(format!("it ended after {read} of {size} bytes"))));
        }
    }
    let first = offset;
    while offset < size {
        if uploads.stop.load(Ordering::Relaxed) {
            return Err(Error::transport(format!("uploading {digest}"), "stopped after another transfer failed (the next run resumes it)"));
        }
        let len = uploads.chunk_size.min(size - offset);
        let slot: Arc<Mutex<Option<Hasher>>> = Arc::new(Mutex::new(None));
        let (start_hasher, slot2, expected) = (hasher.clone(), slot.clone(), digest.clone());
        let body = move || -> std::io::Result<Box<dyn Read>> {
            Ok(Box::new(Counting::chunk(open(offset)?, Progress::silent(), offset, len, size, start_hasher.clone(), expected.clone(), slot2.clone())))
        };
        let range = format!("{offset}-{}", offset + len - 1);
        let (status, next, holds, mut response) = registry.patch_upload(&location, &scope, &range, &body, len)?;
        let fallback = fresh_session && offset == first && uploads.support.load(Ordering::Relaxed) != CHUNKS;
        if fallback
            && (status == 405
                || status == 501
                || (400..500).contains(&status) && !matches!(status, 401 | 403 | 404 | 429)
                || (status == 202 && holds.is_none()))
        {
            if uploads.support.swap(WHOLE, Ordering::Relaxed) != WHOLE {
                let why = if status == 202 { "it answered a PATCH without a Range".to_string() } else { format!("it answered a PATCH with HTTP {status}") };
                eprintln!("the registry {origin} does not take chunked uploads ({why}): uploading whole blobs (an interrupted one starts again)");
            }
            remember(None);
            return Ok(Outcome::Whole(None));
        }
        if status != 202 {
            return Err(refused(&mut response, format!("PATCH {}", location.split('?').next().unwrap_or(&location))));
        }
        uploads.support.store(CHUNKS, Ordering::Relaxed);
        if holds != Some(offset + len) {
            return Err(Error::transport(
                format!("PATCH {}", location.split('?').next().unwrap_or(&location)),
                format!(
                    "the registry says it holds {} bytes after the chunk ending at byte {}; the next run resumes from its offset",
                    holds.map_or("no".into(), |h| h.to_string()),
                    offset + len
                ),
            ));
        }
        hasher =
            slot.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or_else(|| {
                Error::transport(format!("uploading {digest}"), "the chunk was not read to its end (a bug: the request went without its body)")
            })?;
        location = next;
        offset += len;
        remember(Some(&location));
    }
    // Nothing sent in this run (the registry held it all, or the blob is empty): the bytes
    // re-read from the bundle are still checked before the session is closed.
    if first == size && hasher.finish() != *digest {
        return Err(Error::transport(
            format!("uploading {digest}"),
            format!("the bundle's bytes of blob {digest} are no longer that digest; the bundle changed after it was verified"),
        ));
    }
    registry.finish_upload(&location, &scope, digest)?;
    remember(None);
    Ok(Outcome::Done(size - first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_k_m_g_suffixes_and_chunk_sizes_are_bounded() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "M", "1T", "-1", "1.5M", "99999999999999999999G", "18014398509481984G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_chunk_size("4M"), Ok(4 << 20));
        assert!(parse_chunk_size("1K").is_err() && parse_chunk_size("2G").is_err() && parse_chunk_size("0").is_err());
        assert_eq!(parse_jobs("8"), Ok(8));
        assert!(parse_jobs("0").is_err() && parse_jobs("33").is_err() && parse_jobs("x").is_err());
    }

    #[test]
    fn ranges_read_as_the_bytes_the_registry_holds() {
        assert_eq!(held("0-0"), Some(0));
        assert_eq!(held("0-999"), Some(1000));
        assert_eq!(held("bytes=0-9"), Some(10));
        assert_eq!(held("5-9"), None);
        assert_eq!(held("0-x"), None);
        assert_eq!(held(&format!("0-{}", u64::MAX)), None, "a Range ending at u64::MAX wrapped");
    }

    fn dir(name: &str) -> crate::scratch::TempDir {
        crate::scratch::TempDir::new(&format!("upload-{name}"))
    }

    #[test]
    fn a_state_file_keeps_only_well_formed_entries_and_is_removed_when_empty() {
        let scratch = dir("state");
        let d = scratch.0.clone();
        let digest = format!("sha256:{}", "a".repeat(64));
        let good = format!("http://127.0.0.1:5000\tmirror/x\t{digest}\thttp://127.0.0.1:5000/v2/mirror/x/blobs/uploads/u?_state=s");
        let text = format!(
            "{STATE_HEADER}\n{good}\nhttp://127.0.0.1:5000\tmirror/x\t{digest}\thttp://u:p@127.0.0.1:5000/v2/mirror/x/blobs/uploads/u\nhttp://127.0.0.1:5000\t../x\t{digest}\thttp://127.0.0.1:5000/v2/\ngarbage\n"
        );
        std::fs::write(d.join(STATE_FILE), text).unwrap();
        let state = StateFile::load(&d);
        assert_eq!(state.entries.lock().unwrap().len(), 1);
        assert!(state.find("http://127.0.0.1:5000", "mirror/x", &digest).unwrap().ends_with("?_state=s"));
        state.set("http://127.0.0.1:5000", "mirror/x", &digest, None);
        assert!(!d.join(STATE_FILE).exists());
        std::fs::write(d.join(STATE_FILE), vec![b'x'; MAX_STATE as usize + 10]).unwrap();
        assert!(StateFile::load(&d).entries.lock().unwrap().is_empty());
    }

    #[test]
    fn a_state_file_that_is_a_fifo_is_ignored_without_hanging() {
        let scratch = dir("fifo");
        let d = scratch.0.clone();
        let path = std::ffi::CString::new(d.join(STATE_FILE).to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path in our own test directory.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let d2 = d.clone();
        std::thread::spawn(move || tx.send(StateFile::load(&d2).entries.lock().unwrap().len()).unwrap());
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(0), "loading a FIFO state file hung");
    }

    #[test]
    fn a_leftover_temporary_state_file_that_is_a_symlink_is_not_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = dir("symlink");
        let d = scratch.0.clone();
        let victim = d.join("victim");
        std::fs::write(&victim, "someone's file").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(format!("{STATE_FILE}.{}.tmp", std::process::id()))).unwrap();
        let state = StateFile::load(&d);
        let digest = format!("sha256:{}", "b".repeat(64));
        state.set("http://127.0.0.1:5000", "mirror/x", &digest, Some("http://127.0.0.1:5000/v2/mirror/x/blobs/uploads/u?_state=s"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "someone's file");
        assert!(std::fs::read_to_string(d.join(STATE_FILE)).unwrap().contains("_state=s"));
        assert_eq!(std::fs::metadata(d.join(STATE_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
