//! Interrupting a blocking backfill in a real kernel: the Ray tasks stop, the
//! table is left at its last committed version, and a rerun resumes.

mod kernel;

use jupyter_protocol::{ReplyStatus, Stdio};
use kernel::Kernel;
use std::time::{Duration, Instant};

const SETUP: &str = r#"
import time, pyarrow as pa, geneva
db = geneva.connect("lake")
tbl = db.create_table("t", pa.table({"id": pa.array(range(4000), pa.int64())}))

@geneva.udf(data_type=pa.int64())
def slow(id: int) -> int:
    time.sleep(0.003)
    with open("calls", "a") as f:
        f.write("1\n")
    return id

tbl.add_columns({"slow": slow})
version = tbl.version
"#;

fn calls(kernel: &Kernel) -> usize {
    std::fs::read_to_string(kernel.cwd().join("calls")).map(|t| t.lines().count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupting_a_backfill_cancels_tasks_and_a_rerun_resumes() {
    let mut kernel = Kernel::launch().await.expect("launch kernel");
    kernel.execute(SETUP).await.expect("execute").assert_ok();

    let id = kernel
        .send_execute("print('started', flush=True)\ntbl.backfill('slow', checkpoint_size=100, concurrency=2)")
        .await
        .expect("send");
    kernel.wait_for_output(&id, "started", Duration::from_secs(60)).await.expect("cell started");
    let deadline = Instant::now() + Duration::from_secs(120);
    while calls(&kernel) < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls(&kernel) >= 600, "the backfill did not get going");
    kernel.interrupt().expect("SIGINT");

    let run = kernel.collect(&id, Duration::from_secs(60)).await.expect("cell ends after interrupt");
    assert_eq!(run.reply.status, ReplyStatus::Error);
    let names: Vec<&str> = run.errors().iter().map(|e| e.ename.as_str()).collect();
    assert_eq!(names, ["KeyboardInterrupt"], "{:?}", run.errors());

    // The Ray tasks were cancelled: nothing keeps computing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_cancel = calls(&kernel);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls(&kernel), after_cancel, "UDF calls continued after the interrupt");
    assert!(after_cancel < 4000);

    let check = kernel.execute("print(tbl.version == version, tbl.count_rows('slow IS NULL'))").await.expect("execute");
    check.assert_ok();
    assert_eq!(check.stream(Stdio::Stdout).trim(), "True 4000", "table left at its last committed version");

    let rerun = kernel
        .execute(
            "r = tbl.backfill('slow', checkpoint_size=100, concurrency=2)\n\
             print(r.rows_resumed, r.rows_processed, tbl.to_arrow()['slow'].to_pylist() == list(range(4000)))",
        )
        .await
        .expect("execute");
    rerun.assert_ok();
    let out = rerun.stream(Stdio::Stdout);
    let fields: Vec<&str> = out.split_whitespace().collect();
    let resumed: usize = fields[0].parse().unwrap();
    let processed: usize = fields[1].parse().unwrap();
    assert_eq!(fields[2], "True", "{out}");
    assert_eq!(resumed + processed, 4000);
    assert!(resumed >= 400, "checkpoints were kept: {out}");
    // Each row computed at most twice: only batches cut short by the interrupt ran again.
    assert!(calls(&kernel) <= 4000 + 2 * 100, "calls {} for 4000 rows", calls(&kernel));

    // geneva stops its embedded Ray when the kernel is asked to shut down, so
    // the kernel exits at once instead of after ipykernel's 30 s child-reaping.
    let started = Instant::now();
    assert!(kernel.shutdown(Duration::from_secs(20)).await.expect("shutdown"), "kernel exits cleanly");
    assert!(started.elapsed() < Duration::from_secs(20));
}
