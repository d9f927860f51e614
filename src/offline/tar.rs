//! Just enough ustar for the bundle: regular files with paths of at most 100 bytes,
//! written once, then read by random access (an index of entry offsets), so a blob is
//! streamed straight from the bundle file without unpacking it. Not supported: links,
//! long names, pax headers, sparse files; a header with a bad checksum is an error.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

const BLOCK: u64 = 512;

/// One entry of a tar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub name: String,
    /// Offset of the data in the archive file.
    pub offset: u64,
    /// Data length.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
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

    /// Appends `size` bytes read from `data` under `name`.
    pub fn append(&mut self, name: &str, mode: u32, size: u64, data: &mut dyn Read) -> io::Result<()> {
        if name.len() > 100 || name.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar path '{name}' is empty or longer than 100 bytes")));
        }
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
        self.out.write_all(&header)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name}: expected {size} bytes, read {copied}")));
        }
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        self.out.write_all(&vec![0u8; pad as usize])?;
        self.written += BLOCK + size + pad;
        Ok(())
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

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Reads the index of an archive: every regular file with its data offset (directory
/// entries are skipped; any other kind of entry is refused).
pub fn index(path: &Path) -> io::Result<Vec<Entry>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a bundle this tool wrote: {why}", path.display()));
    let mut entries = Vec::new();
    let mut at = 0u64;
    loop {
        if at + BLOCK > len {
            return Err(bad("it ends without the end-of-archive marker (truncated?)".into()));
        }
        let mut header = [0u8; 512];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let stored = parse_octal(&header[148..156]).ok_or_else(|| bad(format!("unreadable header checksum at offset {at}")))?;
        let mut copy = header;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        if sum != stored {
            return Err(bad(format!("the tar header at offset {at} is corrupt (checksum)")));
        }
        let name: String = String::from_utf8_lossy(&header[..100]).trim_end_matches('\0').to_string();
        let size = parse_octal(&header[124..136]).ok_or_else(|| bad(format!("unreadable size of {name}")))?;
        let mode = parse_octal(&header[100..108]).unwrap_or(0o644) as u32;
        // Directory entries (other tools write them, e.g. an OCI archive) carry no data.
        if header[156] == b'5' && size == 0 {
            at += BLOCK;
            continue;
        }
        if header[156] != b'0' && header[156] != 0 {
            return Err(bad(format!("{name} is not a regular file")));
        }
        if at + BLOCK + size > len {
            return Err(bad(format!("{name} runs past the end of the file (truncated?)")));
        }
        entries.push(Entry { name, offset: at + BLOCK, size, mode });
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
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

    #[test]
    fn written_archives_index_and_read_back_and_gnu_tar_agrees() {
        let dir = std::env::temp_dir().join(format!("ka-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.tar");
        let mut w = Writer::new(File::create(&path).unwrap());
        w.append_bytes("a.txt", 0o644, b"hello").unwrap();
        w.append_bytes("dir/b.bin", 0o755, &vec![7u8; 1000]).unwrap();
        w.finish().unwrap();
        let entries = index(&path).unwrap();
        assert_eq!(entries.iter().map(|e| (e.name.as_str(), e.size, e.mode)).collect::<Vec<_>>(), vec![("a.txt", 5, 0o644), ("dir/b.bin", 1000, 0o755)]);
        let mut text = String::new();
        open(&path, &entries[0]).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        let listed = std::process::Command::new("tar").arg("-tf").arg(&path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&listed.stdout), "a.txt\ndir/b.bin\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_entries_gnu_tar_writes_are_skipped() {
        let dir = std::env::temp_dir().join(format!("ka-tar-dirs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("in/blobs/sha256")).unwrap();
        std::fs::write(dir.join("in/blobs/sha256/abc"), b"blob").unwrap();
        std::fs::write(dir.join("in/index.json"), b"{}").unwrap();
        let path = dir.join("a.tar");
        let made = std::process::Command::new("tar").arg("-cf").arg(&path).arg("-C").arg(dir.join("in")).args(["blobs", "index.json"]).status().unwrap();
        assert!(made.success());
        let entries = index(&path).unwrap();
        assert_eq!(entries.iter().map(|e| (e.name.as_str(), e.size)).collect::<Vec<_>>(), vec![("blobs/sha256/abc", 4), ("index.json", 2)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_header_and_truncation_are_reported() {
        let dir = std::env::temp_dir().join(format!("ka-tar-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.tar");
        let mut w = Writer::new(File::create(&path).unwrap());
        w.append_bytes("a.txt", 0o644, b"hello").unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(index(&path).unwrap_err().to_string().contains("corrupt"));
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes[..600]).unwrap();
        assert!(index(&path).unwrap_err().to_string().contains("truncated"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
