//! Large bodies through shared memory, between a program and services on one machine.
//!
//! `cargo turbolift run` gives the program and the services of a local run one directory
//! on a tmpfs ([`env::SHM_DIR`], mode `0700`). A *region* is a file there (mode `0600`,
//! a random 128-bit name) that its creator maps and writes into. A call whose encoded
//! arguments are at least [`MIN_LEN`] long writes them into a region of the program's and
//! sends its name and their length in a header with an empty body
//! ([`protocol::SHM_ARGS_HEADER`]); the service maps it and decodes from it. A call may
//! offer a region for its result ([`protocol::SHM_REPLY_HEADER`]); a service whose result
//! is that long writes it there and answers with its length
//! ([`protocol::SHM_RESULT_HEADER`]). Every region is the program's: it creates them, and
//! keeps a few for later calls once an answer says the service is done with them, so
//! their memory is allocated once and not at every call (a fresh 10 MiB of a tmpfs costs
//! about as much as copying it twice). A region of a call that has no answer (a timeout,
//! a dropped call, a lost connection) is removed and never used again.
//!
//! Each side copies a body once: the sender into the region, the receiver out of it into
//! its own buffer (a byte buffer alone) or while decoding (anything else); a
//! `bytes::Bytes` result is its region, lent until dropped ([`Region::lend`]). No socket,
//! no kernel copy.
//!
//! [`env::SHM_DIR`]: turbolift_shared::protocol::env::SHM_DIR
//! [`protocol::SHM_ARGS_HEADER`]: turbolift_shared::protocol::SHM_ARGS_HEADER
//! [`protocol::SHM_REPLY_HEADER`]: turbolift_shared::protocol::SHM_REPLY_HEADER
//! [`protocol::SHM_RESULT_HEADER`]: turbolift_shared::protocol::SHM_RESULT_HEADER

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::{MmapMut, MmapOptions};

use crate::wire::Encoded;

/// Bodies at least this long go through shared memory when both ends have a directory:
/// below it, a region's system calls cost more than the socket's copies.
pub const MIN_LEN: usize = 256 * 1024;
/// Free regions a program keeps for later calls.
const KEPT: usize = 8;
/// A region larger than this is removed after its call instead of kept.
const KEPT_MAX_LEN: usize = 64 << 20;

/// The directory of a run, checked: a directory of this user that no one else may enter.
#[derive(Debug)]
pub(crate) struct ShmDir {
    path: PathBuf,
    /// Regions whose last call was answered, for the next calls.
    free: Mutex<Vec<Region>>,
}

impl ShmDir {
    /// The directory at `path`, if this process may use it (see [`check_dir`]).
    pub(crate) fn open(path: &Path) -> Result<ShmDir, String> {
        check_dir(path)?;
        Ok(ShmDir {
            path: path.to_owned(),
            free: Mutex::new(Vec::new()),
        })
    }

    /// The process's one `ShmDir` for `path` (a program keeps its regions per directory).
    pub(crate) fn shared(path: &Path) -> Result<Arc<ShmDir>, String> {
        static DIRS: Mutex<Vec<Arc<ShmDir>>> = Mutex::new(Vec::new());
        let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = dirs.iter().find(|d| d.path == path) {
            return Ok(dir.clone());
        }
        let dir = Arc::new(ShmDir::open(path)?);
        dirs.push(dir.clone());
        Ok(dir)
    }

    /// A free region, or a new empty one.
    pub(crate) fn take(&self) -> io::Result<Region> {
        let kept = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(region) => Ok(region),
            None => Region::create(&self.path),
        }
    }

    /// A region holding `body`.
    pub(crate) fn holding(&self, body: &Encoded) -> io::Result<Region> {
        let mut region = self.take()?;
        region.write(&[&body.head, &body.tail])?;
        Ok(region)
    }

    /// Keeps `region`, whose call was answered, for a later call (or removes it).
    pub(crate) fn give_back(&self, region: Region) {
        if region.allocated > KEPT_MAX_LEN {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < KEPT {
            free.push(region);
        }
    }
}

/// Whether `path` is a directory this process may use for regions: a directory (not a
/// link to one) of this user, with no permission for anyone else.
pub fn check_dir(path: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(format!(
            "{} belongs to user {}, not to this process's user {uid}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {mode:o}: others may enter it (it must be 0700)",
            path.display()
        ));
    }
    Ok(())
}

/// A file of the directory, created and owned by this process, mapped once it holds
/// something. Removed from the directory when dropped.
#[derive(Debug)]
pub(crate) struct Region {
    name: String,
    path: PathBuf,
    file: File,
    /// Bytes allocated to the file (it never shrinks while the region lives).
    allocated: usize,
    map: Option<MmapMut>,
}

