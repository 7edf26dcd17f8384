//! The output: one writer thread that appends records to a file or stdout.
//!
//! Every request hands its lines to [`Output::write`] and waits. The writer gathers whatever is
//! waiting into one `write(2)` (and one `fdatasync(2)` with fsync on), then answers every waiter
//! at once, so a `2xx` always follows the write. One writer means lines never interleave and a
//! request's lines are contiguous. A failed or short write is rolled back to the last whole line,
//! so the file never holds a torn line that was acknowledged or not. At open, a partial last line
//! left by a crash is moved to `FILE.partial`. It does not know what a record is.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::settings::OutputTarget;
use crate::stats::{Histogram, BATCH_BUCKETS, IO_BUCKETS};

/// Bytes that may wait for the writer at once; beyond it a request waits, then gets `503`.
const QUEUE_BYTES: usize = 64 << 20;
/// Requests that may wait for the writer at once.
const QUEUE_JOBS: usize = 8192;
/// How long a request waits for room in the queue before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// The most bytes gathered into one write.
const MAX_GATHER: usize = 8 << 20;

/// The output could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{setting}={}: {reason}", path.display())]
pub struct OpenError {
    /// The setting that named the file.
    pub setting: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Why a request's lines were not written; nothing of them is in the output.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The queue stayed full past the wait.
    #[error("output queue full")]
    QueueFull,
    /// The writer has stopped (shutting down, or stdout is gone).
    #[error("output closed")]
    Closed,
    /// `write(2)` or `fdatasync(2)` failed; the output was rolled back.
    #[error("write failed: {0}")]
    Io(String),
    /// The reader of a pipe is gone; nothing can be written again.
    #[error("output gone: {0}")]
    Gone(String),
}

/// What the writer receives.
enum Msg {
    /// Lines to write.
    Job(Job),
    /// Write what is queued, sync, and stop.
    Stop,
    /// Reopen the file by its path (after logrotate moved it).
    Reopen(oneshot::Sender<Result<(), String>>),
}

/// One request's lines and the way back to it.
struct Job {
    data: Vec<u8>,
    /// Records (lines) in `data`, for the records-per-batch histogram.
    records: u64,
    done: oneshot::Sender<Result<(), WriteError>>,
    /// Holds the request's share of the queue budget until its bytes are written.
    _budget: OwnedSemaphorePermit,
}

/// Counters the writer keeps; read by health checks, the summary and `/metrics`.
#[derive(Debug)]
pub struct OutputStats {
    /// Bytes written and kept.
    pub bytes: AtomicU64,
    /// Write calls (batches).
    pub batches: AtomicU64,
    /// Failed batches (rolled back).
    pub failures: AtomicU64,
    /// Records gathered into each successful write.
    pub batch_records: Histogram,
    /// Time of each `write(2)` of a batch (all of it, however many calls it took).
    pub write_seconds: Histogram,
    /// Time of each `fdatasync(2)`, with fsync on.
    pub sync_seconds: Histogram,
}

impl Default for OutputStats {
    fn default() -> Self {
        OutputStats {
            bytes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            batch_records: Histogram::new(&BATCH_BUCKETS),
            write_seconds: Histogram::new(&IO_BUCKETS),
            sync_seconds: Histogram::new(&IO_BUCKETS),
        }
    }
}

/// The handle requests use to write; cheap to clone.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    stats: Arc<OutputStats>,
    /// Turns `Some(reason)` when the output can never be written again (stdout's reader gone).
    fatal: watch::Receiver<Option<String>>,
}

/// The writer thread; [`Writer::finish`] waits for it to write what is queued and sync.
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    /// Writes every record already queued, syncs, and stops the thread. Writes asked for after
    /// this are refused with [`WriteError::Closed`].
    pub fn finish(self) {
        // The queue may be full; the stop waits its turn like any request.
        let _ = self.tx.blocking_send(Msg::Stop);
        let _ = self.thread.join();
    }
}

/// Where bytes go, and how to take a failed write back.
struct Sink {
    file: File,
    /// The path to reopen on SIGHUP; `None` for stdout.
    path: Option<PathBuf>,
    fsync: bool,
    /// Whether a failed write can be truncated away (regular files only).
    seekable: bool,
    /// Whether the file is in append mode (our own `--output`), so its end is where writes go.
    append: bool,
}

impl Output {
    /// Opens the output and starts the writer thread.
    pub fn open(target: &OutputTarget, fsync: bool) -> Result<(Output, Writer), OpenError> {
        let sink = match target {
            OutputTarget::Stdout => {
                let fd = std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| OpenError {
                        setting: "LOGGER_OUTPUT",
                        path: "-".into(),
                        reason: e.to_string(),
                    })?;
                let file = File::from(fd);
                let seekable = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                Sink {
                    file,
                    path: None,
                    fsync,
                    seekable,
                    append: false,
                }
            }
            OutputTarget::File(path) => {
                let err = |reason: String| OpenError {
                    setting: "LOGGER_OUTPUT",
                    path: path.clone(),
                    reason,
                };
                if path.is_dir() {
                    return Err(err("is a directory".into()));
                }
                recover_partial_tail(path).map_err(|e| err(format!("cannot check its last line: {e}")))?;
                let file = open_append(path).map_err(|e| err(io_reason(&e)))?;
                // A character device (/dev/null) is neither truncated nor synced.
                let seekable = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                Sink {
                    file,
                    path: Some(path.clone()),
                    fsync,
                    seekable,
                    append: true,
                }
            }
        };
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE_JOBS);
        let healthy = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(OutputStats::default());
        let (fatal_tx, fatal) = watch::channel(None);
        let thread = {
            let healthy = healthy.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("output-writer".into())
                .spawn(move || run_writer(sink, rx, &healthy, &stats, &fatal_tx))
                .map_err(|e| OpenError {
                    setting: "LOGGER_OUTPUT",
                    path: target.to_string().into(),
                    reason: format!("cannot start the writer thread: {e}"),
                })?
        };
        Ok((
            Output {
                tx: tx.clone(),
                budget: Arc::new(Semaphore::new(QUEUE_BYTES)),
                healthy,
                stats,
                fatal,
            },
            Writer { thread, tx },
        ))
    }

    /// Writes `data` (whole lines) and returns once it has been handed to the kernel, and synced
    /// with fsync on. On error nothing of `data` is in the output.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), WriteError> {
        let records = data.iter().filter(|b| **b == b'\n').count();
        self.write_records(data, records).await
    }

    /// [`Output::write`] for a caller that knows how many records (lines) `data` holds.
    pub async fn write_records(&self, data: Vec<u8>, records: usize) -> Result<(), WriteError> {
        let want = u32::try_from(data.len().clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX);
        let budget = tokio::time::timeout(QUEUE_WAIT, self.budget.clone().acquire_many_owned(want))
            .await
            .map_err(|_| WriteError::QueueFull)?
            .map_err(|_| WriteError::Closed)?;
        let (done, result) = oneshot::channel();
        let job = Job {
            data,
            records: records as u64,
            done,
            _budget: budget,
        };
        match tokio::time::timeout(QUEUE_WAIT, self.tx.send(Msg::Job(job))).await {
            Err(_) => return Err(WriteError::QueueFull),
            Ok(Err(_)) => return Err(WriteError::Closed),
            Ok(Ok(())) => {}
        }
        result.await.unwrap_or(Err(WriteError::Closed))
    }

    /// False from a failed write until the next one succeeds.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Reopens the file by its path, for logrotate's move-and-create. Records written before
    /// the reopen are in the old file, every later one in the new: none lost, none twice.
    pub async fn reopen(&self) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Msg::Reopen(done))
            .await
            .map_err(|_| "output closed".to_string())?;
        result.await.unwrap_or_else(|_| Err("output closed".into()))
    }

    /// Resolves to the reason when the output can never be written again.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &OutputStats {
        &self.stats
    }

    /// What waits for the writer now: requests, and their bytes.
    pub fn queue_depth(&self) -> (u64, u64) {
        let jobs = QUEUE_JOBS.saturating_sub(self.tx.capacity());
        let bytes = QUEUE_BYTES.saturating_sub(self.budget.available_permits());
        (jobs as u64, bytes as u64)
    }
}

fn run_writer(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Msg>,
    healthy: &AtomicBool,
    stats: &OutputStats,
    fatal: &watch::Sender<Option<String>>,
) {
    let mut batch: Vec<Job> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut pending_reopen: Option<oneshot::Sender<Result<(), String>>> = None;
    while let Some(msg) = rx.blocking_recv() {
        let first = match msg {
            Msg::Job(job) => job,
            Msg::Stop => {
                // Refuse new writes; the loop goes on until what is queued is written.
                rx.close();
                continue;
            }
            Msg::Reopen(done) => {
                let _ = done.send(sink.reopen());
                continue;
            }
        };
        let mut size = first.data.len();
        let mut records = first.records;
        batch.push(first);
        while size < MAX_GATHER {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    size += job.data.len();
                    records += job.records;
                    batch.push(job);
                }
                Ok(Msg::Stop) => rx.close(),
                Ok(Msg::Reopen(done)) => {
                    // Write what was gathered first: it was received before the reopen.
                    pending_reopen = Some(done);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = if batch.len() == 1 {
            sink.write_batch(&batch[0].data, stats)
        } else {
            buf.clear();
            for job in &batch {
                buf.extend_from_slice(&job.data);
            }
            sink.write_batch(&buf, stats)
        };
        match &result {
            Ok(()) => {
                stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.batch_records.observe_count(records);
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("output writable again");
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                healthy.store(false, Ordering::Relaxed);
                tracing::error!(requests_refused = batch.len(), "output: {e}");
                if sink.path.is_none() && matches!(e, WriteError::Gone(_)) && fatal.borrow().is_none() {
                    let _ = fatal.send(Some(e.to_string()));
                }
            }
        }
        for job in batch.drain(..) {
            let _ = job.done.send(result.clone());
        }
        if let Some(done) = pending_reopen.take() {
            let _ = done.send(sink.reopen());
        }
        if buf.capacity() > 4 * MAX_GATHER {
            buf = Vec::new();
        }
    }
    if let Err(e) = sink.file.sync_data() {
        // stdout on a pipe or terminal cannot be synced; that is not a failure.
        if sink.seekable {
            tracing::error!("output: final sync failed: {e}");
        }
    }
}

impl Sink {
    fn write_batch(&mut self, data: &[u8], stats: &OutputStats) -> Result<(), WriteError> {
        let start = if !self.seekable {
            None
        } else if self.append {
            self.file.metadata().ok().map(|m| m.len())
        } else {
            self.file.stream_position().ok()
        };
        let began = std::time::Instant::now();
        let result = self.file.write_all(data).and_then(|()| {
            let written = std::time::Instant::now();
            stats.write_seconds.observe(written - began);
            // Pipes and terminals cannot be synced (EINVAL); only regular files are.
            if self.fsync && self.seekable {
                let synced = self.file.sync_data();
                stats.sync_seconds.observe(written.elapsed());
                synced
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(start) = start {
                    // Take back whatever part of the batch reached the file.
                    let undo = self
                        .file
                        .set_len(start)
                        .and_then(|()| self.file.seek(SeekFrom::Start(start)).map(|_| ()));
                    if let Err(u) = undo {
                        tracing::error!("output: cannot roll back a failed write: {u}");
                    }
                }
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Err(WriteError::Gone(io_reason(&e)))
                } else {
                    Err(WriteError::Io(io_reason(&e)))
                }
            }
        }
    }

    fn reopen(&mut self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match open_append(path) {
            Ok(file) => {
                // The old file is complete: every batch before this message was written whole.
                if self.fsync {
                    let _ = self.file.sync_data();
                }
                self.file = file;
                tracing::info!("output reopened: {}", path.display());
                Ok(())
            }
            Err(e) => {
                let reason = format!(
                    "cannot reopen {}: {}; still writing to the old file",
                    path.display(),
                    io_reason(&e)
                );
                tracing::error!("{reason}");
                Err(reason)
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Moves a partial last line (no final `\n`, so never acknowledged) to `FILE.partial` and cuts
/// the file back to its last whole line. Returns the number of bytes moved.
pub fn recover_partial_tail(path: &Path) -> std::io::Result<u64> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(0);
    }
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(0);
    }
    // Find the last newline, reading backwards in chunks.
    let mut keep = 0u64;
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    while end > 0 {
        let begin = end.saturating_sub(chunk.len() as u64);
        let n = (end - begin) as usize;
        file.seek(SeekFrom::Start(begin))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            keep = begin + i as u64 + 1;
            break;
        }
        end = begin;
    }
    let partial_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    let mut partial = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&partial_path)?;
    file.seek(SeekFrom::Start(keep))?;
    std::io::copy(&mut (&mut file).take(len - keep), &mut partial)?;
    partial.write_all(b"\n")?;
    partial.sync_data()?;
    file.set_len(keep)?;
    file.sync_data()?;
    let moved = len - keep;
    tracing::warn!(
        "{}: moved a partial last line ({moved} bytes, never acknowledged) to {}",
        path.display(),
        partial_path.display()
    );
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mlal-out-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut partial = p.as_os_str().to_owned();
        partial.push(".partial");
        let _ = std::fs::remove_file(PathBuf::from(partial));
        p
    }

    #[test]
    fn a_partial_tail_is_moved_aside() {
        let p = tmp("tail");
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        assert_eq!(recover_partial_tail(&p).unwrap(), 5);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        let partial = std::fs::read(format!("{}.partial", p.display())).unwrap();
        assert_eq!(partial, b"{\"c\":\n");
        assert_eq!(recover_partial_tail(&p).unwrap(), 0);
        std::fs::write(&p, b"no newline at all").unwrap();
        assert_eq!(recover_partial_tail(&p).unwrap(), 17);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[tokio::test]
    async fn concurrent_writes_land_whole_and_in_one_piece() {
        let p = tmp("concurrent");
        let (out, writer) = Output::open(&OutputTarget::File(p.clone()), false).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let line = format!(
                    "{{\"n\":{i},\"pad\":\"{}\"}}\n",
                    "x".repeat((i as usize * 37) % 5000)
                );
                out.write(line.repeat(3).into_bytes()).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(out.healthy());
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        assert!(matches!(
            out.write(b"{}\n".to_vec()).await,
            Err(WriteError::Closed)
        ));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 600);
        // Each request's three lines are contiguous.
        for group in lines.chunks(3) {
            assert!(group.iter().all(|l| *l == group[0]));
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
