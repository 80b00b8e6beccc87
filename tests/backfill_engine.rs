//! The Rust half of a backfill on a real Lance dataset: plan, checkpoint, commit.

use arrow::array::{Array, Int64Array, RecordBatch, RecordBatchIterator, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use geneva::backfill::{self, CheckpointStore, checkpoint};
use geneva::table;
use std::sync::Arc;

fn ids(n: i64) -> Box<dyn arrow::array::RecordBatchReader + Send> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap();
    Box::new(RecordBatchIterator::new([Ok(batch)], schema))
}

async fn column(uri: &str, name: &str) -> Vec<Option<i64>> {
    let ds = table::open(uri, None).await.unwrap();
    let (_, batches) = table::scan(&ds, Some(&[name.to_owned()]), None, None).await.unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().iter().collect::<Vec<_>>())
        .collect()
}

/// A table of ids 0..10 with a declared, never filled Int64 column `double`.
async fn ten_ids_and_an_empty_column() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t.lance").to_string_lossy().into_owned();
    table::create(&uri, ids(10), false).await.unwrap();
    table::add_null_columns(&uri, vec![Field::new("double", DataType::Int64, true)]).await.unwrap();
    (dir, uri)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_reader_reads_each_range_in_order_across_stretches() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    let version = table::open(&uri, None).await.unwrap().version_id();
    let handle = tokio::runtime::Handle::current();
    let columns = vec!["id".to_owned()];
    // Two stretches (0..5 in two ranges, then 7..10), each read in one request.
    let mut reader =
        backfill::read::RunReader::start(&handle, uri.clone(), version, 0, vec![0..3, 3..5, 7..10], columns.clone());
    let mut got = Vec::new();
    while let Some(batch) = reader.next().await {
        let batch = batch.unwrap();
        got.push(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec());
    }
    assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4], vec![7, 8, 9]]);

    // Rows past the fragment's end: the stretch is refused, naming the rows.
    let mut reader =
        backfill::read::RunReader::start(&handle, uri.clone(), version, 0, vec![6..8, 8..12], columns.clone());
    let err = reader.next().await.unwrap().unwrap_err().to_string();
    assert!(err.contains("6..12") && err.contains("10 addressable rows"), "{err}");
    assert!(reader.next().await.is_none());

    // An unknown column fails the first read.
    let mut reader =
        backfill::read::RunReader::start(&handle, uri, version, 0, vec![0..1, 1..2], vec!["nope".to_owned()]);
    assert!(reader.next().await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_checkpoint_commit_keeps_unselected_rows() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;

    // Round one: only even ids.
    let ds = table::open(&uri, None).await.unwrap();
    let inputs = vec!["id".to_owned()];
    let plan = backfill::plan(&ds, Some("id % 2 = 0"), &inputs, None).await.unwrap();
    assert_eq!(plan.rows(), 5);
    let frag = &plan.fragments[0];
    assert_eq!(frag.offsets, [0, 2, 4, 6, 8]);
    let store = CheckpointStore::new(&uri, "double", "k1");
    let mut uris = Vec::new();
    for chunk in frag.offsets.chunks(2) {
        let rows = backfill::read::read_rows(&uri, plan.version, frag.fragment_id, chunk, &inputs).await.unwrap();
        let input = rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let doubled: Int64Array = input.iter().map(|v| v.map(|x| x * 2)).collect();
        let path = store.uri(frag.fragment_id, &frag.input_digest, chunk);
        checkpoint::write(&path, &UInt32Array::from(chunk.to_vec()), Arc::new(doubled)).await.unwrap();
        assert!(checkpoint::read(&path).await.unwrap().is_some());
        uris.push(path);
    }
    let listed: Vec<String> = store.list().await.unwrap().into_iter().map(|f| f.uri).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(backfill::checkpoints_of(frag, &store.list().await.unwrap()).len(), 3);
    let group = [(frag.fragment_id, uris, frag.offsets.clone())];
    let version = backfill::commit_fragments(&uri, plan.version, "double", &group).await.unwrap();
    assert!(version > plan.version);
    let expected_even: Vec<Option<i64>> = (0..10).map(|i| (i % 2 == 0).then_some(i * 2)).collect();
    assert_eq!(column(&uri, "double").await, expected_even);

    // Round two: the rows still null; earlier values are kept.
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double")).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, [1, 3, 5, 7, 9]);
    let frag = &plan.fragments[0];
    let path = store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    let odd: Int64Array = frag.offsets.iter().map(|o| Some(i64::from(*o) * 2)).collect();
    checkpoint::write(&path, &UInt32Array::from(frag.offsets.clone()), Arc::new(odd)).await.unwrap();
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, plan.version, "double", &group).await.unwrap();
    assert_eq!(column(&uri, "double").await, (0..10).map(|i| Some(i * 2)).collect::<Vec<_>>());

    // A planned row no checkpoint holds refuses the commit and changes nothing.
    let before = table::open(&uri, None).await.unwrap().version_id();
    let err =
        backfill::commit_fragments(&uri, before, "double", &[(frag.fragment_id, vec![], vec![3])]).await.unwrap_err();
    assert!(err.to_string().contains("not fully checkpointed"), "{err}");
    assert_eq!(table::open(&uri, None).await.unwrap().version_id(), before);

    // Checkpoints are single Lance files; a gapless run stores only its values.
    let cp = checkpoint::read(&store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets)).await.unwrap().unwrap();
    assert_eq!(cp.offsets.values().to_vec(), frag.offsets);
    let gapless = store.uri(frag.fragment_id, &frag.input_digest, &[4, 5, 6]);
    checkpoint::write(&gapless, &UInt32Array::from(vec![4, 5, 6]), Arc::new(Int64Array::from(vec![8, 10, 12])))
        .await
        .unwrap();
    let cp = checkpoint::read(&gapless).await.unwrap().unwrap();
    assert_eq!((cp.offsets.values().to_vec(), cp.values.len()), (vec![4, 5, 6], 3));
    assert!(checkpoint::read(&store.uri(9, "none", &[1])).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_never_filled_is_planned_without_a_scan_and_deletions_are_respected() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    let inputs = vec!["id".to_owned()];
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double")).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, (0..10).collect::<Vec<u32>>());

    // With deleted rows the fragment is scanned: the deleted rows are not planned.
    let mut ds = table::open(&uri, None).await.unwrap();
    ds.delete("id >= 7").await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double")).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, (0..7).collect::<Vec<u32>>());
    assert_eq!(plan.table_rows, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_rejects_unknown_columns_with_close_matches() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t.lance").to_string_lossy().into_owned();
    let ds = table::create(&uri, ids(3), false).await.unwrap();
    let err = backfill::plan(&ds, Some("idd > 1"), &["id".to_owned()], None).await.unwrap_err();
    assert!(err.to_string().contains("did you mean \"id\"?"), "{err}");
    let err = backfill::plan(&ds, None, &["ids".to_owned()], None).await.unwrap_err();
    assert!(err.to_string().contains("did you mean \"id\"?"), "{err}");
}
