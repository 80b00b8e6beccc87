"""Packing the environment into content-addressed layers: real files, real zips, a real killed writer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import geneva.package
import pytest
from conftest import run_geneva
from geneva.exceptions import GenevaError, InvalidInputError
from test_package import NATIVE, PURE, installed


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A workspace with code, data, ignored files and secrets; a small site-packages; a fresh cache."""
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "__init__.py").write_text("X = 1\n")
    (ws / "pkg" / "model.py").write_text("def f():\n    return 2\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (ws / "run.sh").chmod(0o755)
    (ws / ".gitignore").write_text("scratch/\n*.log\n")
    (ws / "scratch").mkdir()
    (ws / "scratch" / "big.bin").write_bytes(b"x" * 1000)
    (ws / "debug.log").write_text("noise")
    (ws / ".env").write_text("TOKEN=secret")
    (ws / "server.pem").write_text("-----BEGIN-----")
    (ws / "__pycache__").mkdir()
    (ws / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (ws / "venv").mkdir()
    (ws / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (ws / "data.lance").mkdir()
    (ws / "data.lance" / "f.bin").write_bytes(b"lance")
    monkeypatch.setenv("GENEVA_CACHE_DIR", str(tmp_path / "cache"))
    site = installed(None, PURE)
    return {"ws": ws, "site": site, "up": tmp_path / "up", "tmp": tmp_path}


def pack(env, **kwargs):
    return geneva.package.pack(
        upload_dir=env["up"], workspace=[("workspace", env["ws"])], site_packages=[env["site"]], **kwargs
    )


def with_own_site_packages(env):
    """``env`` with a copy of the shared site-packages: a folder this process never packed
    (a pack keeps each folder's scan in memory while nothing under it changes)."""
    site = env["tmp"] / "site-packages"
    shutil.copytree(env["site"], site)
    return {**env, "site": site}


def layer(manifest, name):
    (found,) = [layer for layer in manifest["layers"] if layer["name"] == name]
    return found


def test_workspace_layer_round_trips_byte_identical(env) -> None:
    manifest = pack(env)
    ws = layer(manifest, "workspace")
    assert ws["files"] == 4
    extracted = geneva.package.extract_layer(ws["shards"][0]["uri"], env["tmp"] / "extract")
    shipped = sorted(str(p.relative_to(extracted)) for p in extracted.rglob("*") if p.is_file())
    # Not: gitignored files, secrets, __pycache__, a virtualenv, a Lance dataset.
    assert shipped == [".gitignore", "pkg/__init__.py", "pkg/model.py", "run.sh"]
    for rel in shipped:
        assert (extracted / rel).read_bytes() == (env["ws"] / rel).read_bytes()
    assert os.access(extracted / "run.sh", os.X_OK)
    assert sorted(manifest["secrets_left_out"]) == ["workspace/.env", "workspace/server.pem"]


def test_layers_are_deterministic_and_content_addressed(env, monkeypatch) -> None:
    first = pack(env)
    # A cold rebuild elsewhere gives the same names and the same bytes.
    monkeypatch.setenv("GENEVA_CACHE_DIR", str(env["tmp"] / "cache2"))
    env2 = {**env, "up": env["tmp"] / "up2"}
    second = pack(env2)
    assert first["digest"] == second["digest"]
    for a, b in zip(first["layers"], second["layers"], strict=True):
        for sa, sb in zip(a["shards"], b["shards"], strict=True):
            assert sa["name"] == sb["name"]
            assert (
                hashlib.sha256(Path(sa["uri"]).read_bytes()).digest()
                == hashlib.sha256(Path(sb["uri"]).read_bytes()).digest()
            )


def test_unchanged_env_uploads_nothing_and_reads_nothing(env) -> None:
    first = pack(env)
    assert first["bytes_uploaded"] > 0 and first["bytes_hashed"] > 0
    again = pack(env)
    assert again["digest"] == first["digest"]
    assert (again["bytes_uploaded"], again["bytes_hashed"]) == (0, 0)
    assert not any(s["written"] for layer in again["layers"] for s in layer["shards"])


def test_a_warm_pack_in_the_same_process_sees_every_change(env) -> None:
    """A kernel keeps each layer's scan while inotify reports nothing under it; every kind of
    change still reaches the next pack."""
    env = with_own_site_packages(env)  # edited below: not the fixture's shared folder
    first = pack(env)
    assert pack(env)["bytes_hashed"] == 0
    # A site-packages file edited in place, same size (same second, likely same mtime).
    module = sorted(env["site"].rglob("*.py"))[0]
    content = module.read_bytes()
    module.write_bytes(content.replace(b"\n", b"\r", 1) if b"\n" in content else b"#" * len(content))
    edited = pack(env)
    assert edited["bytes_hashed"] == len(content)
    assert layer(edited, "site-packages")["digest"] != layer(first, "site-packages")["digest"]
    # A new folder in the workspace, then an edit inside it.
    (env["ws"] / "newpkg").mkdir()
    (env["ws"] / "newpkg" / "m.py").write_text("A = 1\n")
    grown = pack(env)
    assert layer(grown, "workspace")["files"] == layer(first, "workspace")["files"] + 1
    (env["ws"] / "newpkg" / "m.py").write_text("A = 2\n")
    regrown = pack(env)
    assert regrown["bytes_hashed"] == len("A = 2\n")
    assert layer(regrown, "workspace")["digest"] != layer(grown, "workspace")["digest"]
    # Bytecode caches are not a change.
    (env["ws"] / "newpkg" / "__pycache__").mkdir()
    (env["ws"] / "newpkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0" * 10)
    quiet = pack(env)
    assert (quiet["digest"], quiet["bytes_hashed"]) == (regrown["digest"], 0)


PACK_JSON = """
import json, sys, geneva.package
m = geneva.package.pack(upload_dir=sys.argv[3], workspace=[("workspace", sys.argv[1])], site_packages=[sys.argv[2]])
print(json.dumps(m))
"""


def test_a_cold_pack_hashes_while_zipping_and_a_new_process_reads_nothing(env) -> None:
    """New files are hashed as they are zipped (one read); their hashes still reach the stat
    cache, so a new process (a restarted kernel) packs the unchanged env without reading a file."""
    env = with_own_site_packages(env)  # one this process has never packed: cold
    cold = pack(env)
    assert cold["bytes_hashed"] == sum(layer["bytes"] for layer in cold["layers"])
    for shard in (s for layer in cold["layers"] for s in layer["shards"]):
        with zipfile.ZipFile(shard["uri"]) as z:
            assert z.testzip() is None
    args = [sys.executable, "-c", PACK_JSON, str(env["ws"]), str(env["site"]), str(env["up"])]
    again = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    assert again["digest"] == cold["digest"]
    assert (again["bytes_hashed"], again["bytes_uploaded"]) == (0, 0)


def test_a_touched_file_is_rehashed_and_its_zip_found_by_name(env) -> None:
    cold = pack(env)
    model = env["ws"] / "pkg" / "model.py"
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    touched = pack(env)
    assert touched["digest"] == cold["digest"]
    assert touched["bytes_hashed"] == model.stat().st_size
    assert touched["bytes_uploaded"] == 0
    assert not any(s["written"] for layer in touched["layers"] for s in layer["shards"])


def test_editing_one_workspace_file_reuploads_only_the_workspace_layer(env) -> None:
    first = pack(env)
    (env["ws"] / "pkg" / "model.py").write_text("def f():\n    return 3\n")
    second = pack(env)
    assert second["digest"] != first["digest"]
    assert layer(second, "workspace")["digest"] != layer(first, "workspace")["digest"]
    assert layer(second, "site-packages")["digest"] == layer(first, "site-packages")["digest"]
    assert not any(s["written"] for s in layer(second, "site-packages")["shards"])
    workspace_bytes = sum(s["bytes"] for s in layer(second, "workspace")["shards"])
    assert second["bytes_uploaded"] == workspace_bytes


def test_zip_slip_entries_are_refused(tmp_path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr("../escaped.txt", "bad")
    with pytest.raises(GenevaError, match=r"\.\./escaped\.txt"):
        geneva.package.extract_layer(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "evil").exists()


def test_size_cap_names_the_biggest_files(env) -> None:
    (env["ws"] / "weights.bin").write_bytes(os.urandom(2 << 20))
    with pytest.raises(
        InvalidInputError, match=r"over the 1\.0 MiB cap .*; biggest files: workspace/weights\.bin \(2\.0 MiB\)"
    ):
        pack(env, max_total_bytes=1 << 20)


def test_target_pins_what_does_not_run_there(env) -> None:
    native_site = installed("macosx_11_0_arm64", NATIVE)
    manifest = geneva.package.pack(
        upload_dir=env["up"],
        workspace=[("workspace", env["ws"])],
        site_packages=[native_site],
        target="manylinux_2_28_x86_64-cp311",
    )
    assert manifest["pins"] == ["MarkupSafe==3.0.3"]
    assert layer(manifest, "site-packages")["files"] == 0  # its files stay behind


def test_unsupported_upload_schemes_are_refused_clearly(env) -> None:
    with pytest.raises(InvalidInputError, match=r'unsupported scheme "ftp"; use a folder path, file://, s3://'):
        pack({**env, "up": "ftp://host/zips"})


@pytest.fixture(params=["s3", "az"])
def store(request, monkeypatch):
    """A real object store on 127.0.0.1 (moto's S3, Azurite), reached through the variables a user sets."""
    server = request.getfixturevalue({"s3": "s3_server", "az": "azurite_server"}[request.param])
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return server


def test_object_store_layers_upload_once_and_extract_byte_identical(env, store, tmp_path) -> None:
    prefix = f"zips-{tmp_path.name}"
    up = {**env, "up": store.uri(prefix)}
    first = pack(up)
    shards = [s for layer in first["layers"] for s in layer["shards"]]
    assert store.names(prefix) == {s["name"]: s["bytes"] for s in shards}
    assert first["bytes_uploaded"] == sum(s["bytes"] for s in shards) > 0
    assert all(s["uri"] == f"{store.uri(prefix)}/{s['name']}" for s in shards)
    assert pack(up)["bytes_uploaded"] == 0  # names are content hashes: nothing is sent twice
    # Editing one workspace file sends only the workspace layer's new shard.
    (env["ws"] / "pkg" / "model.py").write_text("def f():\n    return 3\n")
    second = pack(up)
    (ws_shard,) = layer(second, "workspace")["shards"]
    assert second["bytes_uploaded"] == ws_shard["bytes"]
    # A worker fetches from the store (no local copy involved) and gets the same bytes.
    folder = geneva.package.extract_layer(ws_shard["uri"], tmp_path / "worker-cache")
    assert (folder / "pkg" / "model.py").read_bytes() == (env["ws"] / "pkg" / "model.py").read_bytes()
    assert os.access(folder / "run.sh", os.X_OK)
    assert sorted(p.name for p in (tmp_path / "worker-cache").iterdir() if p.suffix == ".zip") == []  # not kept


def test_object_store_errors_name_the_problem_and_the_fix(env, s3_server, azurite_server, monkeypatch) -> None:
    for key, value in {**s3_server.env, **azurite_server.env}.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(GenevaError, match=r"(?s)NoSuchBucket.*check the bucket exists.*AWS_ENDPOINT_URL"):
        pack({**env, "up": "s3://no-such-bucket/zips"})
    with pytest.raises(GenevaError, match=r"(?s)ContainerNotFound.*AZURE_STORAGE_ACCOUNT_NAME"):
        pack({**env, "up": "az://no-such-container/zips"})
    # gs://: no GCS emulator here speaks the XML API object_store uses; the credential path is checked.
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(env["tmp"] / "missing-key.json"))
    with pytest.raises(GenevaError, match=r"(?s)gs://.*missing-key.json.*GOOGLE_SERVICE_ACCOUNT"):
        pack({**env, "up": "gs://bucket/zips"})
    with pytest.raises(GenevaError, match=r"(?s)s3://.*workspace-0000.zip.*not found"):
        geneva.package.extract_layer(s3_server.uri("zips/workspace-0000.zip"), env["tmp"] / "worker-cache")
    from object_stores import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(GenevaError, match=r"(?s)s3://.*AWS_ENDPOINT_URL"):
        pack({**env, "up": s3_server.uri("zips")})
    assert time.monotonic() - started < 30  # no minutes of retries


KILLED_UPLOAD = """
import sys, geneva.package
geneva.package.pack(upload_dir=sys.argv[2], workspace=[("workspace", sys.argv[1])], skip_site_packages=True)
"""


def test_killed_upload_leaves_no_object_under_a_final_name(s3_server, tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "blob.bin").write_bytes(os.urandom(64 << 20))  # over one part: a multipart upload
    uri = s3_server.uri(f"zips-{tmp_path.name}")
    child_env = {**os.environ, **s3_server.env, "GENEVA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_UPLOAD, str(ws), uri], env=child_env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not s3_server.multipart_uploads():
        assert proc.poll() is None, "the upload finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert s3_server.names(f"zips-{tmp_path.name}") == {}
    # The next run sends the shard (the zip was built before the upload started).
    done = subprocess.run(
        [sys.executable, "-m", "geneva", "env", "pack", "--upload-dir", uri, "--skip-site-packages", "--json"],
        env=child_env,
        cwd=ws,
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads(done.stdout)
    (shard,) = layer(manifest, "workspace")["shards"]
    assert s3_server.names(f"zips-{tmp_path.name}") == {shard["name"]: shard["bytes"]}
    assert manifest["bytes_uploaded"] == shard["bytes"] > 64 << 20


KILLED_WRITER = """
import sys, geneva.package
geneva.package.pack(upload_dir=sys.argv[2], workspace=[("workspace", sys.argv[1])], skip_site_packages=True)
"""


def test_killed_writer_leaves_no_file_under_a_final_name(tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "blob.bin").write_bytes(os.urandom(192 << 20))
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(ws), str(tmp_path / "up")],
        env={**os.environ, "GENEVA_CACHE_DIR": str(cache)},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((cache / "layers").glob("*.tmp-*")):
        assert proc.poll() is None, "the writer finished before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finals = list((cache / "layers").glob("*.zip")) + list((tmp_path / "up").glob("*.zip"))
    assert finals == [], finals
    # The next run finishes the job.
    env = {"ws": ws, "up": tmp_path / "up"}
    os.environ["GENEVA_CACHE_DIR"] = str(cache)
    try:
        manifest = geneva.package.pack(upload_dir=env["up"], workspace=[("workspace", ws)], skip_site_packages=True)
    finally:
        del os.environ["GENEVA_CACHE_DIR"]
    (shard,) = layer(manifest, "workspace")["shards"]
    with zipfile.ZipFile(shard["uri"]) as z:
        assert z.testzip() is None


def test_cli_pack_json(env) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "geneva",
            "env",
            "pack",
            "--upload-dir",
            str(env["up"]),
            "--skip-site-packages",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=env["ws"],
        env={**os.environ, "GENEVA_CACHE_DIR": str(env["tmp"] / "cache")},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert layer(manifest, "workspace")["root"] == str(env["ws"])
    assert manifest["bytes_uploaded"] > 0


def test_cli_pack_bad_target_exits_2() -> None:
    result = run_geneva("env", "pack", "--target", "nonsense", "--skip-site-packages")
    assert result.returncode == 2
    assert "PLATFORM-PYTHON" in result.stderr


def test_an_empty_layer_extracts_to_an_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = geneva.package.pack(
        upload_dir=tmp_path / "zips", workspace=[("workspace", empty)], site_packages=[], skip_site_packages=True
    )
    (shard,) = manifest["layers"][0]["shards"]
    folder = geneva.package.extract_layer(shard["uri"], tmp_path / "extract")
    assert folder.is_dir() and list(folder.iterdir()) == []
