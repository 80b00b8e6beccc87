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
    // Two stretches (0..5 in two ranges, then 7..10), each read in one request when joined (rows
    // of a few bytes), else range by range (large rows): the same batches either way.
    // With a budget of 16 bytes (two ids, give or take a sixteenth), each range comes in pieces of
    // at most two rows, never across a range's end, each with its first offset.
    let whole = vec![(0, vec![0, 1, 2]), (3, vec![3, 4]), (7, vec![7, 8, 9])];
    let pieces = vec![(0, vec![0, 1]), (2, vec![2]), (3, vec![3, 4]), (7, vec![7, 8]), (9, vec![9])];
    for (joined, budget, want) in
        [(true, None, &whole), (false, None, &whole), (true, Some(16), &pieces), (false, Some(16), &pieces)]
    {
        let mut reader = backfill::read::RunReader::start(
            &handle,
            uri.clone(),
            Default::default(),
            version,
            0,
            vec![0..3, 3..5, 7..10],
            columns.clone(),
            joined,
            budget,
        );
        let mut got = Vec::new();
        while let Some(batch) = reader.next().await {
            let (first, batch) = batch.unwrap();
            got.push((first, batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()));
        }
        assert_eq!(&got, want, "joined: {joined}, budget: {budget:?}");
    }

    // Rows past the fragment's end: the stretch is refused, naming the rows.
    let mut reader = backfill::read::RunReader::start(
        &handle,
        uri.clone(),
        Default::default(),
        version,
        0,
        vec![6..8, 8..12],
        columns.clone(),
        true,
        None,
    );
    let err = reader.next().await.unwrap().unwrap_err().to_string();
    assert!(err.contains("6..12") && err.contains("10 addressable rows"), "{err}");
    assert!(reader.next().await.is_none());

    // An unknown column fails the first read.
    let mut reader = backfill::read::RunReader::start(
        &handle,
        uri,
        Default::default(),
        version,
        0,
        vec![0..1, 1..2],
        vec!["nope".to_owned()],
        true,
        None,
    );
    assert!(reader.next().await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_bytes_per_row_reads_the_input_columns_pages() {
    // 64 rows of 1,000 bytes beside an id column: the estimate for the blobs is their size, for
    // the ids a few bytes, for both their sum.
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("blobs.lance").to_string_lossy().into_owned();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("blob", DataType::LargeBinary, false),
    ]));
    let blobs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 1000]).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..64)),
            Arc::new(arrow::array::LargeBinaryArray::from_iter_values(blobs.iter())),
        ],
    )
    .unwrap();
    let reader = arrow::record_batch::RecordBatchIterator::new([Ok(batch)], schema);
    table::create(&uri, Box::new(reader), false).await.unwrap();
    let ds = Arc::new(table::open(&uri, None).await.unwrap());
    let per_row = |cols: &[&str]| {
        let cols: Vec<String> = cols.iter().map(|c| (*c).to_owned()).collect();
        let ds = &ds;
        async move { backfill::stored_bytes_per_row(ds, 0, &cols).await.unwrap().unwrap() }
    };
    let blob = per_row(&["blob"]).await;
    let id = per_row(&["id"]).await;
    assert!((1000.0..1100.0).contains(&blob), "{blob}");
    assert!(id < 16.0, "{id}");
    assert!((per_row(&["id", "blob"]).await - (blob + id)).abs() < 1e-6);
    assert_eq!(backfill::stored_bytes_per_row(&ds, 7, &["id".to_owned()]).await.unwrap(), None);

    // Small rows: the manifest's file sizes bound them (no footer read), under 1 KiB a row.
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    let ds = Arc::new(table::open(&uri, None).await.unwrap());
    let bound = backfill::stored_bytes_per_row(&ds, 0, &["id".to_owned()]).await.unwrap().unwrap();
    assert!((8.0..1024.0).contains(&bound), "{bound}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_checkpoint_commit_keeps_unselected_rows() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;

    // Round one: only even ids.
    let ds = table::open(&uri, None).await.unwrap();
    let inputs = vec!["id".to_owned()];
    let plan = backfill::plan(&ds, Some("id % 2 = 0"), &inputs, None, None).await.unwrap();
    assert_eq!(plan.rows(), 5);
    let frag = &plan.fragments[0];
    assert_eq!(frag.offsets, [0, 2, 4, 6, 8]);
    let store = CheckpointStore::new(&uri, "double", "k1");
    let mut uris = Vec::new();
    for chunk in frag.offsets.chunks(2) {
        let rows = backfill::read::read_rows(&uri, &Default::default(), plan.version, frag.fragment_id, chunk, &inputs)
            .await
            .unwrap();
        let input = rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let doubled: Int64Array = input.iter().map(|v| v.map(|x| x * 2)).collect();
        let path = store.uri(frag.fragment_id, &frag.input_digest, chunk);
        checkpoint::write(&path, &Default::default(), &UInt32Array::from(chunk.to_vec()), Arc::new(doubled), None)
            .await
            .unwrap();
        assert!(checkpoint::read(&path, &Default::default()).await.unwrap().is_some());
        uris.push(path);
    }
    let listed: Vec<String> = store.list().await.unwrap().into_iter().map(|f| f.uri).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(backfill::checkpoints_of(frag, &store.list().await.unwrap()).len(), 3);
    let group = [(frag.fragment_id, uris, frag.offsets.clone())];
    let version =
        backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", None, &group).await.unwrap();
    assert!(version.version > plan.version && version.lost.is_empty());
    let expected_even: Vec<Option<i64>> = (0..10).map(|i| (i % 2 == 0).then_some(i * 2)).collect();
    assert_eq!(column(&uri, "double").await, expected_even);

    // Round two: the rows still null; earlier values are kept.
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double"), None).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, [1, 3, 5, 7, 9]);
    let frag = &plan.fragments[0];
    let path = store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    let odd: Int64Array = frag.offsets.iter().map(|o| Some(i64::from(*o) * 2)).collect();
    checkpoint::write(&path, &Default::default(), &UInt32Array::from(frag.offsets.clone()), Arc::new(odd), None)
        .await
        .unwrap();
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", None, &group).await.unwrap();
    assert_eq!(column(&uri, "double").await, (0..10).map(|i| Some(i * 2)).collect::<Vec<_>>());

    // A planned row no checkpoint holds refuses the commit and changes nothing.
    let before = table::open(&uri, None).await.unwrap().version_id();
    let err = backfill::commit_fragments(
        &uri,
        &Default::default(),
        before,
        "double",
        None,
        &[(frag.fragment_id, vec![], vec![3])],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not fully checkpointed"), "{err}");
    assert_eq!(table::open(&uri, None).await.unwrap().version_id(), before);

    // Checkpoints are single Lance files; a gapless run stores only its values.
    let cp = checkpoint::read(&store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets), &Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.offsets.values().to_vec(), frag.offsets);
    let gapless = store.uri(frag.fragment_id, &frag.input_digest, &[4, 5, 6]);
    checkpoint::write(
        &gapless,
        &Default::default(),
        &UInt32Array::from(vec![4, 5, 6]),
        Arc::new(Int64Array::from(vec![8, 10, 12])),
        None,
    )
    .await
    .unwrap();
    let cp = checkpoint::read(&gapless, &Default::default()).await.unwrap().unwrap();
    assert_eq!((cp.offsets.values().to_vec(), cp.values.len()), (vec![4, 5, 6], 3));
    assert!(checkpoint::read(&store.uri(9, "none", &[1]), &Default::default()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_never_filled_is_planned_without_a_scan_and_deletions_are_respected() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    let inputs = vec!["id".to_owned()];
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double"), None).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, (0..10).collect::<Vec<u32>>());

    // With deleted rows the fragment is scanned: the deleted rows are not planned.
    let mut ds = table::open(&uri, None).await.unwrap();
    ds.delete("id >= 7").await.unwrap();
    let plan = backfill::plan(&ds, Some("double IS NULL"), &inputs, Some("double"), None).await.unwrap();
    assert_eq!(plan.fragments[0].offsets, (0..7).collect::<Vec<u32>>());
    assert_eq!(plan.table_rows, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_rejects_unknown_columns_with_close_matches() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("t.lance").to_string_lossy().into_owned();
    let ds = table::create(&uri, ids(3), false).await.unwrap();
    let err = backfill::plan(&ds, Some("idd > 1"), &["id".to_owned()], None, None).await.unwrap_err();
    assert!(err.to_string().contains("did you mean \"id\"?"), "{err}");
    let err = backfill::plan(&ds, None, &["ids".to_owned()], None, None).await.unwrap_err();
    assert!(err.to_string().contains("did you mean \"id\"?"), "{err}");
}

fn int64s(values: &[Option<i64>]) -> Arc<Int64Array> {
    Arc::new(Int64Array::from(values.to_vec()))
}

/// Plans `double` for the rows not computed by UDF version `id` (NULL record or another id).
async fn plan_for(uri: &str, id: i64) -> backfill::Plan {
    let ds = table::open(uri, None).await.unwrap();
    let filter = format!("double_v IS NULL OR double_v <> {id}");
    backfill::plan(&ds, Some(&filter), &["id".to_owned()], Some("double_v"), Some("double_v")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_version_record_is_committed_with_the_values_and_failed_rows_stay_to_do() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    table::add_null_columns(&uri, vec![Field::new("double_v", DataType::Int64, true)]).await.unwrap();
    let plan = plan_for(&uri, 7).await;
    assert_eq!((plan.rows(), plan.by_version.get(&None).copied()), (10, Some(10)));
    let frag = &plan.fragments[0];
    let store = CheckpointStore::new(&uri, "double", "v7");
    let path = store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    let values: Vec<Option<i64>> = (0..10).map(|i| (i != 3).then_some(i * 2)).collect();
    let failed = arrow::array::BooleanArray::from((0..10).map(|i| i == 3).collect::<Vec<_>>());
    checkpoint::write(
        &path,
        &Default::default(),
        &UInt32Array::from(frag.offsets.clone()),
        int64s(&values),
        Some(&failed),
    )
    .await
    .unwrap();
    let stamp = backfill::Stamp { column: "double_v".into(), id: 7 };
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", Some(&stamp), &group).await.unwrap();
    assert_eq!(column(&uri, "double").await, values);
    // The failed row: recorded as computed by no version (0, not NULL: see NOT_COMPUTED).
    let record: Vec<Option<i64>> =
        (0..10).map(|i| Some(if i == 3 { backfill::commit::NOT_COMPUTED } else { 7 })).collect();
    assert_eq!(column(&uri, "double_v").await, record);

    // The same version again: only the failed row is to do.
    let plan = plan_for(&uri, 7).await;
    assert_eq!(plan.fragments[0].offsets, [3]);
    // Another version: every row, counted by the version that computed it.
    let plan = plan_for(&uri, 8).await;
    assert_eq!(plan.rows(), 10);
    assert_eq!(plan.by_version.into_iter().collect::<Vec<_>>(), vec![(None, 1), (Some(7), 9)]);
    let ds = table::open(&uri, None).await.unwrap();
    let counts = table::count_by(&ds, "double_v").await.unwrap();
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![(None, 1), (Some(7), 9)]);

    // Rows outside a partial plan keep their values and their version records.
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, Some("id < 2"), &["id".to_owned()], None, Some("double_v")).await.unwrap();
    let frag = &plan.fragments[0];
    let path = CheckpointStore::new(&uri, "double", "v8").uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    checkpoint::write(
        &path,
        &Default::default(),
        &UInt32Array::from(frag.offsets.clone()),
        int64s(&[Some(100), Some(101)]),
        None,
    )
    .await
    .unwrap();
    let stamp = backfill::Stamp { column: "double_v".into(), id: 8 };
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", Some(&stamp), &group).await.unwrap();
    let mut expected = values.clone();
    expected[..2].copy_from_slice(&[Some(100), Some(101)]);
    assert_eq!(column(&uri, "double").await, expected);
    let mut record = record.clone();
    record[..2].copy_from_slice(&[Some(8), Some(8)]);
    assert_eq!(column(&uri, "double_v").await, record);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_written_before_the_column_had_a_version_record_get_one() {
    // An older geneva wrote `double` alone; the record column is declared later.
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    let ds = table::open(&uri, None).await.unwrap();
    let plan = backfill::plan(&ds, None, &["id".to_owned()], None, None).await.unwrap();
    let frag = &plan.fragments[0];
    let store = CheckpointStore::new(&uri, "double", "old");
    let path = store.uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    let old: Vec<Option<i64>> = (0..10).map(Some).collect();
    checkpoint::write(&path, &Default::default(), &UInt32Array::from(frag.offsets.clone()), int64s(&old), None)
        .await
        .unwrap();
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", None, &group).await.unwrap();
    table::add_null_columns(&uri, vec![Field::new("double_v", DataType::Int64, true)]).await.unwrap();

    // Every row's version is unknown: all are planned, and the commit records the new one.
    let plan = plan_for(&uri, 5).await;
    assert_eq!(plan.by_version.into_iter().collect::<Vec<_>>(), vec![(None, 10)]);
    let frag = &plan.fragments[0];
    let path = CheckpointStore::new(&uri, "double", "new").uri(frag.fragment_id, &frag.input_digest, &frag.offsets);
    let new: Vec<Option<i64>> = (0..10).map(|i| Some(i * 3)).collect();
    checkpoint::write(&path, &Default::default(), &UInt32Array::from(frag.offsets.clone()), int64s(&new), None)
        .await
        .unwrap();
    let stamp = backfill::Stamp { column: "double_v".into(), id: 5 };
    let group = [(frag.fragment_id, vec![path], frag.offsets.clone())];
    backfill::commit_fragments(&uri, &Default::default(), plan.version, "double", Some(&stamp), &group).await.unwrap();
    assert_eq!(column(&uri, "double").await, new);
    assert_eq!(column(&uri, "double_v").await, vec![Some(5); 10]);
    assert_eq!(plan_for(&uri, 5).await.rows(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_file_streamed_run_by_run_is_committed_and_runs_out_of_order_are_refused() {
    let (_dir, uri) = ten_ids_and_an_empty_column().await;
    table::add_null_columns(&uri, vec![Field::new("double_v", DataType::Int64, true)]).await.unwrap();
    let version = table::open(&uri, None).await.unwrap().version().version;
    let handle = tokio::runtime::Handle::current();
    let stamp = || backfill::Stamp { column: "double_v".into(), id: 5 };
    let run = |from: u32, to: u32| backfill::Checkpoint {
        offsets: UInt32Array::from_iter_values(from..to),
        values: int64s(&(from..to).map(|i| Some(i64::from(i) * 2)).collect::<Vec<_>>()),
        failed: None,
    };
    let options = Default::default();
    let start = || backfill::commit::ColumnWriter::start(&handle, &uri, &options, version, "double", stamp(), 0, 10);

    // Not every physical row: none (the caller writes the file at the end instead).
    let short =
        backfill::commit::ColumnWriter::start(&handle, &uri, &options, version, "double", stamp(), 0, 9).await.unwrap();
    assert!(short.is_none());

    // A gap between runs is refused, naming where the next run had to start.
    let mut writer = start().await.unwrap().unwrap();
    writer.send(run(0, 4)).await.unwrap();
    let err = writer.send(run(5, 10)).await.unwrap_err().to_string();
    assert!(err.contains("from offset 4"), "{err}");
    // Finishing with rows missing is refused too.
    let mut writer = start().await.unwrap().unwrap();
    writer.send(run(0, 4)).await.unwrap();
    let err = writer.finish().await.unwrap_err().to_string();
    assert!(err.contains("4 of the fragment's 10 rows"), "{err}");

    let mut writer = start().await.unwrap().unwrap();
    for (from, to) in [(0, 3), (3, 7), (7, 10)] {
        writer.send(run(from, to)).await.unwrap();
    }
    let group = writer.finish().await.unwrap();
    backfill::commit_prepared(&uri, &options, version, vec![group]).await.unwrap();
    assert_eq!(column(&uri, "double").await, (0..10).map(|i| Some(i * 2)).collect::<Vec<_>>());
    assert_eq!(column(&uri, "double_v").await, vec![Some(5); 10]);
}
