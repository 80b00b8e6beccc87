"""Real object stores on 127.0.0.1 for the upload tests.

S3: moto's server (``moto[server]``, a test dependency). Azure Blob: Azurite, Microsoft's
emulator (npm, installed by ``make setup`` into tests/object-stores). geneva reaches both
through the same ``object_store`` code and the same environment variables a user sets
(``AWS_ENDPOINT_URL``, ``AZURE_STORAGE_USE_EMULATOR``...).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "tests" / "object-stores" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, in Microsoft's docs).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, port: int, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s:\n{log.read_text()[-2000:]}")


class Server:
    scheme = ""
    bucket = "geneva-layers"

    def __init__(self, tmp: Path, argv: list[str], port: int, what: str) -> None:
        self.port = port
        self.log = tmp / f"{what}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        _wait_listening(self.proc, port, what, self.log)

    def uri(self, prefix: str) -> str:
        return f"{self.scheme}://{self.bucket}/{prefix}"

    def stop(self) -> None:
        # In-memory servers: nothing to flush (azurite ignores SIGTERM for 10 s).
        self.proc.kill()
        self.proc.wait()


class S3Server(Server):
    """moto's S3 on 127.0.0.1 with one bucket; `env` is what a user of an S3-compatible store sets."""

    scheme = "s3"

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        moto = Path(sys.executable).with_name("moto_server")
        super().__init__(tmp, [str(moto), "-H", "127.0.0.1", "-p", str(port)], port, "moto")
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        self.client.create_bucket(Bucket=self.bucket)

    def storage_options(self) -> dict[str, str]:
        """What a geneva, pylance or lancedb user passes for this server (Lance's option names)."""
        return {
            "aws_endpoint": self.endpoint,
            "allow_http": "true",
            "aws_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    @property
    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def names(self, prefix: str) -> dict[str, int]:
        """Object name -> size under ``prefix/``."""
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix + "/")
        return {o["Key"].rsplit("/", 1)[-1]: o["Size"] for o in listed.get("Contents", [])}

    def multipart_uploads(self) -> list[str]:
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]


class AzuriteServer(Server):
    """Azurite's blob service on 127.0.0.1 with one container."""

    scheme = "az"

    def __init__(self, tmp: Path) -> None:
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `make setup` (npm ci --prefix tests/object-stores)")
        port = free_port()
        argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
        super().__init__(tmp, [*argv, "--skipApiVersionCheck"], port, "azurite")
        self.endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        self.env = {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}"}
        self.container.create_container()

    def storage_options(self) -> dict[str, str]:
        """Lance's option names for this server: what the workers get too, no environment needed."""
        return {
            "azure_storage_endpoint": self.endpoint,
            "azure_storage_account_name": AZURITE_ACCOUNT,
            "azure_storage_account_key": AZURITE_KEY,
            "allow_http": "true",
        }

    @property
    def container(self):
        from azure.storage.blob import BlobServiceClient

        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )
        return BlobServiceClient.from_connection_string(conn).get_container_client(self.bucket)

    def names(self, prefix: str) -> dict[str, int]:
        return {b.name.rsplit("/", 1)[-1]: b.size for b in self.container.list_blobs(name_starts_with=prefix + "/")}


def environ_without_clouds() -> dict[str, str]:
    """This process's environment without any cloud settings (a test sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE", "GOOGLE_"))}


class StoreProxy:
    """An HTTP proxy on 127.0.0.1 in front of a store. Armed with a pattern, it forwards the first
    matching request and then closes the connection without answering: the write happened, and the
    client cannot tell ("commit result unknown", as after a timeout or a dropped connection). The
    next ``times - 1`` matching requests (the client's retries) are dropped unanswered, unforwarded."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        host, port = urlsplit(upstream).hostname, urlsplit(upstream).port
        self.armed: re.Pattern[str] | None = None
        self.times = 0
        self.dropped: list[str] = []
        self.log: list[str] = []  # every request, with the upstream status
        lock = self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = f"{self.command} {self.path}"
                if proxy.drops(request, forwarded=False):  # a retry after the lost answer
                    self.hang_up()
                    return
                skip = ("connection", "transfer-encoding", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                upstream_conn = http.client.HTTPConnection(host, port, timeout=60)
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                resp = upstream_conn.getresponse()
                data = resp.read()
                upstream_conn.close()
                with lock:
                    proxy.log.append(f"{request} -> {resp.status} {len(data)} {self.client_address[1]}")
                if proxy.drops(request, forwarded=True):
                    self.hang_up()
                    return
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in skip:
                        self.send_header(k, v)
                self.send_header(
                    "Content-Length",
                    resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)),
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def hang_up(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def drops(self, request: str, forwarded: bool) -> bool:
        """Whether to hang up on ``request``: the first match once forwarded, the next ones before."""
        with self._lock:
            if self.armed is None or self.armed.search(request) is None or bool(self.dropped) == forwarded:
                return False
            self.dropped.append(request)
            self.times -= 1
            if self.times == 0:
                self.armed = None
            return True

    def arm(self, pattern: str, times: int = 1) -> None:
        import re

        self.dropped.clear()
        self.armed, self.times = re.compile(pattern), times

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyProcess:
    """A StoreProxy (unarmed) in a process of its own: its sockets are not the test process's."""

    def __init__(self, upstream: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "proxy", upstream], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"the proxy did not start: {self.endpoint!r}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["proxy"]:
    _proxy = StoreProxy(sys.argv[2])
    print(_proxy.endpoint, flush=True)
    _proxy.thread.join()