impl Region {
    fn create(dir: &Path) -> io::Result<Region> {
        let mut random = [0u8; 16];
        File::open("/dev/urandom")?.read_exact(&mut random)?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Region {
            name,
            path,
            file,
            allocated: 0,
            map: None,
        })
    }

    /// The region's name in its directory, as the headers carry it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Writes `parts`, one after the other, at the start of the region. The memory is
    /// allocated first, so that a full tmpfs is an error here rather than a `SIGBUS` at a
    /// write into the mapping.
    pub(crate) fn write(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.allocated {
            allocate(&self.file, len)?;
            self.allocated = len;
        }
        copy_parts(&mut self.mapped(len)?[..len], parts);
        Ok(())
    }

    /// The region mapped, at least its first `len` bytes (which are allocated).
    fn mapped(&mut self, len: usize) -> io::Result<&mut MmapMut> {
        if self.map.as_ref().is_none_or(|m| m.len() < len) {
            self.map = None;
            self.map = Some(map_mut(&self.file, self.allocated)?);
        }
        Ok(self.map.as_mut().expect("mapped above"))
    }

    /// The first `len` bytes of the region, which a service wrote (see [`write_result`]),
    /// lent where they lie: decoding reads them from the region (a `bytes::Bytes` result
    /// is them), and the region goes back to `dir`'s free ones when the last `Bytes` of
    /// them is dropped; no one writes into it until then.
    pub(crate) fn lend(mut self, dir: Arc<ShmDir>, len: usize) -> io::Result<Bytes> {
        let size = usize::try_from(self.file.metadata()?.len()).unwrap_or(usize::MAX);
        if len > size {
            return Err(io::Error::other(format!(
                "the answer says its result is {len} bytes long, but its region holds {size}"
            )));
        }
        self.allocated = self.allocated.max(size);
        self.mapped(len)?;
        Ok(Bytes::from_owner(Lent {
            region: Some(self),
            dir,
            len,
        }))
    }
}

