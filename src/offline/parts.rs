//! A bundle as one file or as parts for removable media: `FILE.001`, `FILE.002`, … whose
//! concatenation IS the single-file bundle (so `cat FILE.[0-9][0-9][0-9] | tar -x offline-install`
//! takes the tool out), and the index `FILE.parts` that records each part's size and
//! sha256 and the sha256 of the bundle's `SHA256SUMS`. The sha256 of the index is the
//! trust anchor of a parted bundle: it covers every part, and through `SHA256SUMS`
//! every entry.
//!
//! This module owns where the bytes are ([`Source`]: a reader over a sequence of files,
//! offsets in the concatenation, never joined on disk) and the checks that a part is
//! what the index says, so a missing, truncated, longer, altered, symlinked or special
//! part is named before anything reads an entry. The index is hostile input: its part
//! names are never taken from it (they are derived from FILE and the part number, so a
//! part named `../x` or FILE itself cannot be asked for), its sizes are checked for
//! overflow, and its length and part count are bounded. It does not own what the
//! bundle's entries mean ([`super::bundle`]) nor the tar format ([`super::tar`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::{shown, Digest, Hasher};
use super::tar;
use crate::error::{Error, Result};

/// Format tag, the first line of the index.
pub const FORMAT: &str = "kubernetes-agent-offline-parts/1";
/// Parts one bundle may have (three digits, so `cat FILE.[0-9][0-9][0-9]` takes them in order; `FILE.0*` would miss 100 and on).
pub const MAX_PARTS: usize = 999;
/// Smallest `--max-part-size`.
pub const MIN_PART_SIZE: u64 = 64 << 10;
/// Size bound of the index (999 lines of about 100 bytes).
pub(crate) const MAX_INDEX: u64 = 128 << 10;

/// The index's extension: `FILE.parts`.
pub const INDEX_EXTENSION: &str = "parts";

/// Parses `--max-part-size`: bytes, or a number with `K`, `M` or `G` (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c @ ('K' | 'M' | 'G' | 'k' | 'm' | 'g'))) => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => 0,
    };
    let bad = || format!("--max-part-size {}: give bytes, or a number with K, M or G (powers of 1024), e.g. 4G", shown(text));
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let size = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if size < MIN_PART_SIZE {
        return Err(format!("--max-part-size {}: parts must be at least {} KiB", shown(text), MIN_PART_SIZE >> 10));
    }
    Ok(size)
}

/// The path of part `number` (1-based) of `file`: `FILE.001`.
pub fn part_path(file: &Path, number: usize) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{number:03}"));
    file.with_file_name(name)
}

/// The path of the index of `file`: `FILE.parts`.
pub fn index_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{INDEX_EXTENSION}"));
    file.with_file_name(name)
}

/// Where the index is written before it is renamed: `FILE.parts.partial`.
pub fn index_partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{INDEX_EXTENSION}.partial"));
    file.with_file_name(name)
}

/// One file of a source: where it is, its length, and where it starts in the concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes.
    pub size: u64,
    /// Its sha256 (as the index records it).
    pub digest: Option<Digest>,
    /// Offset of its first byte in the concatenation.
    pub start: u64,
}

/// Where a bundle's bytes are: one file, or its checked parts in order.
#[derive(Debug, Clone)]
pub struct Source {
    parts: Arc<Vec<Part>>,
    len: u64,
    /// The index when the bundle is parted: its path and sha256 (the anchor to compare).
    pub index: Option<(PathBuf, Digest)>,
    /// The sha256 of `SHA256SUMS` the index records.
    pub sums: Option<Digest>,
    /// A single file's name as given (its part holds the path a symlink resolved to).
    given: Option<PathBuf>,
}

impl Source {
    /// A single-file bundle: a regular file (a FIFO or device is refused without blocking
    /// on it); a symlink is followed once, here, and its target is what is read from then on.
    pub fn single(path: &Path) -> Result<Source> {
        let real = std::fs::canonicalize(path).map_err(|e| Error::io(format!("opening the bundle {}", path.display()), e))?;
        let file = open_regular(&real)
            .map_err(|why| Error::config("bundle", format!("{} {why}", path.display()), "give the bundle file (or FILE with FILE.parts beside it)"))?;
        let meta = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let part = Part { path: real, size: meta.len(), digest: None, start: 0 };
        Ok(Source { parts: Arc::new(vec![part]), len: meta.len(), index: None, sums: None, given: Some(path.to_path_buf()) })
    }

