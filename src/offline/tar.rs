//! Just enough ustar for the bundle: regular files, written once, then read by random
//! access (an index of entry offsets), so a blob is streamed straight from the bundle
//! file without unpacking it.
//!
//! The reader is strict, so that what it sees is what GNU tar extracts: an entry's full
//! name is the pax `path` when one precedes it, else the ustar `prefix` + `/` + `name`
//! (GNU tar joins them exactly so when the magic is `ustar\0`). Refused: duplicate
//! names, a file that is also another entry's directory, NULs inside a name field,
//! absolute paths, empty, `.` and `..` components, control characters, links, devices,
//! sparse and GNU long-name entries, global pax headers and any pax key that would change
//! what GNU tar extracts (`size`, `linkpath`, ...), numeric fields that are not plain
//! octal, a header with a bad checksum, an end marker that is not two zero blocks, and
//! anything but zero bytes after it (GNU tar `-i` and busybox read on past a zero block).
//! Directory entries are allowed by the reader (other tools write them) and carry no data.
//!
//! The caller says which names it accepts ([`index_of`]'s `accept`), and the reader asks
//! before it keeps anything about an entry: the first name the caller never expects ends
//! the read, so a hostile archive cannot make the reader store what the caller would
//! refuse anyway (thousands of 4 KB names of 2,000 components each). Each entry reports
//! its mode, owner and whether a pax header preceded it, for the caller to judge.

use super::digest::shown;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

const BLOCK: u64 = 512;
/// Entries one archive may hold.
pub const MAX_ENTRIES: usize = 200_000;
/// Size bound of one pax extended header.
const MAX_PAX: u64 = 64 << 10;
/// Length bound of a full name (this tool writes at most 100 bytes).
pub(crate) const MAX_NAME: usize = 256;
/// Components of a full name at most (this tool writes at most 4).
pub(crate) const MAX_COMPONENTS: usize = 8;
/// pax keys that do not change which bytes land under which name.
const HARMLESS_PAX_KEYS: [&str; 8] = ["mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment"];

/// One entry of a tar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub name: String,
    /// Offset of the data in the archive file.
    pub offset: u64,
    /// Data length.
    pub size: u64,
    /// Permission bits (all twelve: setuid, setgid and sticky included).
    pub mode: u32,
    /// Numeric owner and group.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Owner and group names (empty when the header has none).
    pub uname: String,
    /// Group name.
    pub gname: String,
    /// A pax extended header preceded this entry (its `uid`, `uname`, ... may then differ
    /// from the fields above; a caller that never writes pax headers refuses such entries).
    pub pax: bool,
}

/// Appends entries to a new archive.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Writer<W> {
        Writer { out, written: 0 }
    }

    /// Appends `size` bytes read from `data` under `name` (at most 100 bytes, a name the reader accepts).
    pub fn append(&mut self, name: &str, mode: u32, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let header = header(name, mode, size)?;
        self.out.write_all(&header)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name}: expected {size} bytes, read {copied}")));
        }
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        self.out.write_all(&vec![0u8; pad as usize])?;
        self.written += BLOCK + size + pad;
        Ok(())
    }

    /// Appends `size` bytes that `fill` writes (a download streamed straight into the
    /// archive, with no copy on disk); `fill` writing more or fewer bytes is an error.
    pub fn append_with(&mut self, name: &str, mode: u32, size: u64, fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let mut exact = Exact { out: &mut self.out, left: size };
        let header = header(name, mode, size)?;
        exact.out.write_all(&header)?;
        fill(&mut exact)?;
        if exact.left != 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name}: expected {size} bytes, {} short", exact.left)));
        }
        self.pad(size)
    }

    /// Appends an in-memory file.
    pub fn append_bytes(&mut self, name: &str, mode: u32, bytes: &[u8]) -> io::Result<()> {
        self.append(name, mode, bytes.len() as u64, &mut &bytes[..])
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The ustar header this writer puts before an entry's data.
fn header(name: &str, mode: u32, size: u64) -> io::Result<[u8; 512]> {
    if name.len() > 100 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar path '{name}' is longer than 100 bytes")));
    }
    check_name(name).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("tar path {name:?}: {why}")))?;
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], u64::from(mode));
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], size);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    octal(&mut header[148..155], u64::from(sum));
    header[155] = b' ';
    Ok(header)
}

