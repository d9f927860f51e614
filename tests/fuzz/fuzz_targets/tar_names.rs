//! The bundle's tar reader against a model of how GNU tar names an entry (pax `path`,
//! else ustar `prefix` + "/" + `name` when the magic is "ustar\0", each field up to its
//! first NUL). The input describes entries (type, magic, name, prefix, pax path, data),
//! built into an archive with valid checksums, or (first byte odd) is read as raw bytes.
//! Knobs (second byte) append data after the end marker (which must then be refused) and
//! give the reader a caller's name rule (only names not starting with `a`), which every
//! accepted entry must satisfy. Whatever the reader accepts must be named as GNU tar names
//! it, be relative, free of NULs and `..`, unique, at most 256 bytes and 8 components, and
//! lie inside the archive; nothing panics.
#![no_main]
use std::collections::HashSet;
use std::io::Cursor;

use kubernetes_agent::offline::tar;
use libfuzzer_sys::fuzz_target;

fn field(bytes: &[u8], at: usize, len: usize) -> &[u8] {
    let f = &bytes[at..at + len];
    &f[..f.iter().position(|&b| b == 0).unwrap_or(len)]
}

fn header(name: &[u8], prefix: &[u8], kind: u8, magic: &[u8; 8], size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..107].copy_from_slice(b"0000644");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[156] = kind;
    h[257..265].copy_from_slice(magic);
    h[345..345 + prefix.len().min(155)].copy_from_slice(&prefix[..prefix.len().min(155)]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    if data[0] % 2 == 1 {
        let bytes = &data[1..];
        if let Ok(entries) = tar::index_of(&mut Cursor::new(bytes), bytes.len() as u64, &|_, _| true) {
            check(&entries, bytes.len() as u64, None);
        }
        return;
    }
    if data.len() < 2 {
        return;
    }
    let (trailing, ruled) = (data[1] & 1 == 1, data[1] & 2 == 2);
    // Entries separated by 0xff; fields of one entry by 0xfe: [type, magic, pax?] name prefix pax-path data.
    let mut archive = Vec::new();
    let mut expected = Vec::new();
    for record in data[2..].split(|&b| b == 0xff).take(64) {
        if record.len() < 3 {
            continue;
        }
        let kind = [b'0', 0, b'5', b'2', b'1', b'L', b'g', b'7'][record[0] as usize % 8];
        let magic: &[u8; 8] = [b"ustar\x0000", b"ustar  \0", b"ustar\0xx", b"\0\0\0\0\0\0\0\0"][record[1] as usize % 4];
        let with_pax = record[2] % 3 == 0;
        let mut fields = record[3..].split(|&b| b == 0xfe);
        let (name, prefix, pax_path, body) =
            (fields.next().unwrap_or(b""), fields.next().unwrap_or(b""), fields.next().unwrap_or(b""), fields.next().unwrap_or(b""));
        if with_pax {
            let mut rec = format!(" path={}\n", String::from_utf8_lossy(pax_path)).into_bytes();
            let mut n = rec.len() + 1;
            while format!("{n}").len() + rec.len() != n {
                n += 1;
            }
            let mut pax = format!("{n}").into_bytes();
            pax.append(&mut rec);
            archive.extend_from_slice(&header(b"PaxHeaders/x", b"", b'x', b"ustar\x0000", pax.len()));
            archive.extend_from_slice(&pax);
            pad(&mut archive);
        }
        let h = header(name, prefix, kind, magic, body.len());
        let gnu = {
            let (n, p) = (field(&h, 0, 100), field(&h, 345, 155));
            let joined = if &h[257..263] == b"ustar\0" && !p.is_empty() { [p, b"/", n].concat() } else { n.to_vec() };
            let pax = String::from_utf8_lossy(pax_path).into_owned().into_bytes();
            if with_pax && !pax.is_empty() {
                pax
            } else {
                joined
            }
        };
        let offset = archive.len() as u64 + 512;
        archive.extend_from_slice(&h);
        archive.extend_from_slice(body);
        pad(&mut archive);
        if matches!(kind, b'0' | 0) {
            expected.push((gnu, offset, body.len() as u64));
        }
    }
    archive.extend_from_slice(&[0u8; 1024]);
    if trailing {
        archive.extend_from_slice(&header(b"offline-install", b"", b'0', b"ustar\x0000", 0));
        archive.extend_from_slice(&[0u8; 1024]);
    }
    let rule = |name: &str, _: bool| !ruled || !name.starts_with('a');
    let result = tar::index_of(&mut Cursor::new(&archive), archive.len() as u64, &rule);
    if trailing {
        assert!(result.is_err(), "an entry after the end marker was not refused");
    } else if let Ok(entries) = result {
        assert!(entries.iter().all(|e| rule(&e.name, false)), "an entry the caller refuses was accepted");
        if !ruled {
            check(&entries, archive.len() as u64, Some(&expected));
        } else {
            check(&entries, archive.len() as u64, None);
        }
    }
});

fn check(entries: &[tar::Entry], len: u64, expected: Option<&Vec<(Vec<u8>, u64, u64)>>) {
    let mut names = HashSet::new();
    for e in entries {
        assert!(tar::check_name(&e.name).is_ok(), "accepted {:?}", e.name);
        assert!(!e.name.contains('\0') && !e.name.starts_with('/') && !e.name.split('/').any(|c| c == ".."), "{:?}", e.name);
        assert!(names.insert(e.name.clone()), "duplicate {:?}", e.name);
        assert!(e.offset + e.size <= len);
    }
    for e in entries {
        let mut at = 0;
        while let Some(i) = e.name[at..].find('/') {
            assert!(!names.contains(&e.name[..at + i]), "{:?} is a file and a directory", &e.name[..at + i]);
            at += i + 1;
        }
    }
    if let Some(expected) = expected {
        let ours: Vec<(Vec<u8>, u64, u64)> = entries.iter().map(|e| (e.name.as_bytes().to_vec(), e.offset, e.size)).collect();
        assert_eq!(&ours, expected, "the reader names or places an entry differently from GNU tar");
    }
}
