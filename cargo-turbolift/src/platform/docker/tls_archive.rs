//! A container's TLS files as the tar stream `docker cp - CONTAINER:/` unpacks into it:
//! `/etc/turbolift/tls/` (mode `0500`) holding `ca.crt`, `tls.crt` and `tls.key` (mode
//! `0400`), all owned by the containers' user 65532, so that the service, and no other
//! user of the container, reads them.
//!
//! `docker cp` without `--archive` keeps the owner each entry of the stream names (with
//! `--archive` it would look the containers' user up in the host's `/etc/passwd`, where
//! 65532 is usually missing, and fail). Four entries of fixed, short names make a plain
//! ustar stream, written here rather than with a tar crate.

use std::time::{SystemTime, UNIX_EPOCH};

use turbolift_shared::protocol::tls_in_container;

use crate::platform::image::CONTAINER_USER;

/// Mode of the folder: its owner lists and enters it.
const DIR_MODE: u32 = 0o500;
/// Mode of the files: read by their owner only.
const FILE_MODE: u32 = 0o400;
/// A tar block.
const BLOCK: usize = 512;

/// The authority's certificate, the service's certificate and its key, as a tar stream.
pub fn archive(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Vec<u8> {
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = Vec::with_capacity(8 * BLOCK + ca_pem.len() + cert_pem.len() + key_pem.len());
    let dir = format!("{}/", relative(tls_in_container::DIR));
    out.extend_from_slice(&header(&dir, DIR_MODE, 0, b'5', mtime));
    for (path, contents) in [
        (tls_in_container::CA, ca_pem),
        (tls_in_container::CERT, cert_pem),
        (tls_in_container::KEY, key_pem),
    ] {
        let bytes = contents.as_bytes();
        out.extend_from_slice(&header(
            relative(path),
            FILE_MODE,
            bytes.len() as u64,
            b'0',
            mtime,
        ));
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    // The end of the archive: two empty blocks.
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// A path of the container without its leading `/`, as tar names entries.
fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// A ustar header of an entry owned by the containers' user: `kind` `b'0'` for a file,
/// `b'5'` for a folder.
fn header(name: &str, mode: u32, size: u64, kind: u8, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    // The names are constants of the protocol, far shorter than the field's 100 bytes.
    let name = &name.as_bytes()[..name.len().min(99)];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], u64::from(CONTAINER_USER));
    octal(&mut h[116..124], u64::from(CONTAINER_USER));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is the sum of the header's bytes with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h
}

/// `value` in octal, zero-padded, filling `field` but its last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    let digits = &digits.as_bytes()[digits.len().saturating_sub(field.len() - 1)..];
    field[..digits.len()].copy_from_slice(digits);
    field[field.len() - 1] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_tar_reads_the_files_owned_by_the_containers_user() {
        let stream = archive("CA\n", "CERT\n", "-----KEY-----\n");
        assert_eq!(stream.len() % BLOCK, 0);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tls.tar");
        std::fs::write(&file, &stream).unwrap();
        let listed = std::process::Command::new("tar")
            .args(["--list", "--verbose", "--numeric-owner", "--file"])
            .arg(&file)
            .output()
            .expect("tar runs (GNU tar, on every Linux this runs on)");
        assert!(listed.status.success(), "{listed:?}");
        let listed = String::from_utf8(listed.stdout).unwrap();
        let lines: Vec<Vec<&str>> = listed
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let facts: Vec<(&str, &str, &str, &str)> = lines
            .iter()
            .map(|w| (w[0], w[1], w[2], *w.last().unwrap()))
            .collect();
        assert_eq!(
            facts,
            [
                ("dr-x------", "65532/65532", "0", "etc/turbolift/tls/"),
                ("-r--------", "65532/65532", "3", "etc/turbolift/tls/ca.crt"),
                (
                    "-r--------",
                    "65532/65532",
                    "5",
                    "etc/turbolift/tls/tls.crt"
                ),
                (
                    "-r--------",
                    "65532/65532",
                    "14",
                    "etc/turbolift/tls/tls.key"
                ),
            ],
            "{listed}"
        );
        let unpacked = std::process::Command::new("tar")
            .args(["--extract", "--to-stdout", "--file"])
            .arg(&file)
            .arg("etc/turbolift/tls/tls.key")
            .output()
            .unwrap();
        assert_eq!(unpacked.stdout, b"-----KEY-----\n");
    }
}