/// A writer that takes exactly `left` more bytes and refuses any beyond.
struct Exact<'a, W: Write> {
    out: &'a mut W,
    left: u64,
}

impl<W: Write> Write for Exact<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "more bytes than the entry's size"));
        }
        let n = self.out.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// A numeric field: optional leading spaces, octal digits, then only NULs and spaces.
/// Anything else (a sign, base-256, digits after a terminator) is refused.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits = field[start..].iter().take_while(|b| (b'0'..=b'7').contains(b)).count();
    if !field[start + digits..].iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    field[start..start + digits].iter().try_fold(0u64, |n, &b| n.checked_mul(8)?.checked_add(u64::from(b - b'0')))
}

/// A name field up to its first NUL; bytes after that NUL must be NUL too.
fn name_field(field: &[u8]) -> Result<&[u8], String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[end..].iter().any(|&b| b != 0) {
        return Err("a NUL inside a name field".into());
    }
    Ok(&field[..end])
}

/// A full name this reader accepts: relative, UTF-8, no NUL or control character, no
/// empty, `.` or `..` component, at most 256 bytes and 8 components.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME || name.split('/').count() > MAX_COMPONENTS {
        return Err(format!("an empty or over-long name (at most {MAX_NAME} bytes, {MAX_COMPONENTS} components)"));
    }
    if name.chars().any(char::is_control) {
        return Err("a NUL or control character in a name".into());
    }
    if name.starts_with('/') {
        return Err("an absolute path".into());
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("an empty, '.' or '..' path component".into());
    }
    Ok(())
}

/// Reads the pax records of an extended header; returns its `path`, if any.
fn pax_path(data: &[u8]) -> Result<Option<String>, String> {
    let mut path = None;
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or("a pax record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or("a pax record with a bad length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("a pax record whose length is wrong".into());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("a pax record without '='")?;
        let key = std::str::from_utf8(&record[..eq]).map_err(|_| "a pax key that is not UTF-8")?;
        let value = &record[eq + 1..];
        match key {
            "path" => {
                if path.is_some() {
                    return Err("two pax paths for one entry".into());
                }
                path = Some(String::from_utf8(value.to_vec()).map_err(|_| "a pax path that is not UTF-8")?);
            }
            k if HARMLESS_PAX_KEYS.contains(&k) => {}
            k => return Err(format!("the pax key {k:?}, which this reader does not honour")),
        }
        rest = &rest[len..];
    }
    Ok(path)
}

/// Reads the index of an archive file: every regular file with its data offset; `accept`
/// as in [`index_of`].
pub fn index(path: &Path, accept: &dyn Fn(&str, bool) -> bool) -> io::Result<Vec<Entry>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    index_of(&mut file, len, accept).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a bundle this tool wrote: {e}", path.display())),
        _ => e,
    })
}

