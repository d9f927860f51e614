//! Reading the local files the agent is pointed at (the private key, the Job policy, CA
//! bundles, the service-account token, `render`'s input), always bounded: a path set to
//! `/dev/zero`, a huge file or a FIFO nobody writes to must end in a clear error, not in
//! unbounded memory or a hang. Every file the agent reads goes through [`read_capped`];
//! each caller names its cap (the constants below) and wraps the error with the setting
//! that named the file. It does not decide what a file means, nor write files.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest private key file read. An Ed25519 PKCS#8 PEM is 119 bytes.
pub const PRIVATE_KEY_CAP: u64 = 16 << 10;
/// Largest service-account token file read. A bound token is about 1 KiB.
pub const TOKEN_CAP: u64 = 64 << 10;
/// Largest CA bundle read (one file, or all of `SSL_CERT_DIR` together). Mozilla's whole
/// bundle is about 220 KiB; a Debian `/etc/ssl/certs` about 650 KiB.
pub const CA_BUNDLE_CAP: u64 = 4 << 20;
/// Largest `JOB_POLICY_FILE` read. A policy is a few hundred bytes of Job template.
pub const POLICY_CAP: u64 = 1 << 20;
/// Largest small file read (the pod's namespace file holds one name).
pub const NAME_FILE_CAP: u64 = 4 << 10;
/// Most entries of one `SSL_CERT_DIR` directory looked at. Debian's holds about 300.
pub const CERT_DIR_ENTRIES_CAP: usize = 4096;

/// Reads at most `cap` bytes of `path`; a longer file is an error of kind
/// `FileTooLarge` naming `what` and the cap, read no further than `cap + 1` bytes. The
/// file is opened without blocking, so a FIFO with no writer reads as empty instead of
/// hanging the agent at start-up; a pipe with a writer (`<(cat key.pem)`) still works.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    // Reads block again from here on: a writer that is slow to start is waited for.
    // SAFETY: fcntl on a descriptor this function owns, with flags it just read.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    read_capped_from(file, cap, what)
}

/// [`read_capped`] for a text file: bytes that are not UTF-8 are an `InvalidData` error.
pub fn read_capped_text(path: &Path, cap: u64, what: &str) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap, what)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// [`read_capped`] for an open reader, e.g. standard input.
pub fn read_capped_from(reader: impl Read, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("larger than {}, the most the agent reads from {what}; refusing it", size(cap))));
    }
    Ok(bytes)
}

/// The contents of the regular files of certificate directories (`SSL_CERT_DIR`), each
/// file once (the hash-named links of `c_rehash` point at files read already). Anything
/// that is not a regular file (a FIFO, a device, a socket, a subdirectory) is skipped, a
/// directory of more than [`CERT_DIR_ENTRIES_CAP`] entries is an error, and all files of
/// all directories together are read within [`CA_BUNDLE_CAP`]; an unreadable file is
/// skipped. Errors name the directory or file.
pub fn read_cert_dirs<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> io::Result<Vec<Vec<u8>>> {
    let mut budget = CA_BUNDLE_CAP;
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display())))?;
        for (index, entry) in entries.enumerate() {
            if index >= CERT_DIR_ENTRIES_CAP {
                let why = format!("{} has more than {CERT_DIR_ENTRIES_CAP} entries; refusing to read them all", dir.display());
                return Err(io::Error::new(io::ErrorKind::FileTooLarge, why));
            }
            let Ok(entry) = entry else { continue };
            // Follows links (such a directory is mostly links) and reads what they reach
            // only when it is a regular file.
            let path = entry.path();
            let Ok(real) = std::fs::canonicalize(&path) else { continue };
            if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) || !seen.insert(real.clone()) {
                continue;
            }
            // An unreadable file is skipped, as OpenSSL skips it.
            match read_capped(&real, budget, "the rest") {
                Ok(bytes) => {
                    budget -= bytes.len() as u64;
                    out.push(bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                    let why = format!("with {} the certificate directories hold more than {} in all; refusing them", path.display(), size(CA_BUNDLE_CAP));
                    return Err(io::Error::new(io::ErrorKind::FileTooLarge, why));
                }
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

/// `16 KiB`, `4 MiB`, or bytes.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scratch::TempDir;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{}", io::Error::last_os_error());
    }

    #[test]
    fn dev_zero_is_refused_after_reading_one_byte_past_the_cap() {
        let e = read_capped(Path::new("/dev/zero"), 16 << 10, "a private key file").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "larger than 16 KiB, the most the agent reads from a private key file; refusing it");
    }

    #[test]
    fn a_file_of_exactly_the_cap_is_read_whole() {
        let dir = TempDir::new("file-exact");
        let path = dir.join("f");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_capped(&path, 100, "f").unwrap().len(), 100);
        assert_eq!(read_capped(&path, 99, "f").unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn a_fifo_without_a_writer_reads_as_empty_instead_of_hanging() {
        let dir = TempDir::new("file-fifo");
        let path = dir.join("fifo");
        mkfifo(&path);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(read_capped(&p, 1024, "f").map(|b| b.len())).unwrap());
        let got = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("read_capped returned within 5 s");
        assert_eq!(got.unwrap(), 0);
    }

    #[test]
    fn a_cert_dir_reads_regular_files_once_and_skips_fifos_and_devices() {
        let dir = TempDir::new("file-certdir");
        std::fs::write(dir.join("a.pem"), "A").unwrap();
        std::os::unix::fs::symlink(dir.join("a.pem"), dir.join("1234abcd.0")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.pem")).unwrap();
        mkfifo(&dir.join("fifo.pem"));
        std::fs::create_dir(dir.join("sub")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.0.clone();
        std::thread::spawn(move || tx.send(read_cert_dirs([d.as_path(), d.as_path()])).unwrap());
        let files = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("no hang on the FIFO").unwrap();
        assert_eq!(files, vec![b"A".to_vec()]);
    }

    #[test]
    fn cert_dirs_are_read_within_one_budget_and_a_bounded_number_of_entries() {
        let dir = TempDir::new("file-budget");
        let big = vec![b'x'; (CA_BUNDLE_CAP / 2) as usize + 1];
        for i in 0..2 {
            std::fs::write(dir.join(format!("{i}.pem")), &big).unwrap();
        }
        let e = read_cert_dirs([dir.path()]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        assert!(e.to_string().contains("the certificate directories hold more than 4 MiB in all"), "{e}");
        std::fs::remove_file(dir.join("1.pem")).unwrap();
        for i in 1..=CERT_DIR_ENTRIES_CAP {
            std::fs::write(dir.join(format!("{i}.pem")), "").unwrap();
        }
        let e = read_cert_dirs([dir.path()]).unwrap_err();
        assert!(e.to_string().ends_with("has more than 4096 entries; refusing to read them all"), "{e}");
    }
}
