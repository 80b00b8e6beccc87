//! Commit fully checkpointed fragments: one new data file per fragment for
//! the column and its UDF version record (rows outside the plan keep their old
//! values and versions), all published in one Lance DataReplacement at the
//! pinned version: the values and the record of which UDF version computed
//! them can never disagree.

use super::checkpoint::{self, Checkpoint};
use super::{BackfillError, Result};
use crate::store::StorageOptions;
use crate::table::{self, TableError};
use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt64Array, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::WriteDestination;
use lance::dataset::transaction::{DataReplacementGroup, Operation};
use std::sync::Arc;

/// Checkpoints of a fragment read at once when committing it.
const CONCURRENT_READS: usize = 8;
/// How often a commit is retried when another writer committed first.
const COMMIT_ATTEMPTS: usize = 5;

/// What a version record holds for a row no UDF version computed (never computed, or the UDF
/// failed on it), in the files geneva writes. A record column starts all NULL (declared without a
/// file), which means the same. Not NULL in files: Lance stores a constant column with NULLs as
/// 2 bytes of levels per row (2 MB per million rows), which every plan would read; a run of
/// zeros costs next to nothing.
pub const NOT_COMPUTED: i64 = 0;

/// The UDF version id a record value names: None for NULL and `NOT_COMPUTED`.
pub fn computed_by(record: Option<i64>) -> Option<i64> {
    record.filter(|v| *v != NOT_COMPUTED)
}

/// Which UDF version computed the committed values: its Int64 id (never `NOT_COMPUTED`), written
/// to `column` (`NOT_COMPUTED` for rows that failed, or were never computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub column: String,
    pub id: i64,
}

/// Commits `fragments` (fragment id, its checkpoint URIs, its planned offsets)
/// of `column` at `version`, with `stamp`'s version record when given; returns
/// the new table version. Every planned offset must be held by a checkpoint.
/// Here all in this process; on a cluster the workers `prepare_fragment` and the
/// driver only `prepare_records` and `commit_prepared`.
pub async fn commit_fragments(
    table_uri: &str,
    options: &StorageOptions,
    version: u64,
    column: &str,
    stamp: Option<&Stamp>,
    fragments: &[(u64, Vec<String>, Vec<u32>)],
) -> Result<Committed> {
    let ids: Vec<u64> = fragments.iter().map(|f| f.0).collect();
    let version = prepare_records(table_uri, options, version, column, stamp, &ids).await?;
    let mut replacements = Vec::with_capacity(fragments.len());
    for (fragment_id, uris, planned) in fragments {
        replacements.push(
            prepare_fragment(table_uri, options, version, column, stamp, *fragment_id, uris, Vec::new(), planned)
                .await?,
        );
    }
    commit_prepared(table_uri, options, version, replacements).await
}

/// Before new files are prepared: gives each of `fragment_ids` whose values were written
/// without a version record an all-NULL one (see `record_versions_apart`); returns the
/// version the files must be prepared and committed at (`version`, or the one that commit made).
pub async fn prepare_records(
    table_uri: &str,
    options: &StorageOptions,
    version: u64,
    column: &str,
    stamp: Option<&Stamp>,
    fragment_ids: &[u64],
) -> Result<u64> {
    let Some(stamp) = stamp else { return Ok(version) };
    let ds = table::open_with(table_uri, Some(version), options).await?;
    table::validate_columns(&ds, &[column.to_owned(), stamp.column.clone()])?;
    Ok(record_versions_apart(&ds, options, column, &stamp.column, fragment_ids).await?.unwrap_or(version))
}

