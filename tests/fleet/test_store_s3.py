"""A store in S3: push and query through pyarrow's S3FileSystem against moto's standalone
server on 127.0.0.1 (a protocol stand-in for S3, not S3 itself; docs/fleet.md)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetape.store.push import push
from nodetape.store.reader import open_store
from nodetape.tape.reader import connect, open_tapes

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    boto3 = pytest.importorskip("boto3", reason="moto[server] is not installed (pip install 'moto[server]')")
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(env)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="fleet")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_to_s3_and_query_it(moto, tmp_path, monkeypatch):
    monkeypatch.setenv("NODETAPE_STORE_CACHE", str(tmp_path / "cache"))
    url = f"s3://fleet/prod?endpoint_override=127.0.0.1:{moto}&scheme=http"
    first = push(FIXTURES[:2], url, stream=None)
    assert first.parts_pushed > 0 and not first.conflicts
    again = push(FIXTURES[:2], url, stream=None)
    assert again.parts_pushed == 0 and again.parts_skipped == first.parts_pushed
    sql = "SELECT host, count(*), sum(cgroup_id) FROM cgroup_events GROUP BY ALL"
    got = connect(open_store(url)).execute(sql).fetchall()
    assert got == connect(open_tapes(FIXTURES[:2])).execute(sql).fetchall()


def test_endpoint_from_the_environment(moto, tmp_path, monkeypatch):
    monkeypatch.setenv("NODETAPE_STORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{moto}")
    st = push(FIXTURES[2:3], "s3://fleet/env", host="node-x", stream=None)
    assert st.parts_pushed > 0
    assert [t.host for t in open_store("s3://fleet/env")] == ["node-x"]
