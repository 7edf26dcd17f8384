//! The output: records appended to a file or stdout, one writer at a time.
//!
//! Every request hands its lines to [`Output::write`] and waits. When nobody is writing, the
//! request writes itself, at once, with no hand-off to another thread; while one writes, the
//! others queue, and the one writing takes the whole queue into its next `write(2)` (and one
//! `fdatasync(2)` with fsync on), then answers every waiter at once. So a `2xx` always follows the
//! write, one write serves everything that was waiting, lines never interleave and a request's
//! lines are contiguous. A failed or short write is rolled back to the last whole line, so the
//! file never holds a torn line, acknowledged or not. At open, a partial last line left by a
//! crash is moved to `FILE.partial`. It does not know what a record is.
//!
//! With sealing on, the bytes of each successful write (and each reopen) are left in a
//! [`Tap`] for the sealer, which seals on its own thread; the writer never waits for it.
//!
//! The write runs on the async worker that carries the request: to the page cache it takes
//! microseconds, less than waking another thread would. `fdatasync(2)` takes milliseconds, so
//! with fsync on the runtime is told to move its other work off that worker meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::observe::stats::{Histogram, BATCH_BUCKETS, IO_BUCKETS};
use crate::seal::tap::Tap;
use crate::settings::OutputTarget;

/// Bytes that may wait for the writer at once; beyond it a request waits, then gets `503`.
const QUEUE_BYTES: usize = 64 << 20;
/// Requests that may wait for the writer at once.
const QUEUE_JOBS: usize = 8192;
/// How long a request waits for room in the queue before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// The most bytes gathered from several requests into one write (one request's lines are
/// written whole, whatever their size).
const MAX_GATHER: usize = 8 << 20;
/// A write this big runs with the runtime's other work moved off its thread (see `write_jobs`).
const OFF_WORKER_BYTES: usize = 256 << 10;

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

/// One request's lines, waiting for the request that is writing to take them.
struct Job {
    data: Vec<u8>,
    /// Records (lines) in `data`, for the records-per-batch histogram.
    records: u64,
    /// How to answer the request; `None` for the request that writes it itself.
    done: Option<oneshot::Sender<Result<(), WriteError>>>,
    /// Holds the request's share of the queue budget until its bytes are written.
    _budget: OwnedSemaphorePermit,
}

/// What waits for the writing request, in order of arrival.
enum Entry {
    /// Lines to write.
    Job(Job),
    /// Reopen the file by its path (after logrotate moved it).
    Reopen(oneshot::Sender<Result<(), String>>),
}

/// The queue and who is writing; held only for moments, never across a write.
struct State {
    queue: Vec<Entry>,
    /// A request is writing (and will take the queue before it stops).
    writing: bool,
    /// [`Writer::finish`] was called: nothing new is taken.
    closed: bool,
}

/// Everything the handles and the writing request share.
struct Inner {
    state: Mutex<State>,
    /// Only the one writing touches it, so this lock is never waited for.
    sink: Mutex<Sink>,
    /// Told when a writing request stops, for [`Writer::finish`].
    idle: Condvar,
    fsync: bool,
    healthy: AtomicBool,
    stats: OutputStats,
    fatal: watch::Sender<Option<String>>,
    /// The torn tail moved out of the file at open, for the sealer's `repair` entry.
    repaired: Option<TornTail>,
    /// Set when sealing is on: what `/healthz` asks about sealing.
    tap: std::sync::OnceLock<Arc<Tap>>,
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
    inner: Arc<Inner>,
    budget: Arc<Semaphore>,
    /// Turns `Some(reason)` when the output can never be written again (stdout's reader gone).
    fatal: watch::Receiver<Option<String>>,
}

/// Stops the output; [`Writer::finish`] waits for what is queued to be written and synced.
pub struct Writer {
    inner: Arc<Inner>,
}