/// A region's first `len` bytes, lent out as `Bytes` (see [`Region::lend`]).
struct Lent {
    region: Option<Region>,
    dir: Arc<ShmDir>,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        let map = self.region.as_ref().and_then(|r| r.map.as_ref());
        map.map_or(&[], |map| &map[..self.len])
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(region) = self.region.take() {
            self.dir.give_back(region);
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // A service may still hold it mapped: its memory goes when the last mapping does.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A byte buffer's encoding copied out of `bytes`: its bytes in a buffer of their own,
/// which its `Vec` will be (see `wire::decode_received`); anything else whole.
#[cfg(feature = "service")]
fn byte_buffer_copy(bytes: &[u8]) -> Encoded {
    match crate::wire::byte_buffer_start(bytes) {
        Some(at) => Encoded {
            head: Bytes::copy_from_slice(&bytes[..at]),
            tail: Bytes::from(bytes[at..].to_vec()),
        },
        None => Encoded::whole(Bytes::copy_from_slice(bytes)),
    }
}

/// Reads the arguments a program wrote into region `name` of `dir`: `len` bytes.
///
/// A byte buffer alone (`byte_buffer`) is copied into a buffer of its own; anything else
/// is decoded straight from the mapping, which the returned encoding holds (postcard
/// decodes into owned values, so nothing decoded points into it).
#[cfg(feature = "service")]
pub fn read_arguments(
    dir: &Path,
    name: &str,
    len: usize,
    byte_buffer: bool,
) -> Result<Encoded, String> {
    let (file, size) = open_region(dir, name, false)?;
    if len > size {
        return Err(format!(
            "region {name} holds {size} bytes, fewer than the {len} announced"
        ));
    }
    if len == 0 {
        return Ok(Encoded::default());
    }
    // SAFETY: the region is the program's, which does not write into it until this call
    // is answered (see the module's documentation); nothing else may enter the directory.
    let map: memmap2::Mmap = unsafe { MmapOptions::new().len(len).populate().map(&file) }
        .map_err(|e| format!("cannot map the region of the arguments: {e}"))?;
    if byte_buffer {
        return Ok(byte_buffer_copy(&map));
    }
    Ok(Encoded::whole(Bytes::from_owner(map)))
}

/// Writes a result into region `name` of `dir`, which the program offered.
#[cfg(feature = "service")]
pub fn write_result(dir: &Path, name: &str, result: &Encoded) -> Result<(), String> {
    let (file, size) = open_region(dir, name, true)?;
    let len = result.len();
    if size < len {
        allocate(&file, len).map_err(|e| format!("cannot allocate {len} bytes: {e}"))?;
    }
    let mut map = map_mut(&file, len).map_err(|e| format!("cannot map the region: {e}"))?;
    copy_parts(&mut map, &[&result.head, &result.tail]);
    Ok(())
}

/// Opens region `name` of `dir`, and says how long it is: a name as [`Region::create`]
/// makes them (so no path leads out of the directory), a regular file of this user, not a
/// link.
#[cfg(feature = "service")]
fn open_region(dir: &Path, name: &str, write: bool) -> Result<(File, usize), String> {
    let well_formed = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(format!("`{name}` is not the name of a region"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(name))
        .map_err(|e| format!("cannot open region {name}: {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    if !meta.is_file() || meta.uid() != unsafe { libc::geteuid() } {
        return Err(format!("region {name} is not a file of this user"));
    }
    Ok((file, usize::try_from(meta.len()).unwrap_or(usize::MAX)))
}

/// Allocates the first `len` bytes of `file` (and makes it that long if it is shorter).
fn allocate(file: &File, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: a plain system call on an open descriptor.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn map_mut(file: &File, len: usize) -> io::Result<MmapMut> {
    // SAFETY: a region is written by one side at a time, as the module's documentation
    // says, and its file never shrinks while mapped: the memory stays valid.
    unsafe { MmapOptions::new().len(len).populate().map_mut(file) }
}

fn copy_parts(to: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for part in parts {
        to[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn temp_dir(mode: u32) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("turbolift-shm-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn arguments_and_results_travel_through_regions_that_are_kept() {
        let path = temp_dir(0o700);
        let dir = ShmDir::open(&path).unwrap();
        let data: Vec<u8> = (0..MIN_LEN * 2).map(|i| (i % 251) as u8).collect();
        let args = wire::encode_owned((data.clone(),)).unwrap();
        let region = dir.holding(&args).unwrap();
        let mode = std::fs::metadata(path.join(region.name())).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The service's side: the arguments as a byte buffer, and as a whole encoding.
        let read = read_arguments(&path, region.name(), args.len(), true).unwrap();
        let (back,): (Vec<u8>,) = wire::decode_received(read).unwrap();
        assert_eq!(back, data);
        let read = read_arguments(&path, region.name(), args.len(), false).unwrap();
        assert_eq!(
            wire::decode_received::<(Vec<u8>,)>(read).unwrap().0.len(),
            data.len()
        );
        // A result longer than the region: the service makes it longer.
        let dir = Arc::new(dir);
        let reply = dir.take().unwrap();
        let reply_name = reply.name().to_owned();
        let result = wire::encode_owned([data.clone(), data.clone()].concat()).unwrap();
        write_result(&path, reply.name(), &result).unwrap();
        let lent = reply.lend(dir.clone(), result.len()).unwrap();
        let back: Vec<u8> = wire::decode_received(Encoded::whole(lent.clone())).unwrap();
        assert_eq!(back, [data.clone(), data.clone()].concat());
        // Lent until the last `Bytes` of it goes, then kept; the arguments' region too.
        assert!(dir.free.lock().unwrap().is_empty());
        drop(lent);
        assert_eq!(dir.free.lock().unwrap().len(), 1);
        let names = [region.name().to_owned(), reply_name];
        dir.give_back(region);
        let again = dir.take().unwrap();
        assert!(names.contains(&again.name().to_owned()));
        // A region dropped is gone from the directory.
        let gone = path.join(again.name());
        drop(again);
        assert!(!gone.exists());
        drop(dir);
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_directory_others_may_enter_and_bad_names_are_refused() {
        let open = temp_dir(0o755);
        let error = ShmDir::open(&open).unwrap_err();
        assert!(error.contains("mode 755"), "{error}");
        std::fs::remove_dir_all(&open).unwrap();
        let path = temp_dir(0o700);
        for name in ["../../etc/passwd", "", "0123456789abcdef0123456789abcdeg"] {
            let error = read_arguments(&path, name, 1, false).unwrap_err();
            assert!(error.contains("is not the name of a region"), "{error}");
        }
        let missing = "0123456789abcdef0123456789abcdef";
        let error = read_arguments(&path, missing, 1, false).unwrap_err();
        assert!(error.starts_with("cannot open region"), "{error}");
        // A region shorter than announced.
        let dir = ShmDir::open(&path).unwrap();
        let region = dir
            .holding(&Encoded::whole(Bytes::from_static(b"abc")))
            .unwrap();
        let error = read_arguments(&path, region.name(), 4, false).unwrap_err();
        assert!(error.contains("fewer than the 4 announced"), "{error}");
        // A link is not followed.
        let link = "fedcba9876543210fedcba9876543210";
        std::os::unix::fs::symlink(path.join(region.name()), path.join(link)).unwrap();
        assert!(read_arguments(&path, link, 3, false).is_err());
        drop(region);
        drop(dir);
        std::fs::remove_dir_all(&path).unwrap();
    }
}
