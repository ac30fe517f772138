"""`scalesweep fit` and `export` against a tracking server that is stopped or never answers.

Before: a stopped server (connection refused) gave exit 2 only after 249 s, with nothing
printed meanwhile (MLflow's own retries); a server that accepts the connection and never
answers hung past 600 s. Now each waits `--tracking-timeout` seconds, says it is waiting, and
exits 2 naming the URI.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from scalesweep.cli import main


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _stopped_server() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("server", ["stopped", "silent"])
@pytest.mark.parametrize("command", ["fit", "export"])
def test_an_unanswering_server_exits_2_naming_it_within_the_timeout(
    server, command, silent_server, tmp_path, capsys
):
    # Rule: with --tracking-timeout 3, exit 2 in under 10 s, "waiting" said while it waits,
    # and the error names the URI.
    uri = silent_server if server == "silent" else _stopped_server()
    argv = {
        "fit": ["fit", "sweep", "--tracking-uri", uri],
        "export": ["export", "sweep", "--tracking-uri", uri, "--out", str(tmp_path / "r.csv")],
    }[command]
    started = time.monotonic()
    assert main([*argv, "--tracking-timeout", "3"]) == 2
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert took < 10, took
    assert f"waiting for the MLflow server at {uri}" in err
    assert f"error: --tracking-uri: no MLflow server answered at {uri} within 3 s" in err
