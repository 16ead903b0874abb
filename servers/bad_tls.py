"""Server certificates that must fail a client's checks: the path failures of issue 5.

    sets = make_tls_cases(directory)    # {"good": TlsFiles, "untrusted": ..., ...}

Each case is a directory laid out as servers.tls writes one (ca.pem, server.pem,
server.key), so a server started with WIREBENCH_TLS_DIR=<that directory> serves it, and
every case's ca.pem is the one CA clients are told to trust:

- good:      issued by that CA for servers.tls.SERVER_NAMES: verifies;
- untrusted: the right names, issued by another CA the client is never told about;
- expired:   issued by the trusted CA, valid 2020-01-01 to 2020-01-02;
- mismatch:  issued by the trusted CA for another name only (other.invalid).

Made fresh (keys included) in a directory the caller owns, e.g. a test's tmp_path;
nothing here is ever committed.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from servers.tls import SERVER_NAMES, TlsFiles

CASES = ("good", "untrusted", "expired", "mismatch")
OTHER_NAME = "other.invalid"


def make_tls_cases(directory: Path) -> dict[str, TlsFiles]:
    import trustme  # a test dependency, as for servers.tls

    trusted = trustme.CA(organization_name="wirebench trusted test CA")
    stranger = trustme.CA(organization_name="wirebench unknown CA")
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    leaves = {
        "good": trusted.issue_cert(*SERVER_NAMES),
        "untrusted": stranger.issue_cert(*SERVER_NAMES),
        "expired": trusted.issue_cert(*SERVER_NAMES, not_before=past,
                                      not_after=past + dt.timedelta(days=1)),
        "mismatch": trusted.issue_cert(OTHER_NAME),
    }
    out = {}
    for case, leaf in leaves.items():
        where = Path(directory) / case
        where.mkdir(parents=True, exist_ok=True)
        files = TlsFiles(where / "ca.pem", where / "server.pem", where / "server.key")
        trusted.cert_pem.write_to_path(str(files.ca))
        files.cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(files.key))
        os.chmod(files.key, 0o600)
        out[case] = files
    return out