/// Writes one fragment's new column file (and version record) from its checkpoints (`uris`, in
/// the store, and `held`: the last values of tasks that handed them over in memory instead of
/// writing a checkpoint), at `version`; what `commit_prepared` publishes. Runs where the data
/// is: on a worker.
#[allow(clippy::too_many_arguments)]
pub async fn prepare_fragment(
    table_uri: &str,
    options: &StorageOptions,
    version: u64,
    column: &str,
    stamp: Option<&Stamp>,
    fragment_id: u64,
    uris: &[String],
    held: Vec<Checkpoint>,
    planned: &[u32],
) -> Result<DataReplacementGroup> {
    let Target { declared, schema, fragment } =
        Target::of(table_uri, options, version, column, stamp.map(|s| s.column.as_str()), fragment_id).await?;
    let arrow_fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let physical_rows = fragment.physical_rows().await?;
    if planned.len() == physical_rows
        && let Some(parts) = tiling(uris, held.iter(), physical_rows)
    {
        // The usual first run: the column is the parts end to end, streamed into the file one
        // part at a time (a checkpoint read when its turn comes), so a worker holds a few parts,
        // not the fragment's whole column.
        let failure: Arc<std::sync::Mutex<Option<BackfillError>>> = Default::default();
        let held: Vec<Option<Checkpoint>> = held.into_iter().map(Some).collect();
        let held = Arc::new(std::sync::Mutex::new(held));
        let stream = futures::stream::iter(parts)
            .map(|part| {
                let (held, failure, schema) = (held.clone(), failure.clone(), schema.clone());
                async move {
                    let batch = part_batch(part, &held, options, &schema, stamp).await;
                    batch.map_err(|e| {
                        let text = e.to_string();
                        if let Ok(mut first) = failure.lock() {
                            first.get_or_insert(e);
                        }
                        lance::Error::io(text)
                    })
                }
            })
            .buffered(2);
        return match fragment.write_columns(stream, &declared).await {
            Ok(group) => Ok(group),
            Err(e) => Err(failure.lock().ok().and_then(|mut f| f.take()).unwrap_or_else(|| e.into())),
        };
    }
    if let (Some(stamp), Some(parts)) = (stamp, spans(uris, &held)) {
        // Rows outside the plan (a filter, deleted rows) keep their old values: read in pieces and
        // merged with the checkpoints' rows piece by piece, so a worker holds a piece of the old
        // column and a checkpoint or two, not the fragment's whole column.
        let merge = Merge::start(table_uri, options, version, &schema, stamp, fragment_id, physical_rows, parts, held);
        return merge.write(&fragment, &declared, planned).await;
    }
    let columns = fragment_columns(&fragment, options, &arrow_fields, stamp, uris, held, planned).await?;
    let batch = RecordBatch::try_new(schema, columns)?;
    Ok(fragment.write_columns(futures::stream::iter([Ok(batch)]), &declared).await?)
}

/// Bytes of old values a merge reads at once (see `Merge`).
const OLD_VALUES_PIECE: u64 = 32 << 20;

/// The checkpoints (stored or handed over) as the spans of offsets they hold, in offset order, or
/// None when two overlap (a rerun recomputed rows a lost report had not said were checkpointed: the
/// whole-column path resolves them).
fn spans(uris: &[String], held: &[Checkpoint]) -> Option<Vec<(u32, u32, Part)>> {
    let mut spans = Vec::with_capacity(uris.len() + held.len());
    for uri in uris {
        let found = checkpoint::Found::parse(uri.rsplit('/').next()?)?;
        spans.push((found.first, found.last, Part::Stored(uri.clone())));
    }
    for (i, cp) in held.iter().enumerate() {
        let offsets = cp.offsets.values();
        spans.push((*offsets.first()?, *offsets.last()?, Part::Held(i)));
    }
    spans.sort_by_key(|s| s.0);
    spans.windows(2).all(|w| w[0].1 < w[1].0).then_some(spans)
}

/// A fragment's new column file from its old values (read in pieces of `OLD_VALUES_PIECE` bytes)
/// with the rows of its checkpoints put in their places, a piece at a time.
struct Merge<'a> {
    old: super::read::RunReader,
    options: &'a StorageOptions,
    schema: Arc<Schema>,
    stamp: &'a Stamp,
    fragment_id: u64,
    rows: usize,
    parts: std::collections::VecDeque<(u32, u32, Part)>,
    held: Vec<Option<Checkpoint>>,
    /// The checkpoint being merged, and the position of its next row.
    current: Option<(Checkpoint, usize)>,
    /// Old values read and not merged yet (from their first offset).
    leftover: Option<(u32, RecordBatch)>,
}

impl<'a> Merge<'a> {
    #[allow(clippy::too_many_arguments)]
    fn start(
        table_uri: &str,
        options: &'a StorageOptions,
        version: u64,
        schema: &Arc<Schema>,
        stamp: &'a Stamp,
        fragment_id: u64,
        rows: usize,
        parts: Vec<(u32, u32, Part)>,
        held: Vec<Checkpoint>,
    ) -> Self {
        let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        let old = super::read::RunReader::start(
            crate::runtime::runtime().handle(),
            table_uri.to_owned(),
            options.clone(),
            version,
            fragment_id,
            std::iter::once(0..rows as u32).collect(),
            columns,
            true,
            Some(OLD_VALUES_PIECE),
        );
        let held = held.into_iter().map(Some).collect();
        Self {
            old,
            options,
            schema: schema.clone(),
            stamp,
            fragment_id,
            rows,
            parts: parts.into(),
            held,
            current: None,
            leftover: None,
        }
    }