    /// Parts already checked (by the writer that made them, or [`Source::parted`]).
    fn of(parts: Vec<Part>, index: Option<(PathBuf, Digest)>, sums: Option<Digest>) -> Source {
        let len = parts.last().map_or(0, |p| p.start + p.size);
        Source { parts: Arc::new(parts), len, index, sums, given: None }
    }

    /// Finds the bundle `file`: the file itself when it exists, else its parts through
    /// `FILE.parts`, every part checked against the index (see [`Source::parted`]; with
    /// `hash` false only their sizes: `list` hashes nothing).
    pub fn locate(file: &Path, hash: bool) -> Result<Source> {
        match std::fs::symlink_metadata(file) {
            Ok(_) => Source::single(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound && std::fs::symlink_metadata(index_path(file)).is_ok() => Source::parted(file, hash),
            Err(e) => Err(Error::io(format!("opening the bundle {} (nor is there {})", file.display(), index_path(file).display()), e)),
        }
    }

    /// The parts of `file` as `FILE.parts` lists them, each opened without following a
    /// symlink, a regular file, with the size and sha256 the index gives; a part after the
    /// last is refused too (a part list cut short). Errors name the part and what is wrong.
    /// With `hash` false, everything but the checksums is checked.
    pub fn parted(file: &Path, hash: bool) -> Result<Source> {
        let index_file = index_path(file);
        let doc = format!("the part index {}", index_file.display());
        let bytes = read_regular(&index_file, MAX_INDEX).map_err(|why| Error::decode(&doc, format!("it {why}")))?;
        let (sums, listed) = parse_index(&bytes).map_err(|why| Error::decode(&doc, format!("{why}: get a fresh copy of it")))?;
        let mut parts = Vec::with_capacity(listed.len());
        let mut start = 0u64;
        for (i, (size, digest)) in listed.into_iter().enumerate() {
            let path = part_path(file, i + 1);
            check_part(&path, size, hash.then_some(&digest))?;
            parts.push(Part { path, size, digest: Some(digest), start });
            start = start.checked_add(size).ok_or_else(|| Error::decode(&doc, "its sizes add up past 2^64"))?;
        }
        let next = part_path(file, parts.len() + 1);
        if std::fs::symlink_metadata(&next).is_ok() {
            return Err(Error::decode(
                &doc,
                format!("it lists {} parts, but {} exists too: the index or the parts are not of one bundle; get a fresh copy", parts.len(), next.display()),
            ));
        }
        Ok(Source::of(parts, Some((index_file, Digest::of(&bytes))), Some(sums)))
    }

    /// Length of the concatenation.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Its parts (one for a single file).
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The bundle's name for messages: FILE, or `FILE.001 … FILE.NNN`.
    pub fn shown(&self) -> String {
        match (self.parts.first(), self.parts.last()) {
            (Some(a), Some(b)) if self.parts.len() > 1 || self.index.is_some() => format!("{} … {}", a.path.display(), b.path.display()),
            (Some(a), _) => self.given.as_ref().unwrap_or(&a.path).display().to_string(),
            _ => String::new(),
        }
    }

    /// A reader over the whole concatenation, seekable.
    pub fn reader(&self) -> Reader {
        Reader { parts: self.parts.clone(), pos: 0, end: self.len, file: None }
    }

    /// A reader over one entry's data, across part boundaries.
    pub fn open(&self, entry: &tar::Entry) -> io::Result<Reader> {
        let end = entry
            .offset
            .checked_add(entry.size)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "an entry past the end"))?;
        Ok(Reader { parts: self.parts.clone(), pos: entry.offset, end, file: None })
    }

    /// [`Source::open`] from byte `from` of the entry's data (a resumed upload re-reads
    /// the bytes before it to hash them; past the end reads nothing).
    pub fn open_from(&self, entry: &tar::Entry, from: u64) -> io::Result<Reader> {
        let from = from.min(entry.size);
        self.open(&tar::Entry { offset: entry.offset + from, size: entry.size - from, ..entry.clone() })
    }
}

/// The bytes of a regular file of at most `max` bytes, opened without following a symlink
/// and without blocking on a FIFO.
fn read_regular(path: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("is larger than {max} bytes, more than any index this tool writes"));
    }
    Ok(bytes)
}

