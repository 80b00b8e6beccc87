//! A real ipykernel driven over ZeroMQ, for the integration tests.
//!
//! `Kernel::launch()` starts `python -m ipykernel_launcher` from the project
//! virtualenv with a fresh connection file (random ports on 127.0.0.1, a random
//! HMAC key), waits until shell and IOPub both answer, and kills the kernel
//! when dropped, so a panicking test leaks no process. Used as `mod kernel;`
//! by each test file that needs it.

#![allow(dead_code)] // each test binary uses a different part of the harness

use jupyter_protocol::{
    ConnectionInfo, ErrorOutput, ExecuteReply, ExecuteRequest, ExecutionState, JupyterMessage, JupyterMessageContent,
    KernelInfoRequest, Media, MediaType, ShutdownRequest, Stdio, Transport,
};
use jupyter_zmq_client::{ClientControlConnection, ClientIoPubConnection, ClientShellConnection};
use std::path::PathBuf;
use std::process::Stdio as ProcessStdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::time::timeout;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a cell may run before the harness gives up on it.
pub const DEFAULT_CELL_TIMEOUT: Duration = Duration::from_secs(120);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// The interpreter with ipykernel and geneva installed: `$GENEVA_TEST_PYTHON`,
/// else `<repo>/.venv/bin/python` (`make develop` builds it).
pub fn test_python() -> Result<PathBuf> {
    let path = match std::env::var_os("GENEVA_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    if !path.exists() {
        return Err(format!(
            "no Python at {}: run `make develop` (it builds .venv with ipykernel and geneva), \
             or set GENEVA_TEST_PYTHON",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// One running kernel and the client sockets talking to it.
pub struct Kernel {
    process: Child,
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
    control: ClientControlConnection,
    dir: tempfile::TempDir,
    /// IOPub messages read ahead by [`Kernel::wait_for_output`], not yet collected.
    read_ahead: std::collections::VecDeque<JupyterMessage>,
}

/// What one `execute_request` produced.
#[derive(Debug)]
pub struct Execution {
    pub msg_id: String,
    /// IOPub messages whose parent is this request, in arrival order, up to and including `idle`.
    pub iopub: Vec<JupyterMessage>,
    pub reply: ExecuteReply,
}

impl Kernel {
    /// Starts a kernel in a fresh temporary directory (its cwd and IPYTHONDIR).
    pub async fn launch() -> Result<Kernel> {
        let python = test_python()?;
        let dir = tempfile::tempdir()?;
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        // Keep the ports bound until the kernel is spawned, so nothing else takes them.
        let (ports, listeners) = jupyter_zmq_client::peek_ports_with_listeners(ip, 5).await?;
        let info = ConnectionInfo {
            transport: Transport::TCP,
            ip: ip.to_string(),
            stdin_port: ports[0],
            control_port: ports[1],
            hb_port: ports[2],
            shell_port: ports[3],
            iopub_port: ports[4],
            signature_scheme: "hmac-sha256".into(),
            key: uuid::Uuid::new_v4().to_string(),
            kernel_name: Some("python3".into()),
        };
        let connection_file = dir.path().join("kernel.json");
        std::fs::write(&connection_file, serde_json::to_vec(&info)?)?;
        let stderr = std::fs::File::create(dir.path().join("kernel.stderr"))?;

        let process = Command::new(&python)
            .args(["-m", "ipykernel_launcher", "-f"])
            .arg(&connection_file)
            .current_dir(dir.path())
            .env("IPYTHONDIR", dir.path().join("ipython"))
            .env("JUPYTER_PLATFORM_DIRS", "1")
            .env("PYDEVD_DISABLE_FILE_VALIDATION", "1")
            .stdin(ProcessStdio::null())
            .stdout(ProcessStdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        drop(listeners);

        // Until the kernel has bound its ports a connect can be refused or reset: retry.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let session = uuid::Uuid::new_v4().to_string();
        let iopub = retry(deadline, || jupyter_zmq_client::create_client_iopub_connection(&info, "", &session)).await?;
        let identity = jupyter_zmq_client::peer_identity_for_session(&session)?;
        let shell = retry(deadline, || {
            jupyter_zmq_client::create_client_shell_connection_with_identity(&info, &session, identity.clone())
        })
        .await?;
        let control = retry(deadline, || jupyter_zmq_client::create_client_control_connection(&info, &session)).await?;
        let mut kernel = Kernel { process, shell, iopub, control, dir, read_ahead: Default::default() };
        kernel.wait_until_ready().await?;
        Ok(kernel)
    }

    /// Kernel process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// The kernel's working directory (a fresh temporary directory).
    pub fn cwd(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// What the kernel wrote to stderr so far (shown when a test fails).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kernel.stderr")).unwrap_or_default()
    }

    /// Sends kernel_info requests until one is answered on shell AND its
    /// status reaches us on IOPub: the SUB socket joins late, so the first
    /// IOPub messages after connecting can be lost.
    async fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait()? {
                return Err(format!("kernel exited during start-up ({status}):\n{}", self.stderr()).into());
            }
            let request: JupyterMessage = KernelInfoRequest {}.into();
            let id = request.header.msg_id.clone();
            self.shell.send(request).await?;
            let reply_deadline = Instant::now() + Duration::from_secs(10);
            if self.read_shell_reply(&id, reply_deadline).await.is_err() {
                continue;
            }
            let iopub_deadline = Instant::now() + Duration::from_secs(1);
            while let Ok(Ok(msg)) = timeout(remaining(iopub_deadline), self.iopub.read()).await {
                if is_child_of(&msg, &id) && matches!(msg.content, JupyterMessageContent::Status(_)) {
                    return Ok(());
                }
            }
        }
        Err(format!("kernel not ready after {STARTUP_TIMEOUT:?}:\n{}", self.stderr()).into())
    }

    /// Runs `code` as a cell and collects everything it produced.
    pub async fn execute(&mut self, code: &str) -> Result<Execution> {
        self.execute_with_timeout(code, DEFAULT_CELL_TIMEOUT).await
    }

    pub async fn execute_with_timeout(&mut self, code: &str, limit: Duration) -> Result<Execution> {
        let msg_id = self.send_execute(code).await?;
        self.collect(&msg_id, limit).await
    }

    /// Sends an execute_request without waiting; returns its msg_id for [`Kernel::collect`].
    pub async fn send_execute(&mut self, code: &str) -> Result<String> {
        let request: JupyterMessage = ExecuteRequest::new(code.to_owned()).into();
        let msg_id = request.header.msg_id.clone();
        self.shell.send(request).await?;
        Ok(msg_id)
    }

    /// Collects IOPub messages of request `msg_id` until its `idle` status, then its execute_reply.
    pub async fn collect(&mut self, msg_id: &str, limit: Duration) -> Result<Execution> {
        let deadline = Instant::now() + limit;
        let mut iopub = Vec::new();
        loop {
            let msg = match self.next_iopub(deadline).await {
                Some(msg) => msg?,
                None => {
                    return Err(format!(
                        "no idle status for {msg_id} within {limit:?}; got {:?}\nkernel stderr:\n{}",
                        iopub.iter().map(|m: &JupyterMessage| m.content.message_type()).collect::<Vec<_>>(),
                        self.stderr()
                    )
                    .into());
                }
            };
            if !is_child_of(&msg, msg_id) {
                continue;
            }
            let idle =
                matches!(&msg.content, JupyterMessageContent::Status(s) if s.execution_state == ExecutionState::Idle);
            iopub.push(msg);
            if idle {
                break;
            }
        }
        let reply = match self.read_shell_reply(msg_id, deadline).await?.content {
            JupyterMessageContent::ExecuteReply(reply) => reply,
            other => return Err(format!("expected execute_reply, got {}", other.message_type()).into()),
        };
        Ok(Execution { msg_id: msg_id.to_owned(), iopub, reply })
    }

    /// Reads IOPub until a stream output of request `msg_id` contains `needle`
    /// (e.g. a cell printing "started" before it blocks). What was read stays
    /// queued for [`Kernel::collect`].
    pub async fn wait_for_output(&mut self, msg_id: &str, needle: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let found = loop {
            let Ok(msg) = timeout(remaining(deadline), self.iopub.read()).await else {
                break false;
            };
            let msg = msg?;
            let hit = is_child_of(&msg, msg_id)
                && matches!(&msg.content, JupyterMessageContent::StreamContent(s) if s.text.contains(needle));
            seen.push(msg);
            if hit {
                break true;
            }
        };
        self.read_ahead.extend(seen);
        if found { Ok(()) } else { Err(format!("{needle:?} not printed by {msg_id} within {limit:?}").into()) }
    }

    /// The next IOPub message (read-ahead first); None at the deadline.
    async fn next_iopub(&mut self, deadline: Instant) -> Option<Result<JupyterMessage>> {
        if let Some(msg) = self.read_ahead.pop_front() {
            return Some(Ok(msg));
        }
        match timeout(remaining(deadline), self.iopub.read()).await {
            Ok(msg) => Some(msg.map_err(Into::into)),
            Err(_) => None,
        }
    }

    async fn read_shell_reply(&mut self, msg_id: &str, deadline: Instant) -> Result<JupyterMessage> {
        loop {
            let msg = timeout(remaining(deadline), self.shell.read())
                .await
                .map_err(|_| format!("no shell reply to {msg_id}"))??;
            if is_child_of(&msg, msg_id) {
                return Ok(msg);
            }
        }
    }

    /// Interrupts the running cell the way Jupyter does for ipykernel
    /// (`interrupt_mode: signal`): SIGINT to the kernel process.
    pub fn interrupt(&self) -> Result<()> {
        let pid = self.pid().ok_or("kernel already exited")?;
        let pid = libc::pid_t::try_from(pid)?;
        // SAFETY: plain syscall on a pid we spawned and still own (not yet reaped).
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Asks the kernel to shut down (control channel) and waits for the process
    /// to exit; kills it if it does not within `limit`. Returns whether it exited cleanly.
    pub async fn shutdown(mut self, limit: Duration) -> Result<bool> {
        let request: JupyterMessage = ShutdownRequest { restart: false }.into();
        self.control.send(request).await?;
        match timeout(limit, self.process.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    eprintln!("kernel exited with {status}; stderr:\n{}", self.stderr());
                }
                Ok(status.success())
            }
            Err(_) => {
                self.process.kill().await?;
                Ok(false)
            }
        }
    }
}

impl Execution {
    /// The execution states of the IOPub status messages, in order.
    pub fn states(&self) -> Vec<ExecutionState> {
        self.iopub
            .iter()
            .filter_map(|m| match &m.content {
                JupyterMessageContent::Status(s) => Some(s.execution_state.clone()),
                _ => None,
            })
            .collect()
    }

    /// Rich outputs: display_data, update_display_data and execute_result bundles.
    pub fn displays(&self) -> Vec<&Media> {
        self.iopub
            .iter()
            .filter_map(|m| match &m.content {
                JupyterMessageContent::DisplayData(d) => Some(&d.data),
                JupyterMessageContent::UpdateDisplayData(d) => Some(&d.data),
                JupyterMessageContent::ExecuteResult(r) => Some(&r.data),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<&ErrorOutput> {
        self.iopub
            .iter()
            .filter_map(|m| match &m.content {
                JupyterMessageContent::ErrorOutput(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Everything written to stdout (or stderr) by this cell.
    pub fn stream(&self, which: Stdio) -> String {
        self.iopub
            .iter()
            .filter_map(|m| match &m.content {
                JupyterMessageContent::StreamContent(s) if same_stream(&s.name, &which) => Some(s.text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Panics with the kernel's own error text if the cell failed.
    pub fn assert_ok(&self) -> &Self {
        let errors: Vec<String> =
            self.errors().iter().map(|e| format!("{}: {}\n{}", e.ename, e.evalue, e.traceback.join("\n"))).collect();
        assert!(errors.is_empty(), "cell raised:\n{}", errors.join("\n"));
        assert_eq!(
            self.reply.status,
            jupyter_protocol::ReplyStatus::Ok,
            "execute_reply status; stderr: {}",
            self.stream(Stdio::Stderr)
        );
        self
    }
}

/// `text/plain` and `text/html` of a rich output bundle.
pub fn plain_and_html(media: &Media) -> (Option<&str>, Option<&str>) {
    let mut plain = None;
    let mut html = None;
    for item in &media.content {
        match item {
            MediaType::Plain(text) => plain = Some(text.as_str()),
            MediaType::Html(text) => html = Some(text.as_str()),
            _ => {}
        }
    }
    (plain, html)
}

/// Calls `connect` until it succeeds or `deadline` passes.
async fn retry<T, F, Fut>(deadline: Instant, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = jupyter_zmq_client::Result<T>>,
{
    loop {
        match connect().await {
            Ok(connection) => return Ok(connection),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e.into()),
        }
    }
}

fn same_stream(a: &Stdio, b: &Stdio) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn is_child_of(msg: &JupyterMessage, msg_id: &str) -> bool {
    msg.parent_header.as_ref().is_some_and(|h| h.msg_id == msg_id)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
