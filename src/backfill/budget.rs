//! Batches bounded by the bytes their rows take decoded (in memory), not by their row count nor
//! by their size as stored: Lance compresses pages, so 1 MiB values may take a few bytes on disk.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use std::ops::Range;

/// Whether `ty`'s values vary in size per row (strings, binaries, lists, ...): a batch of them is
/// sized by reading it, not from its row count.
pub fn variable_width(ty: &DataType) -> bool {
    ty.primitive_width().is_none() && !matches!(ty, DataType::Boolean | DataType::Null)
}

/// The bytes each row of `batch` takes in memory: its variable-length values plus its offsets
/// and fixed-width slots; a row of a nested column gets that column's average.
pub fn row_bytes(batch: &RecordBatch) -> Vec<u64> {
    let mut out = vec![0u64; batch.num_rows()];
    for column in batch.columns() {
        add_row_bytes(column.as_ref(), &mut out);
    }
    out
}

fn add_row_bytes(array: &dyn Array, out: &mut [u64]) {
    fn by_offsets<O: arrow::array::OffsetSizeTrait>(offsets: &[O], width: u64, out: &mut [u64]) {
        for (row, pair) in out.iter_mut().zip(offsets.windows(2)) {
            *row += (pair[1] - pair[0]).as_usize() as u64 + width;
        }
    }
    match array.data_type() {
        DataType::Binary => by_offsets(array.as_binary::<i32>().value_offsets(), 4, out),
        DataType::LargeBinary => by_offsets(array.as_binary::<i64>().value_offsets(), 8, out),
        DataType::Utf8 => by_offsets(array.as_string::<i32>().value_offsets(), 4, out),
        DataType::LargeUtf8 => by_offsets(array.as_string::<i64>().value_offsets(), 8, out),
        ty => {
            let width = match ty.primitive_width() {
                Some(width) => width as u64,
                None if out.is_empty() => 0,
                None => {
                    let data = array.to_data();
                    data.get_slice_memory_size().unwrap_or_else(|_| array.get_array_memory_size()) as u64
                        / out.len() as u64
                }
            };
            out.iter_mut().for_each(|row| *row += width);
        }
    }
}

/// Cuts rows of `sizes` bytes into consecutive runs of at most `budget` bytes each; a row larger
/// than the budget is a run of its own.
pub fn cut(sizes: &[u64], budget: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut held) = (0usize, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && held + size > budget {
            out.push(start..i);
            (start, held) = (i, 0);
        }
        held += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Batches of consecutive rows gathered into pieces of at most `budget` bytes (a row larger than
/// the budget alone), never across a boundary given by `flush`: `push` slices of rows as they are
/// read (zero-copy), take the pieces that are complete.
pub struct Gather {
    budget: u64,
    held: Vec<RecordBatch>,
    held_bytes: u64,
    /// The physical offset of the first row held (or of the next row pushed).
    first: u32,
}

impl Gather {
    /// Pieces of `budget` bytes give or take a sixteenth (a planned batch is a whole number of rows
    /// near the budget: 4 rows of 1 MiB and their offsets are one batch of 4 MiB), from offset `first`.
    pub fn new(budget: u64, first: u32) -> Self {
        let budget = budget.max(1);
        Self { budget: budget + budget / 16, held: Vec::new(), held_bytes: 0, first }
    }

    /// Adds `batch`, the rows following those pushed before; the pieces it completed, each as
    /// (its first physical offset, its rows).
    pub fn push(&mut self, batch: &RecordBatch) -> arrow::error::Result<Vec<(u32, RecordBatch)>> {
        let mut out = Vec::new();
        let mut start = 0usize; // the first row of `batch` not yet held
        for (i, size) in row_bytes(batch).into_iter().enumerate() {
            if self.held_bytes + size > self.budget && (i > start || !self.held.is_empty()) {
                if i > start {
                    self.held.push(batch.slice(start, i - start));
                }
                out.extend(self.flush()?);
                start = i;
            }
            self.held_bytes += size;
        }
        if start < batch.num_rows() {
            self.held.push(batch.slice(start, batch.num_rows() - start));
        }
        if self.held_bytes >= self.budget {
            out.extend(self.flush()?);
        }
        Ok(out)
    }

    /// The rows held as one piece (None when none are held).
    pub fn flush(&mut self) -> arrow::error::Result<Option<(u32, RecordBatch)>> {
        let Some(schema) = self.held.first().map(RecordBatch::schema) else { return Ok(None) };
        let batch = if self.held.len() == 1 {
            self.held.pop().unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))
        } else {
            arrow::compute::concat_batches(&schema, &self.held)?
        };
        self.held.clear();
        self.held_bytes = 0;
        let first = self.first;
        self.first += batch.num_rows() as u32;
        Ok(Some((first, batch)))
    }

    /// The largest row of `batch`, in bytes (what the next read's row count is sized by).
    pub fn largest_row(batch: &RecordBatch) -> u64 {
        row_bytes(batch).into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, LargeBinaryArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(sizes: &[usize]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::LargeBinary, false),
        ]));
        let values: Vec<Vec<u8>> = sizes.iter().map(|n| vec![7u8; *n]).collect();
        let ids = Int64Array::from_iter_values(0..sizes.len() as i64);
        let binary = LargeBinaryArray::from_iter_values(values.iter());
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(binary)]).unwrap()
    }

    #[test]
    fn row_bytes_count_values_offsets_and_slots() {
        assert_eq!(row_bytes(&batch(&[10, 0, 1000])), vec![26, 16, 1016]);
        assert_eq!(row_bytes(&batch(&[10, 0, 1000]).slice(1, 2)), vec![16, 1016]);
    }

    #[test]
    fn cut_keeps_runs_within_the_budget_and_a_larger_row_alone() {
        assert_eq!(cut(&[3, 3, 3, 3, 3], 7), vec![0..2, 2..4, 4..5]);
        assert_eq!(cut(&[1, 100, 1, 1], 10), vec![0..1, 1..2, 2..4]);
        assert_eq!(cut(&[100], 10), vec![0..1]);
        assert!(cut(&[], 10).is_empty());
    }

    #[test]
    fn gather_joins_small_reads_and_splits_large_ones() {
        let mut gather = Gather::new(2800, 100); // 2,975 with the slack
        // Reads of 1, 2 then 4 rows of ~1 KiB (1,016 bytes with their id and offset; a third would
        // pass 2,975) and one of 5 KiB: pieces of two rows across reads, the large row alone.
        let mut got = gather.push(&batch(&[1000])).unwrap();
        got.extend(gather.push(&batch(&[1000, 1000])).unwrap());
        got.extend(gather.push(&batch(&[1000, 5000, 1000, 1000])).unwrap());
        got.extend(gather.flush().unwrap());
        let shapes: Vec<(u32, usize)> = got.iter().map(|(first, b)| (*first, b.num_rows())).collect();
        assert_eq!(shapes, vec![(100, 2), (102, 2), (104, 1), (105, 2)]);
        assert_eq!(got[2].1.column(1).as_binary::<i64>().value(0).len(), 5000);
    }
}