/// Opens `path` for reading, refusing a symlink, a FIFO, a device or a directory.
fn open_regular(path: &Path) -> std::result::Result<File, String> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| match e.raw_os_error() {
        _ if e.kind() == io::ErrorKind::NotFound => "is missing".to_string(),
        Some(libc::ELOOP) => "is a symlink (parts are plain files; copy the file itself)".to_string(),
        _ => format!("cannot be opened: {e}"),
    })?;
    let meta = file.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file (a FIFO, device or directory)".into());
    }
    Ok(file)
}

/// Checks one part against the index: present, a plain file, `size` bytes, and (when given)
/// sha256 `digest`.
fn check_part(path: &Path, size: u64, digest: Option<&Digest>) -> Result<()> {
    let what = format!("part {}", path.display());
    let fix = "copy it again from the medium it came on (the other parts are checked too)";
    let wrong = |why: String| Error::config("bundle parts", format!("{what} {why}"), fix);
    let mut file = open_regular(path).map_err(wrong)?;
    let actual = file.metadata().map_err(|e| wrong(format!("cannot be read: {e}")))?.len();
    if actual < size {
        return Err(wrong(format!("is truncated: {actual} bytes, the index says {size}")));
    }
    if actual > size {
        return Err(wrong(format!("is {actual} bytes, longer than the {size} the index says")));
    }
    let Some(digest) = digest else { return Ok(()) };
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| wrong(format!("cannot be read: {e}")))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    if read != size {
        return Err(wrong(format!("changed while it was read ({read} bytes, the index says {size})")));
    }
    if hasher.finish() != *digest {
        return Err(wrong("has the wrong checksum (its sha256 is not the one the index records)".into()));
    }
    Ok(())
}

/// Parses the index: the format line, `sums <hex>`, then one `<sha256 hex> <size>` line per
/// part in order; nothing else. Part names are not in it: they follow from FILE.
pub fn parse_index(bytes: &[u8]) -> std::result::Result<(Digest, Vec<(u64, Digest)>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
    let body = text.strip_suffix('\n').ok_or("it does not end with a newline (truncated?)")?;
    let mut lines = body.split('\n');
    if lines.next() != Some(FORMAT) {
        return Err(format!("it is not format {FORMAT}"));
    }
    let sums = lines.next().and_then(|l| l.strip_prefix("sums ")).ok_or("it has no 'sums' line")?;
    let sums = Digest::from_hex(sums).map_err(|why| format!("its sums line: {why}"))?;
    let mut parts = Vec::new();
    let mut total = 0u64;
    for line in lines {
        if parts.len() == MAX_PARTS {
            return Err(format!("it lists more than {MAX_PARTS} parts"));
        }
        let malformed = || format!("the line {} is not '<sha256 hex> <size>'", shown(line));
        let (hex, size) = line.split_once(' ').ok_or_else(malformed)?;
        let digest = Digest::from_hex(hex).map_err(|_| malformed())?;
        if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(malformed());
        }
        let size: u64 = size.parse().map_err(|_| format!("the size in {} is over 2^64", shown(line)))?;
        if size == 0 {
            return Err(format!("the line {} lists an empty part", shown(line)));
        }
        total = total.checked_add(size).ok_or("its sizes add up past 2^64")?;
        parts.push((size, digest));
    }
    if parts.is_empty() {
        return Err("it lists no parts".into());
    }
    Ok((sums, parts))
}

/// The text of an index for `parts` of a bundle whose `SHA256SUMS` has sha256 `sums`.
pub fn index_text(sums: &Digest, parts: &[Part]) -> String {
    let mut text = format!("{FORMAT}\nsums {}\n", sums.hex());
    for p in parts {
        text.push_str(&format!("{} {}\n", p.digest.as_ref().map_or("", |d| d.hex()), p.size));
    }
    text
}

/// A reader over a byte range of the concatenation; a part is opened when the range reaches
/// it, without following a symlink, and must still have the size it had when checked.
pub struct Reader {
    parts: Arc<Vec<Part>>,
    pos: u64,
    end: u64,
    file: Option<(usize, io::Take<File>)>,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.end || buf.is_empty() {
                return Ok(0);
            }
            if self.file.is_none() {
                let i = self.parts.partition_point(|p| p.start + p.size <= self.pos);
                let part = self.parts.get(i).ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the last part"))?;
                let mut file = open_regular(&part.path).map_err(|why| io::Error::other(format!("part {} {why}", part.path.display())))?;
                if file.metadata()?.len() != part.size {
                    return Err(io::Error::other(format!("part {} changed size after it was checked", part.path.display())));
                }
                file.seek(SeekFrom::Start(self.pos - part.start))?;
                let left = (part.start + part.size).min(self.end) - self.pos;
                self.file = Some((i, file.take(left)));
            }
            let Some((i, file)) = self.file.as_mut() else { continue };
            let n = file.read(buf)?;
            if n == 0 {
                if file.limit() > 0 {
                    let path = &self.parts[*i].path;
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("part {} ended early", path.display())));
                }
                self.file = None;
                continue;
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

