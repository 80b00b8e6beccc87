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