    /// Writes the file, checking that checkpoints hold every `planned` row.
    async fn write(
        self,
        fragment: &lance::dataset::fragment::FileFragment,
        declared: &lance_core::datatypes::Schema,
        planned: &[u32],
    ) -> Result<DataReplacementGroup> {
        let failure: Arc<std::sync::Mutex<Option<BackfillError>>> = Default::default();
        let fail = failure.clone();
        // State: the merge and the index of the next planned row; None once a piece failed.
        let batches = futures::stream::unfold(Some((self, 0usize)), move |state| {
            let failure = fail.clone();
            async move {
                let (mut merge, next_planned) = state?;
                match merge.next_piece(planned, next_planned).await {
                    Ok(None) => None,
                    Ok(Some((batch, next_planned))) => Some((Ok(batch), Some((merge, next_planned)))),
                    Err(e) => {
                        let text = e.to_string();
                        if let Ok(mut first) = failure.lock() {
                            first.get_or_insert(e);
                        }
                        Some((Err(lance::Error::io(text)), None))
                    }
                }
            }
        });
        match fragment.write_columns(Box::pin(batches), declared).await {
            Ok(group) => Ok(group),
            Err(e) => Err(failure.lock().ok().and_then(|mut f| f.take()).unwrap_or_else(|| e.into())),
        }
    }

    /// The next piece of the file (None after the last), and the index of the first planned row
    /// after it.
    async fn next_piece(&mut self, planned: &[u32], mut next_planned: usize) -> Result<Option<(RecordBatch, usize)>> {
        let piece = match self.leftover.take() {
            Some(piece) => Some(Ok(piece)),
            None => self.old.next().await,
        };
        let Some(piece) = piece else {
            if let Some((first, _, _)) = self.parts.front() {
                return Err(self.beyond(*first));
            }
            if let Some((cp, at)) = &self.current {
                return Err(self.beyond(cp.offsets.value(*at)));
            }
            if let Some(missing) = planned.get(next_planned) {
                return Err(self.not_checkpointed(*missing));
            }
            return Ok(None);
        };
        let (first, mut old) = piece?;
        // A piece holds the rows of one checkpoint at most (each is at most the job's checkpoint
        // bytes): the rest of the old values wait for the next piece.
        let end = first + old.num_rows() as u32;
        let boundary = match (&self.current, self.parts.front()) {
            (Some((cp, _)), _) => Some(cp.offsets.values().last().map_or(end, |l| l + 1)),
            (None, Some((start, last, _))) if *start < end => Some(last + 1),
            _ => None,
        };
        if let Some(cut) = boundary.filter(|b| *b > first && *b < end) {
            let keep = (cut - first) as usize;
            self.leftover = Some((cut, old.slice(keep, old.num_rows() - keep)));
            old = old.slice(0, keep);
        }
        let end = first + old.num_rows() as u32;
        // Source 0: the old values (and records); then slices of checkpoints.
        let mut values: Vec<ArrayRef> = vec![old.column(0).clone()];
        let record =
            old.column(1).as_any().downcast_ref::<Int64Array>().ok_or_else(|| TableError::Invalid("record".into()))?;
        let mut records: Vec<ArrayRef> =
            vec![Arc::new(record.iter().map(|v| Some(v.unwrap_or(NOT_COMPUTED))).collect::<Int64Array>())];
        let mut picks: Vec<(usize, usize)> = (0..old.num_rows()).map(|i| (0, i)).collect();
        let mut fresh = vec![false; old.num_rows()];
        while self.checkpoint_before(end).await? {
            let Some((cp, at)) = self.current.as_mut() else { break };
            let offsets = &cp.offsets.values()[*at..];
            let n = offsets.partition_point(|o| *o < end);
            let source = values.len();
            values.push(cp.values.slice(*at, n));
            records.push(stamped(cp, self.stamp.id).slice(*at, n));
            for (k, offset) in offsets[..n].iter().enumerate() {
                let row = (offset - first) as usize;
                picks[row] = (source, k);
                fresh[row] = true;
            }
            *at += n;
            if *at < cp.offsets.len() {
                break; // its next row is in a later piece
            }
            self.current = None;
        }
        while let Some(offset) = planned.get(next_planned).filter(|o| **o < end) {
            if *offset < first || !fresh[(offset - first) as usize] {
                return Err(self.not_checkpointed(*offset));
            }
            next_planned += 1;
        }
        let interleave = |arrays: &[ArrayRef]| {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            arrow::compute::interleave(&refs, &picks)
        };
        let batch = RecordBatch::try_new(self.schema.clone(), vec![interleave(&values)?, interleave(&records)?])?;
        Ok(Some((batch, next_planned)))
    }

