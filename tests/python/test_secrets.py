"""Secrets never leave the machine: a home-folder-like workspace packed for real, its zips read back
entry by entry and byte by byte; a private key under an innocent name; refused workspaces."""

from __future__ import annotations

import zipfile
from pathlib import Path

import geneva.package
import pytest
from geneva.exceptions import GenevaError
from test_package import PURE, installed

# Every file of a home folder that must stay home, each with a marker that must not reach a zip.
SECRETS = [
    ".kube/config",
    ".docker/config.json",
    ".ray/auth_token",
    ".config/gcloud/credentials.db",
    ".cache/huggingface/token",
    ".npmrc",
    ".bash_history",
    ".python_history",
    ".local/share/jupyter/runtime/kernel-1234.json",
    ".ipython/profile_default/security/kernel-5678.json",
    ".ssh/id_ed25519",
    ".aws/credentials",
    ".azure/accessTokens.json",
    ".gnupg/private-keys-v1.d/key.key",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    ".pgpass",
    ".env",
    ".env.production",
    "id_rsa",
    "tls/server.pem",
    "tls/server.key",
    "tls/keystore.p12",
    "tls/cert.pfx",
    "tls/trust.jks",
    "tls/app.keystore",
    "project/kernel-abc.json",
    ".huggingface/token",
]
# Folders left out whole (listed once, never walked).
SECRET_FOLDERS = [
    ".kube/",
    ".docker/",
    ".ray/",
    ".config/gcloud/",
    ".cache/",
    ".local/share/jupyter/runtime/",
    ".ipython/profile_default/security/",
    ".ssh/",
    ".aws/",
    ".azure/",
    ".gnupg/",
]
SHIPPED = ["project/model.py", "project/notes.md", ".config/app/settings.toml", "id_utils.py", "id_rsa.pub"]
PEM = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-MARKER-pem\n-----END OPENSSH PRIVATE KEY-----\n"


def marker(path: str) -> bytes:
    return f"SECRET-MARKER<{path}>".encode()


@pytest.fixture
def homelike(tmp_path, monkeypatch):
    """A folder laid out like a JupyterHub user's home: project files, tool credentials, history."""
    home = tmp_path / "alice"
    for rel in SECRETS + SHIPPED:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(marker(rel) if rel in SECRETS else f"# {rel}\n".encode())
    # A private key under an innocent name: left out by its content.
    (home / "project" / "notes.txt").write_bytes(PEM)
    monkeypatch.setenv("GENEVA_CACHE_DIR", str(tmp_path / "cache"))
    return home


def test_a_home_like_workspace_ships_no_secret_and_lists_each(homelike, tmp_path) -> None:
    upload = tmp_path / "up"
    manifest = geneva.package.pack(
        upload_dir=upload, workspace=[("workspace", homelike)], site_packages=[installed(None, PURE)]
    )
    left_out = set(manifest["secrets_left_out"])
    expected = {f"workspace/{d}" for d in SECRET_FOLDERS}
    expected |= {f"workspace/{s}" for s in SECRETS if not any(s.startswith(d) for d in SECRET_FOLDERS)}
    expected.add("workspace/project/notes.txt")
    assert left_out == expected

    # Every zip, entry by entry and byte by byte: only the project's files, no secret's bytes.
    (ws,) = [layer for layer in manifest["layers"] if layer["name"] == "workspace"]
    names, blobs = [], []
    for shard in ws["shards"]:
        raw = Path(shard["uri"]).read_bytes()
        blobs.append(raw)
        with zipfile.ZipFile(shard["uri"]) as z:
            for info in z.infolist():
                names.append(info.filename)
                blobs.append(z.read(info))
    assert sorted(names) == sorted(SHIPPED)
    everything = b"".join(blobs)
    for rel in SECRETS:
        assert marker(rel) not in everything, rel
    assert b"PRIVATE KEY" not in everything

    # The preview shows them too: the count and the first names.
    plan = geneva.package.plan(workspace=[("workspace", homelike)], skip_site_packages=True)
    text = repr(plan)
    assert f"left out (secrets): {len(expected)}: " in text and "workspace/.bash_history" in text
    assert f"and {len(expected) - 8} more" in text
    assert "left out (secrets)" in plan._repr_html_()


def test_a_key_that_becomes_a_private_key_is_caught_on_the_next_pack(homelike, tmp_path) -> None:
    kwargs = {"upload_dir": tmp_path / "up", "workspace": [("workspace", homelike)], "skip_site_packages": True}
    first = geneva.package.pack(**kwargs)
    assert "workspace/project/readme.txt" not in first["secrets_left_out"]
    (homelike / "project" / "readme.txt").write_bytes(PEM)  # a new file with a key inside
    second = geneva.package.pack(**kwargs)
    assert "workspace/project/readme.txt" in second["secrets_left_out"]


def test_a_home_folder_or_root_is_refused(homelike, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(homelike))
    for folder in (homelike, Path("/")):
        with pytest.raises(GenevaError, match=r"workspace .* is (a home folder|the root of the file system)") as err:
            geneva.package.pack(upload_dir=tmp_path / "up", workspace=[("workspace", folder)], skip_site_packages=True)
        message = str(err.value)
        assert str(folder) in message
        assert "ray_cluster(workspace='/path/to/project')" in message and "workspace: /path/to/project" in message
    assert not (tmp_path / "up").exists()  # nothing uploaded


def test_a_workspace_over_the_caps_is_refused(homelike, tmp_path) -> None:
    project = homelike / "project"
    for i in range(30):
        (project / f"f{i}.py").write_text(f"X = {i}\n")
    kwargs = {"upload_dir": tmp_path / "up", "workspace": [("workspace", project)], "skip_site_packages": True}
    with pytest.raises(GenevaError, match=r"workspace .*project holds 3\d files .* over the cap of 20 files") as err:
        geneva.package.pack(workspace_max_files=20, **kwargs)
    assert "workspace_max_files=" in str(err.value)
    with pytest.raises(GenevaError, match=r"over the cap of 100 B"):
        geneva.package.pack(workspace_max_bytes=100, **kwargs)
    assert not (tmp_path / "up").exists()
    assert geneva.package.pack(workspace_max_files=100, **kwargs)["layers"][0]["files"] == 32
