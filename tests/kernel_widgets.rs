//! The notebook experience in a real ipykernel: the quickstart's cells run as a
//! notebook runs them; `%backfill` opens a widget comm and streams progress over it;
//! the final state replaces the live widget; an interrupt cancels the job and leaves
//! the table as it was.

mod kernel;

use jupyter_protocol::{JupyterMessageContent, ReplyStatus, Stdio};
use kernel::{Execution, Kernel};
use std::time::{Duration, Instant};

/// Code cells of notebooks/quickstart.ipynb, in order.
fn quickstart_cells() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/quickstart.ipynb");
    let nb: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| match &c["source"] {
            serde_json::Value::Array(lines) => lines.iter().map(|l| l.as_str().unwrap()).collect(),
            other => other.as_str().unwrap().to_owned(),
        })
        .collect()
}

/// (comm ids opened for ipywidgets HTML models, HTML values sent over them in order).
fn widget_values(run: &Execution) -> (Vec<String>, Vec<String>) {
    let mut comms = Vec::new();
    let mut values = Vec::new();
    for msg in &run.iopub {
        match &msg.content {
            JupyterMessageContent::CommOpen(open)
                if open.target_name == "jupyter.widget" && open.data["state"]["_model_name"] == "HTMLModel" =>
            {
                comms.push(open.comm_id.0.clone());
                if let Some(v) = open.data["state"]["value"].as_str() {
                    values.push(v.to_owned());
                }
            }
            JupyterMessageContent::CommMsg(m) if comms.contains(&m.comm_id.0) => {
                if let Some(v) = m.data.get("state").and_then(|s| s["value"].as_str()) {
                    values.push(v.to_owned());
                }
            }
            _ => {}
        }
    }
    (comms, values)
}

/// The last update_display_data of a cell: the final state that replaces the live widget.
fn final_update(run: &Execution) -> &jupyter_protocol::Media {
    run.iopub
        .iter()
        .rev()
        .find_map(|m| match &m.content {
            JupyterMessageContent::UpdateDisplayData(d) => Some(&d.data),
            _ => None,
        })
        .expect("update_display_data with the final state")
}