    /// Whether a checkpoint holds rows before `end` not merged yet: then it is `current` (loaded
    /// when its turn comes).
    async fn checkpoint_before(&mut self, end: u32) -> Result<bool> {
        if self.current.is_none() {
            match self.parts.front() {
                Some((first, _, _)) if *first < end => {}
                _ => return Ok(false),
            }
            let Some((_, _, part)) = self.parts.pop_front() else { return Ok(false) };
            let cp = match part {
                Part::Stored(uri) => checkpoint::read(&uri, self.options).await?.ok_or_else(|| {
                    BackfillError::Checkpoint { path: uri.clone(), message: "vanished before the commit".into() }
                })?,
                Part::Held(i) => self
                    .held
                    .get_mut(i)
                    .and_then(Option::take)
                    .ok_or_else(|| TableError::Invalid("a held run taken twice".into()))?,
            };
            let want = self.schema.field(0).data_type();
            if cp.values.data_type() != want {
                return Err(BackfillError::Checkpoint {
                    path: format!("of fragment {}", self.fragment_id),
                    message: format!(
                        "holds {} but column {} is {want}",
                        cp.values.data_type(),
                        self.schema.field(0).name()
                    ),
                });
            }
            self.current = Some((cp, 0));
        }
        Ok(self.current.as_ref().is_some_and(|(cp, at)| cp.offsets.value(*at) < end))
    }

    fn beyond(&self, offset: u32) -> BackfillError {
        BackfillError::Fragment {
            fragment: self.fragment_id,
            message: format!("checkpoint offset {offset} beyond {} rows", self.rows),
        }
    }

    fn not_checkpointed(&self, offset: u32) -> BackfillError {
        BackfillError::Fragment {
            fragment: self.fragment_id,
            message: format!("not fully checkpointed: no checkpoint holds the row at offset {offset}"),
        }
    }
}

/// What a fragment's new column file holds: the column and its version record (`declared`, as
/// the table declares them; `schema`, as batches carry them), and the fragment at the version.
struct Target {
    declared: lance_core::datatypes::Schema,
    schema: Arc<Schema>,
    fragment: lance::dataset::fragment::FileFragment,
}

impl Target {
    async fn of(
        table_uri: &str,
        options: &StorageOptions,
        version: u64,
        column: &str,
        record: Option<&str>,
        fragment_id: u64,
    ) -> Result<Self> {
        let ds = table::open_with(table_uri, Some(version), options).await?;
        let mut names = vec![column.to_owned()];
        names.extend(record.map(str::to_owned));
        table::validate_columns(&ds, &names)?;
        let fields: Vec<lance_core::datatypes::Field> = names
            .iter()
            .map(|n| ds.schema().field(n).cloned().ok_or_else(|| TableError::Invalid(format!("no field {n}"))))
            .collect::<std::result::Result<_, _>>()?;
        let declared = lance_core::datatypes::Schema { fields: fields.clone(), metadata: Default::default() };
        let schema = Arc::new(Schema::new(fields.iter().map(Field::from).collect::<Vec<_>>()));
        if let Some(f) = schema.fields().get(1).filter(|f| f.data_type() != &DataType::Int64) {
            return Err(
                TableError::Invalid(format!("version record {} is {}, not Int64", f.name(), f.data_type())).into()
            );
        }
        let fragment = ds.get_fragment(fragment_id as usize).ok_or_else(|| BackfillError::Fragment {
            fragment: fragment_id,
            message: format!("not in version {version}"),
        })?;
        Ok(Self { declared, schema, fragment })
    }
}

/// A fragment's new column file (and version record) written as its rows are computed, by the
/// one task that computes the whole fragment in order: each run of rows is encoded and uploaded
/// while the next is computed, instead of after the last (on a store, the upload of a column
/// file was most of a short job's commit). `send` the runs in offset order, then `finish`.
pub struct ColumnWriter {
    tx: Option<tokio::sync::mpsc::Sender<Checkpoint>>,
    written: tokio::task::JoinHandle<Result<DataReplacementGroup>>,
    next: usize,
    rows: usize,
}