impl Writer {
    /// Writes every record already queued, syncs, and stops. Writes asked for after this are
    /// refused with [`WriteError::Closed`]. Blocks: call it off the async workers.
    pub fn finish(self) {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        state.closed = true;
        while state.writing {
            state = inner.idle.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        drop(state);
        let sink = lock(&inner.sink);
        if let Err(e) = sink.file.sync_data() {
            // stdout on a pipe or terminal cannot be synced; that is not a failure.
            if sink.seekable {
                tracing::error!("output: final sync failed: {e}");
            }
        }
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
    /// Several requests' lines gathered for one write; kept between writes.
    buf: Vec<u8>,
    /// With sealing on: told every write that stays and every reopen.
    tap: Option<Arc<Tap>>,
}

impl Output {
    /// Opens the output.
    pub fn open(target: &OutputTarget, fsync: bool) -> Result<(Output, Writer), OpenError> {
        let mut repaired = None;
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
                    buf: Vec::new(),
                    tap: None,
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
                repaired = recover_partial_tail(path)
                    .map_err(|e| err(format!("cannot check its last line: {e}")))?;
                let file = open_append(path).map_err(|e| err(io_reason(&e)))?;
                // A character device (/dev/null) is neither truncated nor synced.
                let seekable = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                Sink {
                    file,
                    path: Some(path.clone()),
                    fsync,
                    seekable,
                    append: true,
                    buf: Vec::new(),
                    tap: None,
                }
            }
        };
        let (fatal_tx, fatal) = watch::channel(None);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: Vec::new(),
                writing: false,
                closed: false,
            }),
            sink: Mutex::new(sink),
            idle: Condvar::new(),
            fsync,
            healthy: AtomicBool::new(true),
            stats: OutputStats::default(),
            fatal: fatal_tx,
            repaired,
            tap: std::sync::OnceLock::new(),
        });
        Ok((
            Output {
                inner: inner.clone(),
                budget: Arc::new(Semaphore::new(QUEUE_BYTES)),
                fatal,
            },
            Writer { inner },
        ))
    }

    /// Writes `data` (whole lines) and returns once it has been handed to the kernel, and synced
    /// with fsync on. On error nothing of `data` is in the output.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), WriteError> {
        let records = data.iter().filter(|b| **b == b'\n').count();
        self.write_records(data, records).await
    }

    /// [`Output::write`] for a caller that knows how many records (lines) `data` holds.
    ///
    /// When no other request is writing, this one writes: it lets the requests its worker has
    /// ready queue behind it, then writes them all with its own lines. Otherwise it queues its
    /// lines for the one writing and waits for the answer. So under load one `write(2)` serves
    /// many requests, and with no load a request costs one `write(2)` and no hand-off to another
    /// thread.
    pub async fn write_records(&self, data: Vec<u8>, records: usize) -> Result<(), WriteError> {
        // Every request counts for at least QUEUE_BYTES / QUEUE_JOBS, which bounds the requests
        // waiting as well as their bytes.
        let want = data.len().clamp(QUEUE_BYTES / QUEUE_JOBS, QUEUE_BYTES);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let budget = match self.budget.clone().try_acquire_many_owned(want) {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(QUEUE_WAIT, self.budget.clone().acquire_many_owned(want))
                .await
                .map_err(|_| WriteError::QueueFull)?
                .map_err(|_| WriteError::Closed)?,
        };
        let job = |done| {
            Entry::Job(Job {
                data,
                records: records as u64,
                done,
                _budget: budget,
            })
        };
        let waiting = {
            let mut state = lock(&self.inner.state);
            if state.closed {
                return Err(WriteError::Closed);
            }
            if state.writing {
                let (done, answer) = oneshot::channel();
                state.queue.push(job(Some(done)));
                Some(answer)
            } else {
                // Nobody writes: this request does. The queue is empty whenever nobody writes,
                // so its lines come first.
                state.writing = true;
                state.queue.push(job(None));
                None
            }
        };
        if let Some(answer) = waiting {
            return answer.await.unwrap_or(Err(WriteError::Closed));
        }
        let turn = Turn(Some(self.inner.clone()));
        self.inner.gather().await;
        let queued = std::mem::take(&mut lock(&self.inner.state).queue);
        let mine = self.inner.write_queued(queued);
        // Answered now; what queued meanwhile is written by a task that takes the turn on.
        turn.pass_on();
        mine.unwrap_or(Err(WriteError::Closed))
    }

    /// False from a failed write until the next one succeeds.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// The partial last line moved to `FILE.partial` when the file was opened, if there was one.
    pub fn repaired(&self) -> Option<&TornTail> {
        self.inner.repaired.as_ref()
    }

    /// Starts telling a [`Tap`] every write that stays and every reopen, and returns it with
    /// the file's length now (where its first range starts). Call before anything is written;
    /// `None` for stdout, which is not sealed.
    pub fn tap_for_sealing(&self) -> std::io::Result<Option<(Arc<Tap>, u64)>> {
        let mut sink = lock(&self.inner.sink);
        if sink.path.is_none() {
            return Ok(None);
        }
        let len = sink.file.metadata()?.len();
        let tap = Arc::new(Tap::new(len));
        sink.tap = Some(tap.clone());
        let _ = self.inner.tap.set(tap.clone());
        Ok(Some((tap, len)))
    }

    /// Whether sealing is on and its last attempt failed.
    pub fn seal_failing(&self) -> bool {
        self.inner.tap.get().is_some_and(|t| t.failing())
    }

    /// Reopens the file by its path, for logrotate's move-and-create. Records written before
    /// the reopen are in the old file, every later one in the new: none lost, none twice.
    pub async fn reopen(&self) -> Result<(), String> {
        let answer = {
            let mut state = lock(&self.inner.state);
            if state.closed {
                return Err("output closed".into());
            }
            if state.writing {
                let (done, answer) = oneshot::channel();
                state.queue.push(Entry::Reopen(done));
                answer
            } else {
                state.writing = true;
                drop(state);
                let turn = Turn(Some(self.inner.clone()));
                let result = lock(&self.inner.sink).reopen();
                turn.pass_on();
                return result;
            }
        };
        answer.await.unwrap_or_else(|_| Err("output closed".into()))
    }

    /// Resolves to the reason when the output can never be written again.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &OutputStats {
        &self.inner.stats
    }

    /// What waits for the writer now: requests, and their bytes.
    pub fn queue_depth(&self) -> (u64, u64) {
        let jobs = lock(&self.inner.state).queue.len();
        let bytes = QUEUE_BYTES.saturating_sub(self.budget.available_permits());
        (jobs as u64, bytes as u64)
    }
}

