//! The on-disk spool: append-only segment files of checksummed, length-prefixed records.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload` (a protobuf `UsageReport`).
//! Segments are named `usage-<seq>.spool`; a process only ever appends to a segment it created
//! itself, so a torn write (SIGKILL mid-`write`, or a failed write) can only sit at the tail of
//! a sealed segment, where the reader detects it (short frame or bad checksum) and stops.
//!
//! Durability: `append` is a plain `write` (no `fsync` on the hot path); [`Spool::sync`] is
//! called by a background task every [`super::SYNC_INTERVAL`]. A killed process loses nothing
//! (the page cache survives it); a machine crash may lose the last sync interval.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::crc32::crc32;

/// Bytes before a record's payload.
const HEADER: usize = 8;
/// A payload larger than this is corruption, not a report.
const MAX_RECORD: u32 = 1 << 20;
/// Bytes the reader takes from a segment per `read(2)`.
const READ_BUFFER: usize = 64 * 1024;
/// The file whose lock marks the directory as in use.
const LOCK: &str = "lock";
/// Where the sender's progress is remembered between runs.
const CHECKPOINT: &str = "checkpoint";
/// Reports the control plane refused for good, kept (in the segments' record format) for an
/// operator to look at; never read back by the sender.
pub const SET_ASIDE: &str = "quarantine.spool";

/// A position in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The segment's sequence number.
    pub seq: u64,
    /// Bytes into it.
    pub offset: u64,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The spool holds its cap already.
    #[error("the usage spool is full ({0} bytes)")]
    Full(u64),
    /// The disk refused the write.
    #[error("the usage spool cannot be written: {0}")]
    Io(#[from] io::Error),
}

struct Writer {
    file: Arc<File>,
    seq: u64,
    len: u64,
    /// Set when a failed write may have left a partial frame: the next append starts a new
    /// segment so that nothing valid ever follows garbage.
    poisoned: bool,
    dirty: bool,
    /// Sealed segments whose last writes are not synced yet.
    unsynced: Vec<Arc<File>>,
    frame: Vec<u8>,
}

/// An append-only spool directory.
pub struct Spool {
    /// Held (an exclusive `flock`) while the spool is open.
    _lock: File,
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Bytes held by every segment on disk.
    bytes: AtomicU64,
    cap: u64,
    segment_bytes: u64,
}