impl ColumnWriter {
    /// Starts writing fragment `fragment_id`'s file at `version`, on `runtime`; None when the
    /// fragment's physical rows are not `rows` (rows deleted: the file is written from held runs
    /// at the task's end, merged with the old values).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        runtime: &tokio::runtime::Handle,
        table_uri: &str,
        options: &StorageOptions,
        version: u64,
        column: &str,
        stamp: Stamp,
        fragment_id: u64,
        rows: usize,
    ) -> Result<Option<Self>> {
        let Target { declared, schema, fragment } =
            Target::of(table_uri, options, version, column, Some(&stamp.column), fragment_id).await?;
        if fragment.physical_rows().await? != rows {
            return Ok(None);
        }
        // Two runs queued: the task computes the next while one is encoded and one uploaded.
        let (tx, rx) = tokio::sync::mpsc::channel::<Checkpoint>(2);
        let batches = futures::stream::unfold(rx, move |mut rx| {
            let schema = schema.clone();
            async move {
                let cp = rx.recv().await?;
                let want = schema.field(0).data_type();
                let batch = if cp.values.data_type() != want {
                    Err(lance::Error::invalid_input(format!(
                        "values of {} for column {} of type {want}",
                        cp.values.data_type(),
                        schema.field(0).name()
                    )))
                } else {
                    let record = stamped(&cp, stamp.id);
                    RecordBatch::try_new(schema.clone(), vec![cp.values.clone(), record]).map_err(lance::Error::from)
                };
                Some((batch, rx))
            }
        });
        let written = runtime.spawn(async move { Ok(fragment.write_columns(batches, &declared).await?) });
        Ok(Some(Self { tx: Some(tx), written, next: 0, rows }))
    }

    /// The next run of rows: its offsets must follow the last run's.
    pub async fn send(&mut self, cp: Checkpoint) -> Result<()> {
        let first = cp.offsets.values().first().map(|o| *o as usize);
        let contiguous = cp.offsets.values().iter().enumerate().all(|(i, o)| *o as usize == self.next + i);
        if first.is_some_and(|f| f != self.next) || !contiguous || cp.values.len() != cp.offsets.len() {
            return Err(TableError::Invalid(format!(
                "a column file takes runs of rows in order: expected {} rows from offset {}",
                cp.offsets.len(),
                self.next
            ))
            .into());
        }
        self.next += cp.offsets.len();
        let tx = self.tx.as_ref().ok_or_else(|| TableError::Invalid("the column file is finished".into()))?;
        if tx.send(cp).await.is_err() {
            // The writer stopped: its error says why.
            self.tx = None;
            return Err(self.failure().await);
        }
        Ok(())
    }

    async fn failure(&mut self) -> super::BackfillError {
        match (&mut self.written).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => TableError::Invalid("the column file was finished early".into()).into(),
            Err(e) => TableError::Invalid(format!("the column file's writer failed: {e}")).into(),
        }
    }

    /// Closes the file once every row was sent; what `commit_prepared` publishes.
    pub async fn finish(mut self) -> Result<DataReplacementGroup> {
        if self.next != self.rows {
            return Err(TableError::Invalid(format!(
                "{} of the fragment's {} rows were written",
                self.next, self.rows
            ))
            .into());
        }
        self.tx = None;
        match (&mut self.written).await {
            Ok(out) => out,
            Err(e) => Err(TableError::Invalid(format!("the column file's writer failed: {e}")).into()),
        }
    }
}

/// One run of a fragment's rows, in the store (a checkpoint's URI) or handed over (an index into
/// the held checkpoints).
enum Part {
    Stored(String),
    Held(usize),
}

/// When the checkpoints (by their names) and the held runs hold offsets 0..rows each once without
/// gaps: them in offset order. Otherwise None (the general path merges by offset).
fn tiling<'a>(uris: &[String], held: impl Iterator<Item = &'a Checkpoint>, rows: usize) -> Option<Vec<Part>> {
    let mut runs: Vec<(u32, usize, Part)> = Vec::new();
    for uri in uris {
        let found = checkpoint::Found::parse(uri.rsplit('/').next()?)?;
        if (found.last - found.first) as usize + 1 != found.rows {
            return None; // a run with gaps
        }
        runs.push((found.first, found.rows, Part::Stored(uri.clone())));
    }
    for (i, cp) in held.enumerate() {
        let offsets = cp.offsets.values();
        let first = *offsets.first()?;
        if !offsets.iter().enumerate().all(|(k, o)| u64::from(*o) == u64::from(first) + k as u64) {
            return None;
        }
        runs.push((first, offsets.len(), Part::Held(i)));
    }
    runs.sort_by_key(|r| r.0);
    let mut next = 0usize;
    for (first, len, _) in &runs {
        if *first as usize != next {
            return None;
        }
        next += len;
    }
    (next == rows).then(|| runs.into_iter().map(|r| r.2).collect())
}