/// With fsync on, how many times the request that writes yields while others keep queueing.
const GATHER_POLLS_FSYNC: usize = 16;

/// The turn to write, held by the request (or task) that writes. Passed on, it goes to a task
/// that writes what queued meanwhile, or to nobody when nothing did. Dropped (the request was
/// cancelled while it yielded, or the runtime is stopping), it writes the queue itself, so no
/// request is ever stranded behind it.
struct Turn(Option<Arc<Inner>>);

impl Turn {
    fn pass_on(mut self) {
        let Some(inner) = self.0.take() else { return };
        if inner.release_if_idle() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(Inner::carry_on(inner));
            }
            Err(_) => inner.write_until_idle(),
        }
    }

    /// The turn leaves with its holder: released already.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.write_until_idle();
        }
    }
}

impl Inner {
    /// Writes queued entries in order: jobs gathered into as few writes as reopens allow, each
    /// job answered. Returns the result for the lines of the request that writes (its job has no
    /// `done`), if they were among them. Called with `writing` set; leaves it set.
    fn write_queued(&self, queued: Vec<Entry>) -> Option<Result<(), WriteError>> {
        let mut sink = lock(&self.sink);
        let mut jobs = Vec::with_capacity(queued.len());
        let mut gathered = 0;
        let mut mine = None;
        for entry in queued {
            match entry {
                Entry::Job(job) => {
                    if gathered + job.data.len() > MAX_GATHER && !jobs.is_empty() {
                        if let Some(r) = self.write_jobs(&mut sink, &mut jobs) {
                            mine = Some(r);
                        }
                        gathered = 0;
                    }
                    gathered += job.data.len();
                    jobs.push(job);
                }
                Entry::Reopen(done) => {
                    gathered = 0;
                    // Everything queued before the reopen goes to the old file.
                    if let Some(r) = self.write_jobs(&mut sink, &mut jobs) {
                        mine = Some(r);
                    }
                    let _ = done.send(sink.reopen());
                }
            }
        }
        if let Some(r) = self.write_jobs(&mut sink, &mut jobs) {
            mine = Some(r);
        }
        mine
    }

