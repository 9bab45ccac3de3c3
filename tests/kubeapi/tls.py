"""HTTPS for the emulator: kubectl and helm (client-go) send a kubeconfig's bearer token only over TLS, so a
server that checks tokens must serve HTTPS. A throwaway self-signed certificate for 127.0.0.1, which the
kubeconfig trusts through `certificate-authority-data`."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp.test_utils


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (P-256, valid two days, for `host` and localhost) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kubeapi-emulator",
            "-addext",
            f"subjectAltName=IP:{host},DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def server_class(cert: Path, key: Path) -> type[aiohttp.test_utils.RawTestServer]:
    """kmock's server class, serving HTTPS with this certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class TLSServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
            await super().start_server(loop, ssl=context, **kwargs)

    return TLSServer