/// A part's values (and version record) as a batch of the column file.
async fn part_batch(
    part: Part,
    held: &std::sync::Mutex<Vec<Option<Checkpoint>>>,
    options: &StorageOptions,
    schema: &Arc<Schema>,
    stamp: Option<&Stamp>,
) -> Result<RecordBatch> {
    let (name, cp) = match part {
        Part::Stored(uri) => {
            let cp = checkpoint::read(&uri, options).await?;
            let cp = cp.ok_or_else(|| BackfillError::Checkpoint {
                path: uri.clone(),
                message: "vanished before the commit".into(),
            })?;
            (uri, cp)
        }
        Part::Held(i) => {
            let cp = held.lock().ok().and_then(|mut h| h.get_mut(i).and_then(Option::take));
            ("(handed over)".to_owned(), cp.ok_or_else(|| TableError::Invalid("a held run taken twice".into()))?)
        }
    };
    let want = schema.field(0).data_type();
    if cp.values.data_type() != want {
        return Err(BackfillError::Checkpoint {
            path: name,
            message: format!("holds {} but column {} is {want}", cp.values.data_type(), schema.field(0).name()),
        });
    }
    let mut columns = vec![cp.values.clone()];
    if let Some(stamp) = stamp {
        columns.push(stamped(&cp, stamp.id));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A checkpoint's version record: the stamp, NOT_COMPUTED where the UDF failed.
fn stamped(cp: &Checkpoint, id: i64) -> ArrayRef {
    Arc::new(match &cp.failed {
        None => Int64Array::from_value(id, cp.values.len()),
        Some(failed) => failed.iter().map(|f| Some(if f == Some(true) { NOT_COMPUTED } else { id })).collect(),
    })
}

/// Publishes prepared files as one DataReplacement read at `version` (see `commit_with_retry`).
pub async fn commit_prepared(
    table_uri: &str,
    options: &StorageOptions,
    version: u64,
    replacements: Vec<DataReplacementGroup>,
) -> Result<Committed> {
    commit_with_retry(table_uri, options, version, replacements).await
}

/// A prepared file as bytes (Lance's protobuf DataFile), to travel from a worker to the driver.
pub fn encode(group: &DataReplacementGroup) -> Vec<u8> {
    use prost::Message;
    let mut out = group.0.to_le_bytes().to_vec();
    out.extend(lance_table::format::pb::DataFile::from(&group.1).encode_to_vec());
    out
}

/// `encode`'s inverse.
pub fn decode(bytes: &[u8]) -> Result<DataReplacementGroup> {
    use prost::Message;
    let bad = |m: String| BackfillError::Fragment { fragment: u64::MAX, message: format!("a prepared file: {m}") };
    let (id, file) = bytes.split_at_checked(8).ok_or_else(|| bad("too short".into()))?;
    let id = u64::from_le_bytes(id.try_into().map_err(|_| bad("too short".into()))?);
    let file = lance_table::format::pb::DataFile::decode(file).map_err(|e| bad(e.to_string()))?;
    Ok(DataReplacementGroup(id, lance_table::format::DataFile::try_from(file)?))
}

/// Lance replaces a fragment's files only when the new file's fields are all
/// covered by its files, or none is. A fragment whose values were written
/// before the column had a version record (an older geneva) covers the one and
/// not the other: it first gets a record of `NOT_COMPUTED` ("version unknown",
/// which is what it was), committed on its own; returns that commit's version.
async fn record_versions_apart(
    ds: &Dataset,
    options: &StorageOptions,
    column: &str,
    record: &str,
    fragment_ids: &[u64],
) -> Result<Option<u64>> {
    let id_of = |name: &str| ds.schema().field(name).map(|f| f.id).unwrap_or(-1);
    let (value_id, record_id) = (id_of(column), id_of(record));
    let mut apart = Vec::new();
    for fragment in ds.get_fragments() {
        let meta = fragment.metadata();
        let covers = |id: i32| meta.files.iter().any(|f| f.fields.contains(&id));
        if fragment_ids.contains(&meta.id) && covers(value_id) && !covers(record_id) {
            apart.push(fragment);
        }
    }
    if apart.is_empty() {
        return Ok(None);
    }
    let field = ds.schema().field(record).cloned().ok_or_else(|| TableError::Invalid(format!("no field {record}")))?;
    let arrow_field = Field::from(&field);
    let declared = lance_core::datatypes::Schema { fields: vec![field], metadata: Default::default() };
    let mut replacements = Vec::with_capacity(apart.len());
    for fragment in apart {
        let rows = fragment.physical_rows().await?;
        let schema = Arc::new(Schema::new(vec![arrow_field.clone()]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_value(NOT_COMPUTED, rows))])?;
        replacements.push(fragment.write_columns(futures::stream::iter([Ok(batch)]), &declared).await?);
    }
    let committed = commit_with_retry(ds.uri(), options, ds.version_id(), replacements).await?;
    if !committed.lost.is_empty() {
        return Err(BackfillError::Fragment {
            fragment: committed.lost[0],
            message: "rewritten by a concurrent commit while its version record was added: run the backfill again"
                .into(),
        });
    }
    Ok(Some(committed.version))
}

/// The fragment's whole column (one value per physical row): the old values,
/// with the checkpointed offsets overwritten; and with `stamp`, its version
/// record likewise (the stamp's id for computed rows, NULL for failed ones).
async fn fragment_columns(
    fragment: &lance::dataset::fragment::FileFragment,
    options: &StorageOptions,
    fields: &[Field],
    stamp: Option<&Stamp>,
    uris: &[String],
    held: Vec<Checkpoint>,
    planned: &[u32],
) -> Result<Vec<ArrayRef>> {
    let field = &fields[0];
    let column = field.name().as_str();
    let fragment_id = fragment.id() as u64;
    let physical_rows = fragment.physical_rows().await?;

    // Read concurrently: each is one small Lance file.
    let read: Vec<Option<Checkpoint>> = futures::stream::iter(uris.to_vec())
        .map(|uri| async move { checkpoint::read(&uri, options).await })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(uris.len() + held.len());
    let named = uris.iter().cloned().zip(read).chain(held.into_iter().map(|cp| ("(handed over)".to_owned(), Some(cp))));
    for (uri, cp) in named {
        let cp = cp.ok_or_else(|| BackfillError::Checkpoint {
            path: uri.clone(),
            message: "vanished before the commit".into(),
        })?;
        if cp.values.data_type() != field.data_type() {
            return Err(BackfillError::Checkpoint {
                path: uri,
                message: format!("holds {} but column {column} is {}", cp.values.data_type(), field.data_type()),
            });
        }
        checkpoints.push(cp);
    }
    checkpoints.sort_by_key(|c| c.offsets.values().first().copied());

    // Old values (and version records) of live rows, with their offsets (deleted
    // rows stay null); not needed when every row was planned (and so is in a checkpoint).
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let old: Vec<RecordBatch> = if planned.len() == physical_rows {
        Vec::new()
    } else {
        let mut scanner = fragment.scan();
        scanner.project(&names)?;
        scanner.with_row_address();
        scanner.try_into_stream().await?.try_collect().await?
    };

    // Per output column, source 0 is one null; then the old batches; then the checkpoints.
    let mut sources: Vec<Vec<ArrayRef>> = fields.iter().map(|f| vec![new_null_array(f.data_type(), 1)]).collect();
    let mut picks: Vec<(usize, usize)> = vec![(0, 0); physical_rows];
    for batch in &old {
        let source = sources[0].len();
        for (name, out) in names.iter().zip(sources.iter_mut()) {
            let values =
                batch.column_by_name(name).cloned().ok_or_else(|| TableError::Invalid("scan lost a column".into()))?;
            out.push(values);
        }
        let addrs = batch
            .column_by_name(lance_core::ROW_ADDR)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(|| TableError::Invalid("scan returned no row addresses".into()))?;
        for (i, addr) in addrs.values().iter().enumerate() {
            picks[(*addr as u32) as usize] = (source, i);
        }
    }
    for cp in &checkpoints {
        let source = sources[0].len();
        sources[0].push(cp.values.clone());
        if let Some(stamp) = stamp {
            sources[1].push(stamped(cp, stamp.id));
        }
        for (i, offset) in cp.offsets.values().iter().enumerate() {
            let slot = picks.get_mut(*offset as usize).ok_or_else(|| BackfillError::Fragment {
                fragment: fragment_id,
                message: format!("checkpoint offset {offset} beyond {physical_rows} rows"),
            })?;
            *slot = (source, i);
        }
    }
    let first_checkpoint = sources[0].len() - checkpoints.len();
    if let Some(missing) = planned.iter().find(|o| picks.get(**o as usize).is_none_or(|p| p.0 < first_checkpoint)) {
        return Err(BackfillError::Fragment {
            fragment: fragment_id,
            message: format!("not fully checkpointed: no checkpoint holds the row at offset {missing}"),
        });
    }
    let mut out: Vec<ArrayRef> = sources
        .iter()
        .map(|arrays| {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            Ok(arrow::compute::interleave(&refs, &picks)?)
        })
        .collect::<Result<_>>()?;
    if let Some(record) = out.get_mut(1) {
        // Rows outside the plan that no version computed (NULL in the old record), and deleted rows.
        let values =
            record.as_any().downcast_ref::<Int64Array>().ok_or_else(|| TableError::Invalid("record".into()))?;
        *record = Arc::new(values.iter().map(|v| Some(v.unwrap_or(NOT_COMPUTED))).collect::<Int64Array>());
    }
    Ok(out)
}

/// What a commit published: the table version, and the fragments it could not publish because
/// someone else rewrote or removed them since the plan (a compaction, a delete of whole
/// fragments, another job on the same column): their rows must be planned again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub version: u64,
    pub lost: Vec<u64>,
}

