//! A job that outlives its kernel: a real kernel enters a Ray Client session on a real Ray head
//! (tests/python/ray_head.py, its own virtualenv), starts a backfill whose driver runs on the
//! cluster, and is SIGKILLed mid-job; a new kernel enters the same cluster, finds the job in
//! `db.list_jobs`, reattaches with `%backfill --attach`, and sees it finish: counts exact,
//! values checked with pylance.

mod kernel;

use jupyter_protocol::Stdio;
use kernel::{Kernel, test_python};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio as ProcessStdio};
use std::time::{Duration, Instant};

/// A Ray head for as long as this value lives (the helper stops it when its stdin closes).
struct Head {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Head {
    fn start() -> Head {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ray_head.py");
        let mut child = Command::new(test_python().expect("python"))
            .arg(&script)
            .arg(dir.path())
            .stdin(ProcessStdio::piped())
            .stdout(ProcessStdio::piped())
            .spawn()
            .expect("start the Ray head helper");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("head address");
        assert!(!line.trim().is_empty(), "the Ray head did not start");
        Head { child, addr: line.trim().to_string(), _dir: dir }
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the helper stops the head by its pid
        let _ = self.child.wait();
    }
}

fn cluster_cell(addr: &str, zips: &std::path::Path) -> String {
    format!(
        "%%geneva_cluster\naddr: {addr}\nuse_portforwarding: false\nskip_site_packages: true\nupload_dir: {}",
        zips.display()
    )
}

const START: &str = r#"
import pyarrow as pa, geneva

@geneva.udf(data_type=pa.int64(), checkpoint_size=10)
def slow(x: int) -> int:
    import time
    time.sleep(0.02)
    return 3 * x

db = geneva.connect(LAKE)
tbl = db.create_table("t", pa.table({"x": pa.array(range(800), pa.int64())}))
tbl.add_columns({"y": slow})
job = tbl.backfill_async("y", concurrency=1)
print("job", job.job_id, flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_detached_job_survives_its_kernel_and_a_new_kernel_reattaches() {
    let head = Head::start();
    let mut first = Kernel::launch().await.expect("launch kernel");
    // Not under the first kernel's folder: the harness removes that folder with the kernel.
    let work = tempfile::tempdir().expect("tempdir");
    let lake = work.path().join("lake");
    let zips = work.path().join("zips");
    first.execute("%load_ext geneva").await.expect("execute").assert_ok();
    first.execute(&cluster_cell(&head.addr, &zips)).await.expect("execute").assert_ok();
    let started =
        first.execute(&START.replace("LAKE", &format!("{:?}", lake.display().to_string()))).await.expect("execute");
    started.assert_ok();
    let out = started.stream(Stdio::Stdout);
    let job_id = out.lines().find_map(|l| l.strip_prefix("job ")).expect("a job id").trim().to_string();

    // Mid-job: some rows recorded, not all.
    let record = lake.join("_geneva/jobs").join(format!("{job_id}.json"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: u64 = std::fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["rows_processed"].as_u64())
            .unwrap_or(0);
        if done > 0 {
            assert!(done < 800, "the job ended before the kernel was killed");
            break;
        }
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = first.pid().expect("pid") as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    drop(first);

    let mut second = Kernel::launch().await.expect("launch kernel");
    second.execute("%load_ext geneva").await.expect("execute").assert_ok();
    second.execute(&cluster_cell(&head.addr, &zips)).await.expect("execute").assert_ok();
    let code = format!(
        "db = geneva.connect({lake:?})\n\
         print('running', [r.job_id for r in db.list_jobs(status='running')], flush=True)\n\
         r = %backfill --attach {job_id}\n\
         import lance\n\
         ys = lance.dataset({table:?}).to_table().sort_by('x')['y'].to_pylist()\n\
         print('result', r.rows_processed, r.rows_failed, ys == [3 * x for x in range(800)], db.get_job({job_id:?}).status)",
        lake = lake.display().to_string(),
        table = lake.join("t.lance").display().to_string(),
    );
    let attached = second.execute(&format!("import geneva\n{code}")).await.expect("execute");
    attached.assert_ok();
    let out = attached.stream(Stdio::Stdout);
    assert!(out.contains(&format!("running ['{job_id}']")), "{out}");
    assert!(out.contains("result 800 0 True done"), "{out}");
    assert!(second.shutdown(Duration::from_secs(30)).await.expect("shutdown"));
    drop(head);
}