/// `data-percent='NN'` and the stage of a progress HTML.
fn percent_and_stage(html: &str) -> (u32, String) {
    let attr = |name: &str| {
        let start = html.find(&format!("{name}='")).map(|i| i + name.len() + 2).unwrap();
        html[start..].split('\'').next().unwrap().to_owned()
    };
    (attr("data-percent").parse().unwrap(), attr("data-stage"))
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_backfills_stream_progress_over_a_widget_and_interrupts_cancel() {
    let mut kernel = Kernel::launch().await.expect("launch kernel");
    for cell in quickstart_cells() {
        let run = kernel.execute_with_timeout(&cell, Duration::from_secs(300)).await.expect("execute");
        run.assert_ok();
        if cell.starts_with("%backfill") {
            let (comms, values) = widget_values(&run);
            assert_eq!(comms.len(), 1, "one widget per %backfill: {cell}");
            assert!(!values.is_empty(), "widget values: {cell}");
            // The output is finally replaced by static HTML (kept in saved notebooks).
            let (plain, html) = kernel::plain_and_html(final_update(&run));
            assert!(plain.unwrap().contains("[done] 100.0%"), "{plain:?}");
            assert!(html.unwrap().contains("data-stage='done'"));
        }
    }

    // A deliberately slow UDF: the widget reports at least 3 growing states while it runs.
    let setup = r#"
import time
slow_tbl = db.create_table("slow", pa.table({"id": pa.array(range(3000), pa.int64())}))

@geneva.udf(data_type=pa.int64())
def slow_id(id: int) -> int:
    time.sleep(0.002)
    with open("calls", "a") as f:
        f.write("1\n")
    return id

slow_tbl.add_columns({"slow_id": slow_id})
"#;
    kernel.execute(setup).await.expect("execute").assert_ok();
    let run = kernel
        .execute_with_timeout(
            "%backfill slow_tbl slow_id --checkpoint-size 100 --concurrency 8",
            Duration::from_secs(300),
        )
        .await
        .expect("execute");
    run.assert_ok();
    let (_, values) = widget_values(&run);
    let states: Vec<(u32, String)> = values.iter().map(|v| percent_and_stage(v)).collect();
    let running: Vec<u32> = states.iter().filter(|(_, s)| s == "running").map(|(p, _)| *p).collect();
    let mut distinct = running.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3, "at least 3 progress updates while running: {states:?}");
    assert!(states.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back: {states:?}");
    let (_, html) = kernel::plain_and_html(final_update(&run));
    let html = html.expect("final HTML");
    assert_eq!(percent_and_stage(html), (100, "done".to_owned()));
    assert!(html.contains("3,000 / 3,000 rows"), "{html}");

    // --async: the cell returns the Job at once (also in `_`); its display keeps updating while
    // other cells run; job.cancel() stops it.
    kernel
        .execute(
            "async_tbl = db.create_table('async', pa.table({'id': pa.array(range(3000), pa.int64())}))\n\
             async_tbl.add_columns({'slow_id': slow_id})",
        )
        .await
        .expect("execute")
        .assert_ok();
    let started = kernel
        .execute("job = %backfill async_tbl slow_id --async --checkpoint-size 100 --concurrency 8\nprint(job.status)")
        .await
        .expect("execute");
    started.assert_ok();
    assert_ne!(started.stream(Stdio::Stdout).trim(), "done", "the cell returned before the job ended");
    let other = kernel.execute("time.sleep(1.5); print(type(_).__name__, 1 + 1)").await.expect("execute");
    other.assert_ok();
    assert_eq!(other.stream(Stdio::Stdout).trim(), "Job 2");
    let updates_meanwhile =
        other.iopub.iter().filter(|m| matches!(m.content, JupyterMessageContent::CommMsg(_))).count();
    assert!(updates_meanwhile >= 2, "the display kept updating while another cell ran: {updates_meanwhile}");
    let done = kernel.execute("print(job.result(timeout=120).rows_processed)").await.expect("execute");
    done.assert_ok();
    assert_eq!(done.stream(Stdio::Stdout).trim(), "3000");
    let cancel = kernel
        .execute(
            "async_tbl.add_columns({'again': slow_id})\n\
             job2 = %backfill async_tbl again --async --checkpoint-size 100 --concurrency 2\n\
             time.sleep(0.5); job2.cancel()\n\
             try:\n    job2.result(timeout=60)\nexcept geneva.exceptions.BackfillCancelled:\n    pass\n\
             print(job2.status, async_tbl.count_rows('again IS NULL'))",
        )
        .await
        .expect("execute");
    cancel.assert_ok();
    assert_eq!(cancel.stream(Stdio::Stdout).trim(), "cancelled 3000");

    // Interrupting a blocking %backfill: the cell ends, the job is cancelled, the table unchanged.
    let setup = r#"
stop_tbl = db.create_table("stop", pa.table({"id": pa.array(range(4000), pa.int64())}))

@geneva.udf(data_type=pa.int64())
def slower(id: int) -> int:
    time.sleep(0.003)
    with open("calls2", "a") as f:
        f.write("1\n")
    return id

stop_tbl.add_columns({"slower": slower})
stop_version = stop_tbl.version
"#;
    kernel.execute(setup).await.expect("execute").assert_ok();
    let id = kernel
        .send_execute("print('started', flush=True)\n%backfill stop_tbl slower --checkpoint-size 100 --concurrency 2")
        .await
        .expect("send");
    kernel.wait_for_output(&id, "started", Duration::from_secs(60)).await.expect("cell started");
    let calls = || std::fs::read_to_string(kernel.cwd().join("calls2")).map(|t| t.lines().count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while calls() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if calls() < 300 {
        let run = kernel.collect(&id, Duration::from_secs(5)).await;
        panic!("the backfill did not get going: {run:?}\nstderr: {}", kernel.stderr());
    }
    kernel.interrupt().expect("SIGINT");
    let run = kernel.collect(&id, Duration::from_secs(90)).await.expect("cell ends after the interrupt");
    assert_eq!(run.reply.status, ReplyStatus::Error);
    assert_eq!(run.errors().iter().map(|e| e.ename.as_str()).collect::<Vec<_>>(), ["KeyboardInterrupt"]);
    let (_, html) = kernel::plain_and_html(final_update(&run));
    let html = html.expect("final HTML");
    assert_eq!(percent_and_stage(html).1, "cancelled");
    assert!(html.contains("interrupted"), "{html}");
    let check = kernel
        .execute("print(stop_tbl.version == stop_version, stop_tbl.count_rows('slower IS NULL'))")
        .await
        .expect("execute");
    check.assert_ok();
    assert_eq!(check.stream(Stdio::Stdout).trim(), "True 4000");

    // A session still active when the kernel shuts down is exited (Ray shut down first), so
    // the kernel exits at once and leaves no Ray process behind.
    let enter = kernel.execute("%%geneva_cluster\nray_init_kwargs: {num_cpus: 1}").await.expect("execute");
    enter.assert_ok();
    let session_dir = kernel
        .execute("import ray; print(ray._private.worker._global_node.get_session_dir_path())")
        .await
        .expect("execute");
    session_dir.assert_ok();
    let session_dir = session_dir.stream(Stdio::Stdout).trim().to_owned();
    let ray_processes = || {
        let out = std::process::Command::new("pgrep").args(["-f", &session_dir]).output().expect("pgrep");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(ray_processes() > 0, "the session's Ray runs ({session_dir})");
    let started = Instant::now();
    assert!(kernel.shutdown(Duration::from_secs(30)).await.expect("shutdown"));
    assert!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ray_processes() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ray_processes(), 0, "Ray processes of the session left running after the kernel shut down");
}