/// Commits `replacements` read at `version`. Lance rebases over compatible commits made since
/// (an append, a delete of rows); when it reports a conflict it cannot rebase (an `add_columns`
/// or a compaction by someone else), each fragment whose rows and column file are still those
/// of `version` is committed again against the latest version, and the others are `lost`.
/// After any failure the latest version is first checked for this commit's own files, so a
/// commit whose answer was lost is found, never made twice.
async fn commit_with_retry(
    table_uri: &str,
    options: &StorageOptions,
    version: u64,
    replacements: Vec<DataReplacementGroup>,
) -> Result<Committed> {
    // The planned version, opened only when a conflict needs comparing against it.
    let mut planned: Option<Dataset> = None;
    let (mut read_version, mut groups, mut lost) = (version, replacements, Vec::new());
    let mut last_error = None;
    for attempt in 0..COMMIT_ATTEMPTS {
        // First at the version the files were prepared at (its manifest is in the session's cache:
        // no listing); Lance's commit looks for newer versions itself and rebases over them.
        if groups.is_empty() {
            let latest = table::open_with(table_uri, None, options).await?;
            return Ok(Committed { version: latest.version_id(), lost });
        }
        let base = table::open_with(table_uri, (attempt == 0).then_some(read_version), options).await?;
        let result = Dataset::commit(
            WriteDestination::Dataset(Arc::new(base)),
            Operation::DataReplacement { replacements: groups.clone() },
            Some(read_version),
            None,
            None,
            Arc::new(Default::default()),
            false,
        )
        .await;
        let error = match result {
            Ok(committed) => return Ok(Committed { version: committed.version_id(), lost }),
            Err(e) => e,
        };
        let latest = table::open_with(table_uri, None, options).await?;
        if holds_all(&latest, &groups) {
            return Ok(Committed { version: latest.version_id(), lost });
        }
        match error {
            lance::Error::RetryableCommitConflict { .. } | lance::Error::IncompatibleTransaction { .. } => {
                if planned.is_none() {
                    planned = Some(table::open_with(table_uri, Some(version), options).await?);
                }
                let planned = planned.as_ref().expect("opened above");
                let (keep, gone): (Vec<_>, Vec<_>) =
                    groups.into_iter().partition(|g| unchanged_since(planned, &latest, g));
                lost.extend(gone.iter().map(|g| g.0));
                groups = keep;
                read_version = latest.version_id();
            }
            // The answer did not come (a timeout, a dropped connection) and the files are not in:
            // the commit did not happen, so it is tried again.
            lance::Error::IO { .. } | lance::Error::Timeout { .. } | lance::Error::CommitConflict { .. } => {}
            other => return Err(other.into()),
        }
        last_error = Some(error_text(&lost));
    }
    Err(TableError::Invalid(format!(
        "commit of {} fragment(s) failed {COMMIT_ATTEMPTS} times ({}); nothing of it is in the table",
        groups.len(),
        last_error.unwrap_or_default()
    ))
    .into())
}

fn error_text(lost: &[u64]) -> String {
    if lost.is_empty() { "write contention".into() } else { format!("fragments {lost:?} rewritten meanwhile") }
}

/// Whether every group's new file is in `ds` (this commit, or one that looked like a failure).
fn holds_all(ds: &Dataset, groups: &[DataReplacementGroup]) -> bool {
    groups.iter().all(|g| {
        ds.get_fragment(g.0 as usize).is_some_and(|f| f.metadata().files.iter().any(|file| file.path == g.1.path))
    })
}

/// Whether the group's fragment has, in `latest`, the same rows and the same file for the
/// group's fields as in `planned`: the positions the new file was written for still hold.
fn unchanged_since(planned: &Dataset, latest: &Dataset, group: &DataReplacementGroup) -> bool {
    let file_of = |ds: &Dataset| {
        ds.get_fragment(group.0 as usize).map(|f| {
            let meta = f.metadata().clone();
            let file = meta.files.iter().find(|file| file.fields.iter().any(|id| group.1.fields.contains(id))).cloned();
            (meta.physical_rows, file.map(|file| file.path))
        })
    };
    match (file_of(planned), file_of(latest)) {
        (Some(before), Some(after)) => before == after,
        _ => false,
    }
}