/// Reads the index of an archive of `len` bytes from `input` (see the module docs for
/// what is refused). `accept(name, is_directory)` is asked about each entry's full name
/// before anything about it is kept; `false` refuses the archive there.
pub fn index_of<R: Read + Seek>(input: &mut R, len: u64, accept: &dyn Fn(&str, bool) -> bool) -> io::Result<Vec<Entry>> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut entries = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut files: HashSet<String> = HashSet::new();
    let mut parents: HashSet<String> = HashSet::new();
    let mut pending_path: Option<String> = None;
    let mut at = 0u64;
    loop {
        if at.checked_add(BLOCK).is_none_or(|end| end > len) {
            return Err(bad("it ends without the end-of-archive marker (truncated?)".into()));
        }
        if names.len() + usize::from(pending_path.is_some()) > MAX_ENTRIES {
            return Err(bad(format!("it holds more than {MAX_ENTRIES} entries")));
        }
        let mut header = [0u8; 512];
        input.seek(SeekFrom::Start(at))?;
        input.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            if pending_path.is_some() {
                return Err(bad("a pax header at the end of the archive".into()));
            }
            only_zeros_after(input, at, len)?;
            return Ok(entries);
        }
        let stored = parse_octal(&header[148..156]).ok_or_else(|| bad(format!("unreadable header checksum at offset {at}")))?;
        let mut copy = header;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        if sum != stored {
            return Err(bad(format!("the tar header at offset {at} is corrupt (checksum)")));
        }
        let at_what = |why: String| bad(format!("the entry at offset {at}: {why}"));
        let size = parse_octal(&header[124..136]).ok_or_else(|| at_what("an unreadable size".into()))?;
        let mode = parse_octal(&header[100..108]).ok_or_else(|| at_what("an unreadable mode".into()))? as u32;
        let data = at + BLOCK;
        let end = data.checked_add(size.div_ceil(BLOCK) * BLOCK).filter(|&e| e <= len);
        let Some(next) = end.filter(|_| data + size <= len) else {
            return Err(at_what("it runs past the end of the file (truncated?)".into()));
        };
        let kind = header[156];
        if kind == b'x' {
            if pending_path.is_some() {
                return Err(at_what("two pax headers in a row".into()));
            }
            if size > MAX_PAX {
                return Err(at_what(format!("a pax header over {MAX_PAX} bytes")));
            }
            let mut pax = vec![0u8; size as usize];
            input.seek(SeekFrom::Start(data))?;
            input.read_exact(&mut pax)?;
            pending_path = Some(pax_path(&pax).map_err(at_what)?.unwrap_or_default());
            at = next;
            continue;
        }
        let name_raw = name_field(&header[..100]).map_err(at_what)?;
        let prefix_raw = name_field(&header[345..500]).map_err(at_what)?;
        let full = match &header[257..263] {
            b"ustar\0" if !prefix_raw.is_empty() => [prefix_raw, b"/", name_raw].concat(),
            b"ustar\0" => name_raw.to_vec(),
            // GNU's old format: GNU tar ignores the prefix field, so it must be empty.
            b"ustar " if &header[263..265] == b" \0" && prefix_raw.is_empty() => name_raw.to_vec(),
            _ => return Err(at_what("not a ustar header (or a GNU header with a prefix)".into())),
        };
        let header_name = String::from_utf8(full).map_err(|_| at_what("a name that is not UTF-8".into()))?;
        let had_pax = pending_path.is_some();
        let name = match pending_path.take() {
            Some(p) if !p.is_empty() => p,
            Some(_) => header_name,
            None => header_name,
        };
        let is_dir = match kind {
            b'0' | 0 => false,
            b'5' => true,
            other => return Err(at_what(format!("{name:?} is not a regular file or directory (type {:?})", other as char))),
        };
        let name = if is_dir { name.strip_suffix('/').unwrap_or(&name).to_string() } else { name };
        check_name(&name).map_err(|why| at_what(format!("{}: {why}", shown(&name))))?;
        if !accept(&name, is_dir) {
            let what = if is_dir { "the directory" } else { "" };
            return Err(at_what(format!("{what} {} is not an entry this archive may hold", shown(&name)).trim_start().to_string()));
        }
        if is_dir && size != 0 {
            return Err(at_what(format!("the directory {name:?} carries data")));
        }
        let ancestors: Vec<&str> = name.match_indices('/').map(|(i, _)| &name[..i]).collect();
        if names.contains(&name) || (!is_dir && parents.contains(&name)) || ancestors.iter().any(|a| files.contains(*a)) {
            return Err(at_what(format!("{name:?} appears twice (or is both a file and a directory)")));
        }
        parents.extend(ancestors.iter().map(|a| a.to_string()));
        names.insert(name.clone());
        if !is_dir {
            files.insert(name.clone());
            let text = |field: &[u8]| -> io::Result<String> {
                let raw = name_field(field).map_err(&at_what)?;
                String::from_utf8(raw.to_vec()).ok().filter(|t| !t.chars().any(char::is_control)).ok_or_else(|| at_what("an unreadable owner name".into()))
            };
            let uid = parse_octal(&header[108..116]).ok_or_else(|| at_what("an unreadable uid".into()))?;
            let gid = parse_octal(&header[116..124]).ok_or_else(|| at_what("an unreadable gid".into()))?;
            let (uname, gname) = (text(&header[265..297])?, text(&header[297..329])?);
            entries.push(Entry { name, offset: data, size, mode, uid, gid, uname, gname, pax: had_pax });
        }
        at = next;
    }
}