    /// Writes `jobs` in one write and answers them; returns the result when one of them was
    /// the writing request's own.
    fn write_jobs(&self, sink: &mut Sink, jobs: &mut Vec<Job>) -> Option<Result<(), WriteError>> {
        if jobs.is_empty() {
            return None;
        }
        let records = jobs.iter().map(|j| j.records).sum::<u64>();
        let mut buf = std::mem::take(&mut sink.buf);
        let data: &[u8] = if jobs.len() == 1 {
            &jobs[0].data
        } else {
            buf.clear();
            for job in jobs.iter() {
                buf.extend_from_slice(&job.data);
            }
            &buf
        };
        // What may block for long runs with the runtime told to move other work off this
        // thread: fdatasync (milliseconds), a big write (the kernel may hold it back while it
        // writes dirty pages out), and any write to a pipe or terminal (its reader may be slow).
        // A small write to a file takes microseconds, less than the hand-off would.
        let result = if self.fsync || data.len() >= OFF_WORKER_BYTES || !sink.seekable {
            off_worker(|| sink.write_batch(data, &self.stats))
        } else {
            sink.write_batch(data, &self.stats)
        };
        self.account(data.len(), records, jobs.len(), &result, sink);
        if buf.capacity() <= 4 * MAX_GATHER {
            sink.buf = buf;
        }
        let mut mine = None;
        for job in jobs.drain(..) {
            match job.done {
                Some(done) => {
                    let _ = done.send(result.clone());
                }
                None => mine = Some(result.clone()),
            }
        }
        mine
    }

    /// Counters, health and the fatal signal after a write.
    fn account(
        &self,
        bytes: usize,
        records: u64,
        requests: usize,
        result: &Result<(), WriteError>,
        sink: &Sink,
    ) {
        match result {
            Ok(()) => {
                self.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.batch_records.observe_count(records);
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("output writable again");
                }
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.healthy.store(false, Ordering::Relaxed);
                tracing::error!(requests_refused = requests, "output: {e}");
                if sink.path.is_none() && matches!(e, WriteError::Gone(_)) && self.fatal.borrow().is_none() {
                    let _ = self.fatal.send(Some(e.to_string()));
                }
            }
        }
    }

    /// Lets the requests this worker has ready reach the queue before a write: one write for
    /// all of them, for the price of one more poll. A sync costs milliseconds, so with fsync on
    /// it waits on while more keep arriving (a few polls at most).
    async fn gather(&self) {
        let mut queued = lock(&self.state).queue.len();
        for _ in 0..if self.fsync { GATHER_POLLS_FSYNC } else { 1 } {
            tokio::task::yield_now().await;
            let now = lock(&self.state).queue.len();
            if now == queued {
                break;
            }
            queued = now;
        }
    }

    /// Gives the turn up if nothing waits; called with `writing` set.
    fn release_if_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if !state.queue.is_empty() {
            return false;
        }
        state.writing = false;
        if state.closed {
            self.idle.notify_all();
        }
        true
    }

    /// The task that holds the turn after a request: writes round after round while requests
    /// keep queueing, then gives the turn up.
    async fn carry_on(self: Arc<Self>) {
        let turn = Turn(Some(self.clone()));
        loop {
            self.gather().await;
            let queued = {
                let mut state = lock(&self.state);
                if state.queue.is_empty() {
                    state.writing = false;
                    if state.closed {
                        self.idle.notify_all();
                    }
                    break;
                }
                std::mem::take(&mut state.queue)
            };
            let _ = self.write_queued(queued);
        }
        turn.disarm();
    }

    /// Writes round after round until nothing waits, then gives the turn up; for a turn that
    /// cannot be carried on by a task.
    fn write_until_idle(&self) {
        while !self.release_if_idle() {
            let queued = std::mem::take(&mut lock(&self.state).queue);
            let _ = self.write_queued(queued);
        }
    }
}