impl Spool {
    /// Opens `dir` (created if missing) and starts a fresh segment after every existing one.
    /// Fails when another process (a second data plane, or one still draining) holds it: two
    /// writers in one directory would take each other's segments and acknowledgements.
    pub fn open(dir: &Path, cap: u64, segment_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK))?;
        lock.try_lock().map_err(|error| match error {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("{} is in use by another data plane; give each its own --spool-dir", dir.display()),
            ),
            fs::TryLockError::Error(error) => error,
        })?;
        let segments = segments(dir)?;
        let mut bytes = 0;
        for &seq in &segments {
            bytes += fs::metadata(segment_path(dir, seq))?.len();
        }
        let seq = segments.last().map_or(1, |last| last + 1);
        let file = create_segment(dir, seq)?;
        let writer = Writer {
            file: Arc::new(file),
            seq,
            len: 0,
            poisoned: false,
            dirty: false,
            unsynced: Vec::new(),
            frame: Vec::with_capacity(512),
        };
        Ok(Spool {
            _lock: lock,
            dir: dir.to_owned(),
            writer: Mutex::new(writer),
            bytes: AtomicU64::new(bytes),
            cap,
            segment_bytes,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record: `encode` writes the payload into the buffer it is given.
    pub fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), AppendError> {
        let mut guard = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let writer = &mut *guard;
        writer.frame.clear();
        writer.frame.extend_from_slice(&[0; HEADER]);
        encode(&mut writer.frame);
        let payload_len = writer.frame.len() - HEADER;
        let len = u32::try_from(payload_len).ok().filter(|l| *l <= MAX_RECORD);
        let Some(len) = len else {
            return Err(AppendError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "usage report too large",
            )));
        };
        let crc = crc32(&writer.frame[HEADER..]);
        writer.frame[..4].copy_from_slice(&len.to_le_bytes());
        writer.frame[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        let frame_len = writer.frame.len() as u64;
        if self.bytes.load(Ordering::Relaxed) + frame_len > self.cap {
            return Err(AppendError::Full(self.cap));
        }
        if writer.poisoned || writer.len >= self.segment_bytes {
            self.rotate(writer)?;
        }
        if let Err(error) = (&*writer.file).write_all(&writer.frame) {
            // Cut a partial frame off; if even that fails, never append after it.
            writer.poisoned = writer.file.set_len(writer.len).is_err();
            return Err(AppendError::Io(error));
        }
        writer.len += frame_len;
        writer.dirty = true;
        self.bytes.fetch_add(frame_len, Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&self, writer: &mut Writer) -> io::Result<()> {
        let seq = writer.seq + 1;
        let file = Arc::new(create_segment(&self.dir, seq)?);
        let old = std::mem::replace(&mut writer.file, file);
        if writer.dirty {
            writer.unsynced.push(old);
        }
        writer.seq = seq;
        writer.len = 0;
        writer.poisoned = false;
        writer.dirty = false;
        Ok(())
    }

    /// The end of what has been written: everything before it is complete.
    pub fn end(&self) -> Position {
        let writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Position { seq: writer.seq, offset: writer.len }
    }

    /// Flushes every write so far to the disk.
    pub fn sync(&self) -> io::Result<()> {
        let files = {
            let mut writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut files = std::mem::take(&mut writer.unsynced);
            if std::mem::take(&mut writer.dirty) {
                files.push(Arc::clone(&writer.file));
            }
            files
        };
        for file in files {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Whether the spool has room for about `headroom` more bytes.
    pub fn has_room(&self, headroom: u64) -> bool {
        self.bytes.load(Ordering::Relaxed).saturating_add(headroom) <= self.cap
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Deletes every segment before `seq` (all of their records are acknowledged).
    pub fn delete_before(&self, seq: u64) -> io::Result<()> {
        for old in segments(&self.dir)?.into_iter().take_while(|s| *s < seq) {
            let path = segment_path(&self.dir, old);
            let len = fs::metadata(&path)?.len();
            fs::remove_file(&path)?;
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Keeps one record the control plane refuses for good in the set-aside file, synced, so
    /// that the sender can go past it.
    pub fn set_aside(&self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "usage report too large"))?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let mut file = OpenOptions::new().create(true).append(true).open(self.dir.join(SET_ASIDE))?;
        file.write_all(&frame)?;
        file.sync_data()
    }

    /// Remembers that everything before `position` is acknowledged.
    pub fn save_checkpoint(&self, position: Position) -> io::Result<()> {
        let temporary = self.dir.join("checkpoint.tmp");
        fs::write(&temporary, format!("{} {}\n", position.seq, position.offset))?;
        fs::rename(temporary, self.dir.join(CHECKPOINT))
    }

    /// Where the previous run got to (the start when it left no checkpoint).
    pub fn load_checkpoint(&self) -> Position {
        let text = fs::read_to_string(self.dir.join(CHECKPOINT)).unwrap_or_default();
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(seq)), Some(Ok(offset))) => Position { seq, offset },
            _ => Position::default(),
        }
    }
}

/// Reads records in order from a position up to the writer's end.
pub struct Reader {
    dir: PathBuf,
    position: Position,
    /// Buffered (a record is two reads, header and payload, which must not be two syscalls)
    /// and never reading past the writer's end, where a frame may be half written.
    file: Option<BufReader<io::Take<File>>>,
}

impl Reader {
    /// A reader starting at `position` (moved to the first existing segment at or after it).
    pub fn new(dir: &Path, position: Position) -> Reader {
        Reader { dir: dir.to_owned(), position, file: None }
    }

    /// Where the next record starts.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Reads up to `limit` payloads, not past `end` (the writer's end when called).
    pub fn read(&mut self, limit: usize, end: Position) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while out.len() < limit && self.position < end {
            if self.file.is_none() && !self.open_current(end)? {
                break;
            }
            let sealed = self.position.seq < end.seq;
            let limit = if sealed { u64::MAX } else { end.offset };
            if let Some(file) = &mut self.file {
                let read_ahead = self.position.offset + file.buffer().len() as u64;
                file.get_mut().set_limit(limit.saturating_sub(read_ahead));
            }
            match self.next_record(limit)? {
                Some(payload) => out.push(payload),
                None if sealed => self.next_segment(end)?,
                None => break,
            }
        }
        Ok(out)
    }

    /// Opens the segment at the position, skipping to the next one that exists.
    fn open_current(&mut self, end: Position) -> io::Result<bool> {
        let Some(seq) = segments(&self.dir)?.into_iter().find(|s| *s >= self.position.seq && *s <= end.seq)
        else {
            return Ok(false);
        };
        if seq != self.position.seq {
            self.position = Position { seq, offset: 0 };
        }
        let mut file = File::open(segment_path(&self.dir, seq))?;
        if self.position.offset > file.metadata()?.len() {
            // A checkpoint from elsewhere: re-send the segment (duplicates are harmless).
            self.position.offset = 0;
        }
        file.seek(SeekFrom::Start(self.position.offset))?;
        self.file = Some(BufReader::with_capacity(READ_BUFFER, file.take(0)));
        Ok(true)
    }

    fn next_segment(&mut self, end: Position) -> io::Result<()> {
        self.file = None;
        self.position = Position { seq: self.position.seq + 1, offset: 0 };
        if self.position.seq > end.seq {
            self.position = end;
        }
        Ok(())
    }

    /// The next whole, intact record before `limit` bytes; `None` at the end or at a torn tail.
    fn next_record(&mut self, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.file.as_mut() else { return Ok(None) };
        if self.position.offset + HEADER as u64 > limit {
            return Ok(None);
        }
        let mut header = [0u8; HEADER];
        if !read_full(file, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let frame_end = self.position.offset + HEADER as u64 + u64::from(len);
        if len > MAX_RECORD || frame_end > limit {
            return self.torn(limit);
        }
        let mut payload = vec![0u8; len as usize];
        if !read_full(file, &mut payload)? || crc32(&payload) != crc {
            return self.torn(limit);
        }
        self.position.offset = frame_end;
        Ok(Some(payload))
    }

    fn torn(&mut self, limit: u64) -> io::Result<Option<Vec<u8>>> {
        if limit != u64::MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt record in the active segment"));
        }
        tracing::warn!(
            segment = self.position.seq,
            offset = self.position.offset,
            "torn record at a spool segment's tail; skipped"
        );
        Ok(None)
    }
}

/// Fills `buffer`; false at a clean or torn end of file.
fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("usage-{seq:020}.spool"))
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    OpenOptions::new().create_new(true).append(true).open(segment_path(dir, seq))
}

