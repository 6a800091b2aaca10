"""A TLS client context from kubeconfig-style material (stdlib only): the CLI's fast path and the operator share it."""

from __future__ import annotations

import os
import ssl
import tempfile

ClientCert = tuple[bytes, bytes] | tuple[str, str]  # PEM certificate and key, or the paths of their files


def client_context(
    cafile: str | None = None, cadata: str | None = None, insecure: bool = False, cert: ClientCert | None = None
) -> ssl.SSLContext:
    """Verify the server with `cafile`/`cadata` (or not at all when `insecure`); present `cert` when given."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile, cadata=cadata)
    if cert and isinstance(cert[0], bytes):
        # The ssl module loads a client certificate from files only: a private directory for the moment it reads them.
        with tempfile.TemporaryDirectory(prefix="runyard-tls-") as tmp:
            paths = (os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key"))
            for path, data in zip(paths, cert, strict=True):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data if isinstance(data, bytes) else data.encode())
            ctx.load_cert_chain(*paths)
    elif cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx
