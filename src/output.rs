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

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::settings::OutputTarget;

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
#[error("LOGGER_OUTPUT={}: {reason}", path.display())]
pub struct OpenError {
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
}

/// What the writer receives.
enum Msg {
    /// Lines to write.
    Job(Job),
    /// Write what is queued, sync, and stop.
    Stop,
}

/// One request's lines and the way back to it.
struct Job {
    data: Vec<u8>,
    done: oneshot::Sender<Result<(), WriteError>>,
    /// Holds the request's share of the queue budget until its bytes are written.
    _budget: OwnedSemaphorePermit,
}

/// Counters the writer keeps; read by health checks and the summary.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Bytes written and kept.
    pub bytes: AtomicU64,
    /// Write calls (batches).
    pub batches: AtomicU64,
    /// Failed batches (rolled back).
    pub failures: AtomicU64,
}

/// The handle requests use to write; cheap to clone.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    stats: Arc<OutputStats>,
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
                        path: "-".into(),
                        reason: e.to_string(),
                    })?;
                let file = File::from(fd);
                let seekable = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                Sink {
                    file,
                    fsync,
                    seekable,
                    append: false,
                }
            }
            OutputTarget::File(path) => {
                let err = |reason: String| OpenError {
                    path: path.clone(),
                    reason,
                };
                if path.is_dir() {
                    return Err(err("is a directory".into()));
                }
                recover_partial_tail(path).map_err(|e| err(format!("cannot check its last line: {e}")))?;
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(path)
                    .map_err(|e| err(io_reason(&e)))?;
                Sink {
                    file,
                    fsync,
                    seekable: true,
                    append: true,
                }
            }
        };
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE_JOBS);
        let healthy = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(OutputStats::default());
        let thread = {
            let healthy = healthy.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("output-writer".into())
                .spawn(move || run_writer(sink, rx, &healthy, &stats))
                .map_err(|e| OpenError {
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
            },
            Writer { thread, tx },
        ))
    }

    /// Writes `data` (whole lines) and returns once it has been handed to the kernel, and synced
    /// with fsync on. On error nothing of `data` is in the output.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), WriteError> {
        let want = u32::try_from(data.len().clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX);
        let budget = tokio::time::timeout(QUEUE_WAIT, self.budget.clone().acquire_many_owned(want))
            .await
            .map_err(|_| WriteError::QueueFull)?
            .map_err(|_| WriteError::Closed)?;
        let (done, result) = oneshot::channel();
        let job = Job {
            data,
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

    /// The writer's counters.
    pub fn stats(&self) -> &OutputStats {
        &self.stats
    }
}

fn run_writer(mut sink: Sink, mut rx: mpsc::Receiver<Msg>, healthy: &AtomicBool, stats: &OutputStats) {
    let mut batch: Vec<Job> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(msg) = rx.blocking_recv() {
        let first = match msg {
            Msg::Job(job) => job,
            Msg::Stop => {
                // Refuse new writes; the loop goes on until what is queued is written.
                rx.close();
                continue;
            }
        };
        let mut size = first.data.len();
        batch.push(first);
        while size < MAX_GATHER {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    size += job.data.len();
                    batch.push(job);
                }
                Ok(Msg::Stop) => rx.close(),
                Err(_) => break,
            }
        }
        let result = if batch.len() == 1 {
            sink.write_batch(&batch[0].data)
        } else {
            buf.clear();
            for job in &batch {
                buf.extend_from_slice(&job.data);
            }
            sink.write_batch(&buf)
        };
        match &result {
            Ok(()) => {
                stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("output writable again");
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                healthy.store(false, Ordering::Relaxed);
                tracing::error!(records_refused = batch.len(), "output: {e}");
            }
        }
        for job in batch.drain(..) {
            let _ = job.done.send(result.clone());
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
    fn write_batch(&mut self, data: &[u8]) -> Result<(), WriteError> {
        let start = if !self.seekable {
            None
        } else if self.append {
            self.file.metadata().ok().map(|m| m.len())
        } else {
            self.file.stream_position().ok()
        };
        let result =
            self.file
                .write_all(data)
                .and_then(|()| if self.fsync { self.file.sync_data() } else { Ok(()) });
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
                Err(WriteError::Io(io_reason(&e)))
            }
        }
    }
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