/// The end-of-archive marker at `at` must be two zero blocks, and only zero bytes may
/// follow it: readers that go on past a zero block (GNU tar `-i`, busybox) must find
/// nothing there either.
fn only_zeros_after<R: Read + Seek>(input: &mut R, at: u64, len: u64) -> io::Result<()> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if at + 2 * BLOCK > len {
        return Err(bad("its end-of-archive marker is a single zero block, not two (truncated?)"));
    }
    input.seek(SeekFrom::Start(at))?;
    let mut rest = input.take(len - at);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(bad("it holds data after its end-of-archive marker (an entry other tar readers would extract)"));
        }
    }
}

/// A reader over one entry's data.
pub fn open(path: &Path, entry: &Entry) -> io::Result<io::Take<File>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(entry.offset))?;
    Ok(file.take(entry.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::TempDir;

    const ANY: fn(&str, bool) -> bool = |_, _| true;

    #[test]
    fn written_archives_index_and_read_back_and_gnu_tar_agrees() {
        let scratch = TempDir::new("tar");
        let dir = scratch.path();
        let path = dir.join("a.tar");
        let mut w = Writer::new(File::create(&path).unwrap());
        w.append_bytes("a.txt", 0o644, b"hello").unwrap();
        w.append_bytes("dir/b.bin", 0o755, &vec![7u8; 1000]).unwrap();
        w.finish().unwrap();
        let entries = index(&path, &ANY).unwrap();
        assert_eq!(entries.iter().map(|e| (e.name.as_str(), e.size, e.mode)).collect::<Vec<_>>(), vec![("a.txt", 5, 0o644), ("dir/b.bin", 1000, 0o755)]);
        let mut text = String::new();
        open(&path, &entries[0]).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        let listed = std::process::Command::new("tar").arg("-tf").arg(&path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&listed.stdout), "a.txt\ndir/b.bin\n");
    }

    #[test]
    fn directory_entries_gnu_tar_writes_are_skipped() {
        let scratch = TempDir::new("tar-dirs");
        let dir = scratch.path();
        std::fs::create_dir_all(dir.join("in/blobs/sha256")).unwrap();
        std::fs::write(dir.join("in/blobs/sha256/abc"), b"blob").unwrap();
        std::fs::write(dir.join("in/index.json"), b"{}").unwrap();
        let path = dir.join("a.tar");
        let made = std::process::Command::new("tar").arg("-cf").arg(&path).arg("-C").arg(dir.join("in")).args(["blobs", "index.json"]).status().unwrap();
        assert!(made.success());
        let entries = index(&path, &ANY).unwrap();
        assert_eq!(entries.iter().map(|e| (e.name.as_str(), e.size)).collect::<Vec<_>>(), vec![("blobs/sha256/abc", 4), ("index.json", 2)]);
    }

    /// A raw header with any name, prefix, type and magic, and its padded data.
    pub(crate) fn raw(name: &[u8], prefix: &[u8], kind: u8, data: &[u8], magic: &[u8; 8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..265].copy_from_slice(magic);
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    pub(crate) const USTAR: &[u8; 8] = b"ustar\x0000";

    pub(crate) fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while format!("{n}{body}").len() != n {
                n += 1;
            }
            data.extend(format!("{n}{body}").bytes());
        }
        raw(b"PaxHeaders/x", b"", b'x', &data, USTAR)
    }

    fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = parts.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn read(bytes: &[u8]) -> io::Result<Vec<Entry>> {
        index_of(&mut io::Cursor::new(bytes), bytes.len() as u64, &ANY)
    }

    #[test]
    fn what_the_reader_sees_is_what_gnu_tar_lists_and_extracts() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let cases: Vec<Vec<u8>> = vec![
            archive(&[raw(b"offline-install", b"zz", b'0', b"from the prefix", USTAR), raw(b"plain", b"", b'0', b"plain", USTAR)]),
            archive(&[pax(&[("path", &long), ("mtime", "1")]), raw(b"ignored-ustar-name", b"", b'0', b"from the pax path", USTAR)]),
            archive(&[raw(b"dir/", b"", b'5', b"", USTAR), raw(b"dir/a", b"", 0, b"old regular type", b"ustar  \0")]),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let scratch = TempDir::new(&format!("tar-agree-{i}"));
            let dir = scratch.path();
            std::fs::create_dir_all(dir.join("x")).unwrap();
            let path = dir.join("a.tar");
            std::fs::write(&path, bytes).unwrap();
            let entries = index(&path, &ANY).unwrap();
            let listed = std::process::Command::new("tar").arg("-tf").arg(&path).output().unwrap();
            let tar_files: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().filter(|l| !l.ends_with('/')).map(String::from).collect();
            assert_eq!(entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), tar_files, "case {i}");
            assert!(std::process::Command::new("tar").arg("-xf").arg(&path).arg("-C").arg(dir.join("x")).status().unwrap().success());
            for e in &entries {
                let mut ours = Vec::new();
                open(&path, e).unwrap().read_to_end(&mut ours).unwrap();
                assert_eq!(std::fs::read(dir.join("x").join(&e.name)).unwrap(), ours, "case {i}: {}", e.name);
            }
        }
    }

    #[test]
    fn duplicate_names_nuls_paths_links_and_unknown_pax_keys_are_refused() {
        let file = |name: &[u8]| raw(name, b"", b'0', b"x", USTAR);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("twice", archive(&[file(b"offline-install"), file(b"offline-install")])),
            ("twice", archive(&[file(b"zz/offline-install"), raw(b"offline-install", b"zz", b'0', b"x", USTAR)])),
            ("twice", archive(&[pax(&[("path", "a")]), file(b"b"), file(b"a")])),
            ("file and a directory", archive(&[file(b"offline-install"), file(b"offline-install/x")])),
            ("file and a directory", archive(&[file(b"a/b"), file(b"a")])),
            ("NUL inside", archive(&[file(b"offline-install\0evil")])),
            ("NUL inside", archive(&[raw(b"f", b"p\0q", b'0', b"x", USTAR)])),
            ("absolute", archive(&[file(b"/etc/passwd")])),
            ("'..'", archive(&[file(b"a/../offline-install")])),
            ("'..'", archive(&[raw(b"x", b"..", b'0', b"x", USTAR)])),
            ("'..'", archive(&[file(b"./offline-install")])),
            ("'..'", archive(&[file(b"a//b")])),
            ("not a regular file", archive(&[raw(b"l", b"", b'2', b"", USTAR)])),
            ("not a regular file", archive(&[raw(b"l", b"", b'1', b"", USTAR)])),
            ("not a regular file", archive(&[raw(b"././@LongLink", b"", b'L', b"offline-install", b"ustar  \0"), file(b"x")])),
            ("not a regular file", archive(&[raw(b"g", b"", b'g', b"", USTAR), file(b"x")])),
            ("does not honour", archive(&[pax(&[("size", "0")]), file(b"x")])),
            ("does not honour", archive(&[pax(&[("linkpath", "y")]), file(b"x")])),
            ("does not honour", archive(&[pax(&[("GNU.sparse.name", "y")]), file(b"x")])),
            ("two pax paths", archive(&[pax(&[("path", "a"), ("path", "b")]), file(b"x")])),
            ("control character", archive(&[pax(&[("path", "a\u{1b}[2J")]), file(b"x")])),
            ("GNU header with a prefix", archive(&[raw(b"x", b"zz", b'0', b"x", b"ustar  \0")])),
            ("not a ustar header", archive(&[raw(b"x", b"", b'0', b"x", b"\0\0\0\0\0\0\0\0")])),
            ("pax header at the end", archive(&[pax(&[("path", "a")])])),
            ("carries data", archive(&[raw(b"d/", b"", b'5', b"data", USTAR)])),
        ];
        for (why, bytes) in cases {
            let e = read(&bytes).expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn numeric_fields_must_be_plain_octal() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"  644 \0"), Some(0o644));
        for bad in [&b"+000644\0"[..], b"0006 44\0", b"00008\0\0\0", &[0x80, 0, 0, 0, 0, 0, 0, 1]] {
            assert_eq!(parse_octal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn corrupt_header_and_truncation_are_reported() {
        let scratch = TempDir::new("tar-bad");
        let dir = scratch.path();
        let path = dir.join("a.tar");
        let mut w = Writer::new(File::create(&path).unwrap());
        w.append_bytes("a.txt", 0o644, b"hello").unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(index(&path, &ANY).unwrap_err().to_string().contains("corrupt"));
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes[..600]).unwrap();
        assert!(index(&path, &ANY).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn thousands_of_long_deep_names_are_refused_at_the_first_name_the_caller_does_not_expect() {
        // The review's attack: pax paths of ~4 KB and 2,000 components, each made the
        // reader store every ancestor (4 MB per entry) before the caller's name check.
        let mut parts = Vec::new();
        for i in 0..50 {
            parts.push(pax(&[("path", &format!("e{i:05}/{}f", "a/".repeat(2044)))]));
            parts.push(raw(b"x", b"", b'0', b"", USTAR));
        }
        let e = read(&archive(&parts)).unwrap_err().to_string();
        assert!(e.contains("over-long name"), "{e}");
        let seen = std::cell::Cell::new(0);
        let only_a = |name: &str, _: bool| {
            seen.set(seen.get() + 1);
            name == "a"
        };
        let bytes = archive(&[raw(b"a", b"", b'0', b"", USTAR), raw(b"b/c", b"", b'0', b"", USTAR), raw(b"d", b"", b'0', b"", USTAR)]);
        let e = index_of(&mut io::Cursor::new(&bytes), bytes.len() as u64, &only_a).unwrap_err().to_string();
        assert!(e.contains("\"b/c\" is not an entry this archive may hold") && seen.get() == 2, "{e}");
        let dirs = archive(&[raw(b"etc/", b"", b'5', b"", USTAR)]);
        let e = index_of(&mut io::Cursor::new(&dirs), dirs.len() as u64, &|_, dir| !dir).unwrap_err().to_string();
        assert!(e.contains("the directory \"etc\""), "{e}");
    }

    #[test]
    fn an_entry_after_the_end_marker_or_a_lone_zero_block_is_refused() {
        let tool = raw(b"offline-install", b"", b'0', b"good", USTAR);
        let evil = raw(b"offline-install2", b"", b'0', b"echo EVIL", USTAR);
        let after_marker = [archive(std::slice::from_ref(&tool)), evil.clone(), vec![0u8; 1024]].concat();
        let after_one_block = [tool.clone(), vec![0u8; 512], evil, vec![0u8; 1024]].concat();
        for (i, bytes) in [after_marker, after_one_block].iter().enumerate() {
            let e = read(bytes).unwrap_err().to_string();
            assert!(e.contains("after its end-of-archive marker"), "case {i}: {e}");
        }
        let lone = [tool.clone(), vec![0u8; 512]].concat();
        assert!(read(&lone).unwrap_err().to_string().contains("single zero block"));
        // GNU tar pads to its record size with zeros: still one archive.
        let padded = [archive(&[tool]), vec![0u8; 10240 - 2048]].concat();
        assert_eq!(read(&padded).unwrap().len(), 1);
    }

    #[test]
    fn each_entry_reports_its_mode_owner_and_pax_header() {
        let mut h = raw(b"t", b"", b'0', b"x", USTAR);
        h[100..107].copy_from_slice(b"0006777");
        h[108..115].copy_from_slice(b"0001750");
        h[265..271].copy_from_slice(b"nobody");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let entries = read(&archive(&[h, pax(&[("uid", "0")]), raw(b"u", b"", b'0', b"y", USTAR)])).unwrap();
        assert_eq!((entries[0].mode, entries[0].uid, entries[0].gid, entries[0].uname.as_str(), entries[0].pax), (0o6777, 1000, 0, "nobody", false));
        assert!(entries[1].pax && entries[1].uname.is_empty());
    }
}