/// Runs `f`, which blocks, letting a multi-threaded runtime move its other tasks off this
/// worker meanwhile. Elsewhere (a current-thread runtime, a plain thread) it just runs `f`.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Locks `m`; a panic elsewhere cannot leave these structures half-changed, so poison is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sink {
    fn write_batch(&mut self, data: &[u8], stats: &OutputStats) -> Result<(), WriteError> {
        let began = std::time::Instant::now();
        // How much of `data` reached the file, for the rollback.
        let mut written = 0usize;
        let mut result = Ok(());
        while written < data.len() {
            match self.file.write(&data[written..]) {
                Ok(0) => {
                    result = Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result.and_then(|()| {
            let done = std::time::Instant::now();
            stats.write_seconds.observe(done - began);
            // Pipes and terminals cannot be synced (EINVAL); only regular files are.
            if self.fsync && self.seekable {
                let synced = self.file.sync_data();
                stats.sync_seconds.observe(done.elapsed());
                synced
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                if let Some(tap) = &self.tap {
                    tap.wrote(data);
                }
                Ok(())
            }
            Err(e) => {
                if self.seekable && written > 0 {
                    self.roll_back(written as u64);
                }
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Err(WriteError::Gone(io_reason(&e)))
                } else {
                    Err(WriteError::Io(io_reason(&e)))
                }
            }
        }
    }

    /// Takes back the last `written` bytes, the part of a failed batch that reached the file.
    /// The file's end is read only now, on failure: a write costs no extra system call, and the
    /// end is right even if the file was truncated behind our back (logrotate's copytruncate).
    fn roll_back(&mut self, written: u64) {
        let end = if self.append {
            self.file.metadata().map(|m| m.len())
        } else {
            self.file.stream_position()
        };
        let undo = end.and_then(|end| {
            let start = end.saturating_sub(written);
            self.file
                .set_len(start)
                .and_then(|()| self.file.seek(SeekFrom::Start(start)).map(|_| ()))
        });
        if let Err(u) = undo {
            tracing::error!("output: cannot roll back a failed write: {u}");
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
                if let Some(tap) = &self.tap {
                    // Told before anything is written to the new file: its length now is what
                    // was there before this daemon wrote to it.
                    tap.reopened(file.metadata().map(|m| m.len()).unwrap_or(0));
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

/// A partial last line moved out of the output at open, as the seal's `repair` entry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// How many bytes were moved.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// The file they were appended to (`FILE.partial`).
    pub to: PathBuf,
}

/// Moves a partial last line (no final `\n`, so never acknowledged) to `FILE.partial` and cuts
/// the file back to its last whole line. Returns what was moved, if anything.
pub fn recover_partial_tail(path: &Path) -> std::io::Result<Option<TornTail>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
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
    // Copied with the chunk buffer and hashed on the way, for the seal's repair entry.
    file.seek(SeekFrom::Start(keep))?;
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut remaining = len - keep;
    while remaining > 0 {
        let n = remaining.min(chunk.len() as u64) as usize;
        file.read_exact(&mut chunk[..n])?;
        partial.write_all(&chunk[..n])?;
        hasher.update(&chunk[..n]);
        remaining -= n as u64;
    }
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
    let mut sha256 = [0u8; 32];
    for (o, b) in sha256.iter_mut().zip(hasher.finish().as_ref()) {
        *o = *b;
    }
    Ok(Some(TornTail {
        bytes: moved,
        sha256,
        to: partial_path,
    }))
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
        let moved = recover_partial_tail(&p).unwrap().unwrap();
        assert_eq!(moved.bytes, 5);
        assert_eq!(moved.sha256, crate::seal::sha256(b"{\"c\":"));
        assert_eq!(moved.to, PathBuf::from(format!("{}.partial", p.display())));
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        let partial = std::fs::read(format!("{}.partial", p.display())).unwrap();
        assert_eq!(partial, b"{\"c\":\n");
        assert_eq!(recover_partial_tail(&p).unwrap(), None);
        std::fs::write(&p, b"no newline at all").unwrap();
        assert_eq!(recover_partial_tail(&p).unwrap().map(|t| t.bytes), Some(17));
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_fsync_on_two_workers_every_line_lands_whole() {
        let p = tmp("fsync-mt");
        let (out, writer) = Output::open(&OutputTarget::File(p.clone()), true).unwrap();
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                out.write(format!("{{\"n\":{i}}}\n{{\"n\":{i}}}\n").into_bytes())
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 600);
        for pair in lines.chunks(2) {
            assert_eq!(pair[0], pair[1]);
        }
        // Several requests shared a write and its sync.
        assert!(out.stats().batches.load(Ordering::Relaxed) <= 300);
    }

    #[tokio::test]
    async fn one_write_gathers_at_most_max_gather_bytes_of_several_requests() {
        let p = tmp("gather");
        let (out, writer) = Output::open(&OutputTarget::File(p.clone()), false).unwrap();
        let jobs: Vec<Entry> = [b'a', b'b', b'c']
            .iter()
            .map(|c| {
                let mut data = vec![*c; MAX_GATHER * 3 / 8];
                data.push(b'\n');
                Entry::Job(Job {
                    data,
                    records: 1,
                    done: None,
                    _budget: out.budget.clone().try_acquire_many_owned(1).unwrap(),
                })
            })
            .collect();
        lock(&out.inner.state).writing = true;
        assert!(matches!(out.inner.write_queued(jobs), Some(Ok(()))));
        lock(&out.inner.state).writing = false;
        // Three requests of 3/8 of the limit each: two of them, then the third.
        assert_eq!(out.stats().batches.load(Ordering::Relaxed), 2);
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let text = std::fs::read(&p).unwrap();
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        for (line, c) in lines.iter().zip([b'a', b'b', b'c']) {
            assert!(line.iter().all(|b| *b == c));
        }
    }

    #[tokio::test]
    async fn a_writer_cancelled_in_its_turn_strands_no_one() {
        use std::future::Future;
        use std::task::Poll;
        let p = tmp("cancelled");
        let (out, writer) = Output::open(&OutputTarget::File(p.clone()), false).unwrap();
        let mut first = Box::pin(out.write(b"{\"first\":1}\n".to_vec()));
        // Polled once, it takes the turn to write and yields before writing.
        let polled = std::future::poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        // Meanwhile another request queues behind it...
        let second = tokio::spawn({
            let out = out.clone();
            async move { out.write(b"{\"second\":2}\n".to_vec()).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(out.queue_depth().0, 2);
        // ...and the first is dropped (its client went away) before its turn came back.
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .expect("the queued request was answered")
            .unwrap();
        assert!(second.is_ok());
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"first\":1}\n{\"second\":2}\n"
        );
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