impl Seek for Reader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.filter(|&t| t <= self.end).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a seek outside the bundle"))?;
        if target != self.pos {
            self.pos = target;
            self.file = None;
        }
        Ok(target)
    }
}

/// Where `bundle` writes: one file, or parts of at most `max` bytes each, every part
/// hashed as it is written. A part is created exclusively (an existing one is refused,
/// never overwritten); [`Output::created`] lists them for the caller to remove on error.
pub struct Output {
    base: PathBuf,
    max: Option<u64>,
    parts: Vec<Part>,
    current: Option<(File, Hasher)>,
}

impl Output {
    /// Writes to `path` (a new file) when `max` is `None`, else to `base.001`, `base.002`, ….
    pub fn new(path: &Path, base: &Path, max: Option<u64>) -> Output {
        let target = if max.is_some() { base } else { path };
        Output { base: target.to_path_buf(), max, parts: Vec::new(), current: None }
    }

    fn roll(&mut self) -> io::Result<()> {
        self.close()?;
        let number = self.parts.len() + 1;
        let path = match self.max {
            Some(_) if number > MAX_PARTS => {
                return Err(io::Error::other(format!("the bundle needs more than {MAX_PARTS} parts: give a larger --max-part-size")));
            }
            Some(_) => part_path(&self.base, number),
            None => self.base.clone(),
        };
        let file = std::fs::OpenOptions::new().write(true).create_new(self.max.is_some()).truncate(self.max.is_none()).open(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("creating {} (an existing part is never overwritten: remove it or choose another --output): {e}", path.display()))
        })?;
        let start = self.parts.last().map_or(0, |p| p.start + p.size);
        self.parts.push(Part { path, size: 0, digest: None, start });
        self.current = Some((file, Hasher::new()));
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        if let (Some((file, hasher)), Some(part)) = (self.current.take(), self.parts.last_mut()) {
            file.sync_all()?;
            part.digest = Some(hasher.finish());
        }
        Ok(())
    }

    /// Closes the last part and returns the source they make.
    pub fn finish(mut self) -> io::Result<Source> {
        if self.parts.is_empty() {
            self.roll()?;
        }
        self.close()?;
        Ok(Source::of(std::mem::take(&mut self.parts), None, None))
    }
}

/// An output dropped before [`Output::finish`] (a failed or interrupted bundle) removes
/// the parts it created, and only those.
impl Drop for Output {
    fn drop(&mut self) {
        if self.max.is_some() {
            self.current = None;
            for p in &self.parts {
                let _ = std::fs::remove_file(&p.path);
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = match (self.max, self.parts.last()) {
            (Some(max), Some(p)) if self.current.is_some() => max - p.size,
            (None, Some(_)) if self.current.is_some() => u64::MAX,
            _ => 0,
        };
        if room == 0 {
            self.roll()?;
            return self.write(buf);
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let (Some((file, hasher)), Some(part)) = (self.current.as_mut(), self.parts.last_mut()) else {
            return Err(io::Error::other("no part is open"));
        };
        let n = file.write(&buf[..n])?;
        hasher.update(&buf[..n]);
        part.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some((file, _)) => file.flush(),
            None => Ok(()),
        }
    }
}

/// Adds the index to parts just written and checked: writes `FILE.parts` (exclusively,
/// through `FILE.parts.partial`) and returns the source with its anchor.
pub fn write_index(file: &Path, written: &Source, sums: &Digest) -> Result<Source> {
    let index = index_path(file);
    let partial = index_partial_path(file);
    let text = index_text(sums, written.parts());
    let mut out =
        std::fs::OpenOptions::new().write(true).create_new(true).open(&partial).map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
    let wrote = out.write_all(text.as_bytes()).and_then(|()| out.sync_all());
    if let Err(e) = wrote {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::io(format!("writing {} (is the disk full?)", partial.display()), e));
    }
    if std::fs::symlink_metadata(&index).is_ok() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::config(
            "--output",
            format!("{} appeared while the bundle was written; it is left as it is", index.display()),
            "remove it or choose another --output",
        ));
    }
    std::fs::rename(&partial, &index).map_err(|e| Error::io(format!("renaming {} to {}", partial.display(), index.display()), e))?;
    Ok(Source { index: Some((index, Digest::of(text.as_bytes()))), sums: Some(sums.clone()), ..written.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(byte: char) -> String {
        byte.to_string().repeat(64)
    }

    #[test]
    fn part_sizes_take_k_m_g_as_powers_of_1024_and_refuse_overflow_and_tiny_parts() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        for bad in ["", "M", "1.5G", "-1M", "1T", "99999999999999999999G", "18014398509481984G", "1K", " 1M", "1M "] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn part_names_come_from_the_file_name_and_the_number_never_from_the_index() {
        assert_eq!(part_path(Path::new("/m/b.tar"), 3), PathBuf::from("/m/b.tar.003"));
        assert_eq!(index_path(Path::new("b.tar")), PathBuf::from("b.tar.parts"));
        // The index has no name field: a line naming a path is malformed, not followed.
        let named = format!("{FORMAT}\nsums {}\n{} 10 ../x\n", hex('a'), hex('b'));
        assert!(parse_index(named.as_bytes()).unwrap_err().contains("not '<sha256 hex> <size>'"));
    }

    #[test]
    fn a_hostile_index_with_overflowing_zero_or_padded_sizes_or_too_many_parts_is_refused() {
        let line = |size: &str| format!("{} {size}\n", hex('b'));
        let doc = |lines: &str| format!("{FORMAT}\nsums {}\n{lines}", hex('a'));
        let good = doc(&line("10"));
        assert_eq!(parse_index(good.as_bytes()).unwrap().1, vec![(10, Digest::from_hex(&hex('b')).unwrap())]);
        let overflow = doc(&format!("{}{}", line(&u64::MAX.to_string()), line("1")));
        assert!(parse_index(overflow.as_bytes()).unwrap_err().contains("past 2^64"));
        assert!(parse_index(doc(&line("18446744073709551616")).as_bytes()).unwrap_err().contains("over 2^64"));
        assert!(parse_index(doc(&line("0")).as_bytes()).unwrap_err().contains("empty part"));
        assert!(parse_index(doc(&line("010")).as_bytes()).is_err());
        assert!(parse_index(doc(&line("+10")).as_bytes()).is_err());
        assert!(parse_index(doc(&line("1".repeat(1000).as_str())).as_bytes()).is_err());
        assert!(parse_index(doc(&line("10").repeat(MAX_PARTS + 1)).as_bytes()).unwrap_err().contains("more than 999"));
        assert!(parse_index(doc("").as_bytes()).unwrap_err().contains("no parts"));
        assert!(parse_index(good.trim_end().as_bytes()).unwrap_err().contains("newline"));
        assert!(parse_index(good.replace(FORMAT, "other/1").as_bytes()).is_err());
        assert!(parse_index(format!("{good}\n").as_bytes()).is_err(), "an empty line");
    }

    #[test]
    fn a_reader_over_parts_reads_and_seeks_across_their_boundaries_as_over_one_file() {
        let scratch = crate::scratch::TempDir::new("parts");
        let dir = scratch.path();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Output::new(&dir.join("b"), &dir.join("b"), Some(MIN_PART_SIZE));
        out.write_all(&data).unwrap();
        let source = out.finish().unwrap();
        assert_eq!(source.parts().len(), 4);
        assert_eq!(source.parts().iter().map(|p| p.size).collect::<Vec<_>>(), vec![65536, 65536, 65536, 200_000 - 3 * 65536]);
        let mut all = Vec::new();
        source.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        let entry =
            tar::Entry { name: "x".into(), offset: 65_000, size: 70_000, mode: 0, uid: 0, gid: 0, uname: String::new(), gname: String::new(), pax: false };
        let mut some = Vec::new();
        source.open(&entry).unwrap().read_to_end(&mut some).unwrap();
        assert_eq!(some, data[65_000..135_000]);
        let mut r = source.reader();
        r.seek(SeekFrom::Start(131_070)).unwrap();
        let mut four = [0u8; 4];
        r.read_exact(&mut four).unwrap();
        assert_eq!(four, data[131_070..131_074]);
        assert!(r.seek(SeekFrom::Start(200_001)).is_err());
    }
}