/// The sequence numbers of the segments in `dir`, in order.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(Ok(seq)) =
            name.strip_prefix("usage-").and_then(|n| n.strip_suffix(".spool")).map(str::parse)
        {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn append(spool: &Spool, text: &str) {
        spool.append(|buffer| buffer.extend_from_slice(text.as_bytes())).unwrap();
    }

    fn read_all(dir: &Path, from: Position, end: Position) -> (Vec<String>, Position) {
        let mut reader = Reader::new(dir, from);
        let records = reader.read(usize::MAX, end).unwrap();
        (records.into_iter().map(|r| String::from_utf8(r).unwrap()).collect(), reader.position())
    }

    #[test]
    fn a_spool_directory_has_one_writer_at_a_time() {
        let dir = dir("one-writer");
        let first = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        let error = Spool::open(&dir, 1 << 20, 1 << 20).err().expect("a second writer is refused");
        assert_eq!(error.kind(), io::ErrorKind::ResourceBusy);
        assert!(error.to_string().contains("another data plane"), "{error}");
        drop(first);
        Spool::open(&dir, 1 << 20, 1 << 20).expect("free again once the first is closed");
    }

    #[test]
    fn records_round_trip_across_rotations_and_restarts() {
        let dir = dir("round-trip");
        let spool = Spool::open(&dir, 1 << 20, 40).unwrap();
        for i in 0..10 {
            append(&spool, &format!("record {i}"));
        }
        let end = spool.end();
        assert!(end.seq > 3, "rotated every few records: {end:?}");
        let (records, position) = read_all(&dir, Position::default(), end);
        assert_eq!(records.len(), 10);
        assert_eq!(records[9], "record 9");
        assert_eq!(position, end);
        // Partial reads resume where they stopped.
        let mut reader = Reader::new(&dir, Position::default());
        assert_eq!(reader.read(4, end).unwrap().len(), 4);
        assert_eq!(reader.read(100, end).unwrap().len(), 6);
        drop(spool);
        // A restart appends to a new segment; the old ones are still read.
        let spool = Spool::open(&dir, 1 << 20, 40).unwrap();
        append(&spool, "after restart");
        let (records, _) = read_all(&dir, Position::default(), spool.end());
        assert_eq!(records.len(), 11);
        assert_eq!(records[10], "after restart");
        // Acknowledged segments go; their bytes stop counting.
        let before = spool.bytes();
        spool.delete_before(end.seq).unwrap();
        assert!(spool.bytes() < before);
        let (records, _) = read_all(&dir, Position::default(), spool.end());
        assert!(records.len() < 11 && records.len() >= 2, "{records:?}");
        spool.save_checkpoint(Position { seq: 7, offset: 9 }).unwrap();
        assert_eq!(spool.load_checkpoint(), Position { seq: 7, offset: 9 });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_skipped() {
        let dir = dir("torn");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        append(&spool, "whole one");
        append(&spool, "whole two");
        let end = spool.end();
        drop(spool);
        // A write cut short by SIGKILL, then a checksum mismatch in another crashed segment.
        let path = segment_path(&dir, end.seq);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        append(&spool, "bad crc");
        let bad = spool.end();
        drop(spool);
        let path = segment_path(&dir, bad.seq);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        append(&spool, "whole three");
        let (records, position) = read_all(&dir, Position::default(), spool.end());
        assert_eq!(records, ["whole one", "whole two", "whole three"]);
        assert_eq!(position, spool.end());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn set_aside_records_are_kept_apart_in_the_record_format() {
        let dir = dir("set-aside");
        let spool = Spool::open(&dir, 1 << 20, 1 << 20).unwrap();
        append(&spool, "kept");
        spool.set_aside(b"poison one").unwrap();
        spool.set_aside(b"poison two").unwrap();
        let (records, _) = read_all(&dir, Position::default(), spool.end());
        assert_eq!(records, ["kept"], "the sender never reads set-aside records again");
        let bytes = fs::read(dir.join(SET_ASIDE)).unwrap();
        let mut reader = BufReader::new(&bytes[..]);
        let mut header = [0u8; HEADER];
        let mut found = Vec::new();
        while read_full(&mut reader, &mut header).unwrap() {
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let mut payload = vec![0; len];
            assert!(read_full(&mut reader, &mut payload).unwrap());
            assert_eq!(crc32(&payload).to_le_bytes(), header[4..]);
            found.push(String::from_utf8(payload).unwrap());
        }
        assert_eq!(found, ["poison one", "poison two"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_spool_refuses() {
        let dir = dir("full");
        let spool = Spool::open(&dir, 30, 1 << 20).unwrap();
        assert!(spool.has_room(20));
        append(&spool, "0123456789");
        assert!(!spool.has_room(20), "a request whose report would not fit is refused up front");
        assert!(matches!(
            spool.append(|b| b.extend_from_slice(b"0123456789abcdef")),
            Err(AppendError::Full(30))
        ));
        spool.sync().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
