//! `%load_ext geneva` and `%geneva` in a real ipykernel, observed on the wire.

mod kernel;

use geneva::platform::PlatformFacts;
use jupyter_protocol::{ExecutionState, ReplyStatus, Stdio};
use kernel::{Kernel, plain_and_html};
use std::time::Duration;

/// Runs `code` and returns its stdout, failing the test on any error.
async fn stdout_of(kernel: &mut Kernel, code: &str) -> String {
    let run = kernel.execute(code).await.expect("execute");
    run.assert_ok();
    run.stream(Stdio::Stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn load_ext_then_geneva_shows_the_host_report() {
    let mut kernel = Kernel::launch().await.expect("launch kernel");

    let load = kernel.execute("%load_ext geneva").await.expect("execute");
    load.assert_ok();
    assert_eq!(load.states(), [ExecutionState::Busy, ExecutionState::Idle]);
    assert!(load.displays().is_empty(), "loading displays nothing");

    let report = kernel.execute("%geneva").await.expect("execute");
    report.assert_ok();
    assert_eq!(report.states(), [ExecutionState::Busy, ExecutionState::Idle]);
    let displays = report.displays();
    assert_eq!(displays.len(), 1, "one display_data: {:?}", report.iopub);
    let (plain, html) = plain_and_html(displays[0]);
    let plain = plain.expect("text/plain in the bundle");
    let html = html.expect("text/html in the bundle");

    // What the report must say, from the crate itself and from the kernel's own Python.
    let host = PlatformFacts::host();
    let python = stdout_of(&mut kernel, "import platform; print(platform.python_version())").await;
    let best_tag = stdout_of(&mut kernel, "from packaging.tags import sys_tags; print(next(iter(sys_tags())))").await;
    let expected = [
        env!("CARGO_PKG_VERSION").to_owned(),
        host.os.to_string(),
        host.arch.clone(),
        host.libc.describe(),
        format!("cpython {python}"),
        best_tag,
    ];
    for fact in &expected {
        assert!(plain.contains(fact.as_str()), "text/plain lacks {fact:?}:\n{plain}");
        assert!(html.contains(fact.as_str()), "text/html lacks {fact:?}:\n{html}");
    }
    assert!(html.contains("<table>"), "HTML report is a table: {html}");

    // Loading and the report import neither Ray nor pyarrow.
    let heavy = stdout_of(&mut kernel, "import sys; print([m for m in ('ray', 'pyarrow') if m in sys.modules])").await;
    assert_eq!(heavy, "[]");

    assert!(kernel.shutdown(Duration::from_secs(20)).await.expect("shutdown"), "kernel exits cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_geneva_argument_is_a_usage_error_not_a_traceback() {
    let mut kernel = Kernel::launch().await.expect("launch kernel");
    kernel.execute("%load_ext geneva").await.expect("execute").assert_ok();

    let run = kernel.execute("%geneva --bogus").await.expect("execute");
    let stderr = run.stream(Stdio::Stderr);
    assert!(stderr.contains("UsageError"), "stderr: {stderr:?}; iopub: {:?}", run.iopub);
    assert!(stderr.contains("--bogus"), "names the bad argument: {stderr:?}");
    assert!(run.errors().is_empty(), "no traceback for an input mistake: {:?}", run.errors());
    assert!(run.displays().is_empty());

    let negative = kernel.execute("%geneva --tags -3").await.expect("execute");
    assert!(negative.stream(Stdio::Stderr).contains("--tags must be 0 or more"));
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_stops_a_running_cell_and_the_kernel_lives_on() {
    let mut kernel = Kernel::launch().await.expect("launch kernel");
    let id = kernel.send_execute("import time\nprint('started', flush=True)\ntime.sleep(120)").await.expect("send");
    kernel.wait_for_output(&id, "started", Duration::from_secs(30)).await.expect("cell started");
    kernel.interrupt().expect("SIGINT");

    let run = kernel.collect(&id, Duration::from_secs(30)).await.expect("cell ends after interrupt");
    assert_eq!(run.reply.status, ReplyStatus::Error);
    let names: Vec<&str> = run.errors().iter().map(|e| e.ename.as_str()).collect();
    assert_eq!(names, ["KeyboardInterrupt"]);

    assert_eq!(stdout_of(&mut kernel, "print(6 * 7)").await, "42", "kernel still answers");
    assert!(kernel.shutdown(Duration::from_secs(20)).await.expect("shutdown"));
}
