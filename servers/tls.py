"""A local CA and server certificate, made on first use and never committed.

Files live in $WIREBENCH_TLS_DIR (default ~/.cache/wirebench/tls): ca.pem (clients
verify against it), server.pem (chain) and server.key. The certificate names
localhost, 127.0.0.1, ::1 and the lab's host name so every client can verify it.
A server reached under another name (another host: `python -m servers --tls-name`) gets
a set of its own in a subfolder named after its extra names, with its own CA.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("localhost", "wirebench.test", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def tls_dir() -> Path:
    default = Path.home() / ".cache" / "wirebench" / "tls"
    return Path(os.environ.get("WIREBENCH_TLS_DIR", default))


def ensure_tls_files(directory: Path | None = None, extra_names: tuple[str, ...] = ()
                     ) -> TlsFiles:
    """Return the CA and server files, creating them atomically if missing. With
    `extra_names` (host names or addresses besides SERVER_NAMES) the certificate names
    them too; such a set lives in a subfolder of its own, so the default set never
    changes under a running server."""
    directory = directory or tls_dir()
    names = tuple(sorted(set(extra_names) - set(SERVER_NAMES)))
    if names:
        tag = hashlib.sha256(",".join(names).encode()).hexdigest()[:12]
        directory = directory / f"names-{tag}"
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if all(p.exists() for p in (files.ca, files.cert, files.key)):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # concurrent first uses make one set, not two
        if not all(p.exists() for p in (files.ca, files.cert, files.key)):
            _write_new_set(directory, SERVER_NAMES + names)
    return files


def export_ca(files: TlsFiles, dest: Path) -> None:
    """Copy the CA certificate clients verify against to `dest` (another host's client
    needs it: the scenario's `remote.ca`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files.ca, dest)


def _write_new_set(directory: Path, names: tuple[str, ...]) -> None:
    import trustme  # only needed the first time

    ca = trustme.CA(organization_name="wirebench local CA")
    cert = ca.issue_cert(*names)
    # Write into a temp dir and rename, so a reader never sees half a set.
    tmp = Path(tempfile.mkdtemp(dir=directory))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    (tmp / "server.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    os.chmod(tmp / "server.key", 0o600)
    for name in ("server.key", "server.pem", "ca.pem"):   # ca last: it marks completion
        os.replace(tmp / name, directory / name)
    tmp.rmdir()
