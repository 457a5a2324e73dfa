"""A study's Dask cluster is no open door: the Dask guide's TLS recipe run as written (a
certificate authority made here, scheduler and worker on 127.0.0.1) with a study through
it, TLS mistakes refused in one line before anything is made, and a local cluster that
listens on loopback only, over TLS, with no HTTP port unless a dashboard is asked for."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _data_dir import DATA, needs_data
from signalprop.cli import main
from signalprop.study import cluster, read_results

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # Dask's own dependency

ROOT = Path(__file__).resolve().parents[1]
#: Two tiny runs on the real data (300 training images, 2 hidden layers).
GRID = {
    "name": "tls",
    "defaults": {"epochs": 1, "validation": 200, "train_size": 300, "batch_size": 50},
    "grid": {"activation": ["selu", "relu"], "init": ["matching"], "depth": [2]},
}


def _guide_blocks(language: str) -> list[str]:
    """The fenced blocks of ``language`` in the Security section of the Dask guide
    (docs/guide/dask.md), list-item indentation removed."""
    text = (ROOT / "docs" / "guide" / "dask.md").read_text(encoding="utf-8")
    text = text[text.index("## Security") :]
    text = text[: text.index("\n#")]
    pattern = rf"^( *)```{language}\n(.*?)^\1```"
    return [textwrap.dedent(m.group(2)) for m in re.finditer(pattern, text, flags=re.S | re.M)]


def _security_block(first_words: str) -> str:
    (block,) = [b for b in _guide_blocks("bash") if b.startswith(first_words)]
    return block


def _commands(block: str) -> list[list[str]]:
    """Each command of a bash block, its continuation lines joined, as argv."""
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(process: Any) -> set[tuple[str, int]]:
    """The (address, port) pairs that ``process`` and its children listen on."""
    found = set()
    for each in [process, *process.children(recursive=True)]:
        for connection in each.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port))
    return found


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The guide's certificates, scheduler and worker, on 127.0.0.1: its address, its
    folder (the certificates) and the scheduler's process."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["bash", "-e", "-c", _security_block("openssl req -x509")],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    scheduler_argv, worker_argv, study_argv = _commands(_security_block("dask scheduler"))
    assert scheduler_argv[:2] == ["dask", "scheduler"] and worker_argv[:2] == ["dask", "worker"]
    dask = [sys.executable, "-m", "dask"]
    on_loopback = {
        "10.0.0.5": "127.0.0.1",
        "10.0.0.6": "127.0.0.1",
        "127.0.0.1:8787": "127.0.0.1:0",
    }

    def local(argv: list[str]) -> list[str]:
        text = shlex.join(argv)
        for remote, here in on_loopback.items():
            text = text.replace(remote, here)
        return shlex.split(text.replace(":8786", f":{port}"))

    environment = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    logs = [(folder / name).open("w") for name in ("scheduler.log", "worker.log")]
    scheduler = subprocess.Popen(
        [*dask, *local(scheduler_argv)[1:], "--port", str(port)],
        cwd=folder,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        address = f"tls://127.0.0.1:{port}"
        worker = subprocess.Popen(
            [*dask, *local(worker_argv)[1:]],
            cwd=folder,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
            env={**os.environ, **environment, "SIGNALPROP_DATA": str(DATA)},
        )
        security = distributed.Security(
            tls_ca_file=str(folder / "ca.pem"),
            tls_client_cert=str(folder / "client.pem"),
            tls_client_key=str(folder / "client-key.pem"),
            require_encryption=True,
        )
        with distributed.Client(address, security=security, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)  # --nworkers 2
        yield {
            "address": address,
            "folder": folder,
            "scheduler": psutil.Process(scheduler.pid),
            "study": local(study_argv),
        }
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        for log in logs:
            log.close()


@needs_data
def test_the_guide_tls_recipe_runs_a_study(
    tls_cluster: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guide's `signalprop study ... --scheduler tls://...` as written (the grid and
    --out swapped for small ones): every run trained on the TLS cluster's workers."""
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    argv = tls_cluster["study"]
    assert argv[:2] == ["signalprop", "study"]
    argv = [*argv[1:], "--no-report"]
    argv[argv.index("--preset") + 1] = str(grid)
    argv[argv.index("--out") + 1] = str(tmp_path / "out")
    folder = tls_cluster["folder"]
    argv = [str(folder / a) if a.endswith(".pem") else a for a in argv]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"the Dask cluster at {tls_cluster['address']}" in capsys.readouterr().out
    records = read_results(tmp_path / "out")
    assert len(records) == 2 and not any(r.get("error") for r in records)
    workers = {r["worker"].split(":")[1] for r in records}
    assert str(os.getpid()) not in workers  # trained on the cluster, not here


def test_the_guide_tls_scheduler_listens_on_loopback_only(tls_cluster: dict[str, Any]) -> None:
    """Bound as the guide binds it (--host, --dashboard-address on loopback): nothing of
    the scheduler's listens beyond 127.0.0.1, its HTTP included."""
    listening = _listening(tls_cluster["scheduler"])
    assert len(listening) == 2  # the scheduler's TLS port and its HTTP
    assert {address for address, _ in listening} == {"127.0.0.1"}


@needs_data
def test_a_security_file_in_dasks_format_runs_a_study(
    tls_cluster: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (yaml_block,) = _guide_blocks("yaml")
    folder = tls_cluster["folder"]
    text = re.sub(r"\b([\w-]+\.pem)\b", lambda m: str(folder / m.group(1)), yaml_block)
    (tmp_path / "dask.yaml").write_text(text)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({**GRID, "grid": {**GRID["grid"], "activation": ["tanh"]}}))
    argv = ["study", "--preset", str(grid), "--out", str(tmp_path / "out"), "--no-report"]
    security = ["--security", str(tmp_path / "dask.yaml")]
    assert main([*argv, "--scheduler", tls_cluster["address"], *security]) == 0
    assert len(read_results(tmp_path / "out")) == 1


def test_a_certificate_the_scheduler_does_not_trust_is_one_line(
    tls_cluster: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate of another authority: the handshake fails, said in one line
    and status 2, and no --out folder is left behind."""
    subprocess.run(
        ["bash", "-e", "-c", _security_block("openssl req -x509")],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "out"
    argv = ["study", "--preset", "quick", "--out", str(out), "--data-dir", str(DATA)]
    tls = ["--tls-ca-file", str(tls_cluster["folder"] / "ca.pem")]
    tls += [
        "--tls-cert",
        str(tmp_path / "client.pem"),
        "--tls-key",
        str(tmp_path / "client-key.pem"),
    ]
    assert main([*argv, "--scheduler", tls_cluster["address"], *tls]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the TLS handshake failed" in err
    assert not out.exists()


def test_a_plain_tcp_client_is_not_served(tls_cluster: dict[str, Any]) -> None:
    plain = tls_cluster["address"].replace("tls://", "tcp://")
    with pytest.raises((OSError, TimeoutError)):
        distributed.Client(plain, timeout="3s")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--scheduler", "tls://127.0.0.1:9"], "TLS needs certificates: give --tls-ca-file"),
        (
            ["--scheduler", "tcp://127.0.0.1:9", "--tls-ca-file", "{ca}", "--tls-cert", "{ca}"],
            "a TLS scheduler's address starts with tls://",
        ),
        (["--scheduler", "tls://h:1", "--tls-ca-file", "{ca}"], "TLS needs --tls-ca-file and"),
        (
            ["--scheduler", "tls://h:1", "--tls-ca-file", "{ca}", "--tls-cert", "/nowhere.pem"],
            "--tls-cert '/nowhere.pem' is not a readable file",
        ),
        (
            ["--scheduler", "tls://h:1", "--security", "{ca}", "--tls-cert", "{ca}"],
            "give --security FILE or the --tls-* files, not both",
        ),
        (["--scheduler", "tls://h:1", "--security", "{ca}"], "holds no Dask configuration"),
        (["--scheduler", "tls://h:1", "--security", "{empty}"], "names no TLS certificates"),
        (["--scheduler", "tls://h:1", "--security", "{bad}"], "is not YAML"),
        (["--cluster", "local:2", "--tls-ca-file", "{ca}"], "a --cluster makes its own"),
        (["--scheduler", "tcp://h:1", "--dashboard"], "--dashboard serves a --cluster local:N"),
    ],
)
def test_tls_mistakes_are_one_line_before_anything_is_made(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files = {
        "ca": tmp_path / "ca.pem",
        "empty": tmp_path / "empty.yaml",
        "bad": tmp_path / "b.yaml",
    }
    files["ca"].write_text("-----BEGIN CERTIFICATE-----\n")
    files["empty"].write_text("distributed:\n  comm:\n    require-encryption: true\n")
    files["bad"].write_text("distributed: [\n")
    flags = [f.format(**files) for f in flags]
    out = tmp_path / "out"
    assert main(["study", "--preset", "quick", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not out.exists()


def test_the_local_cluster_listens_on_loopback_over_tls_and_serves_no_http() -> None:
    """Every port the local cluster opens is one of its scheduler's, nannies' or workers'
    TLS ports, on 127.0.0.1: no HTTP server (Dask starts one per node by default)."""
    me = psutil.Process()
    before = _listening(me)
    with cluster(workers=2) as live:
        info = live.client.scheduler_info()
        ports = {_port(info["address"])}
        for address, worker in info["workers"].items():
            ports |= {_port(address), _port(worker["nanny"])}
        assert info["address"].startswith("tls://127.0.0.1:")
        assert all(a.startswith("tls://127.0.0.1:") for a in info["workers"])
        opened = _listening(me) - before
        assert live.dashboard is None and live.slots == 2
    assert {address for address, _ in opened} == {"127.0.0.1"}
    assert {port for _, port in opened} == ports  # 5: the scheduler, 2 nannies, 2 workers


def test_a_dashboard_is_served_on_loopback_when_asked() -> None:
    with cluster(workers=1, dashboard=True) as live:
        assert live.dashboard is not None
        assert live.dashboard.startswith("http://127.0.0.1:")
        health = live.dashboard.replace("/status", "/health")
        with urllib.request.urlopen(health, timeout=10) as response:
            assert response.read() == b"ok"


def test_a_plain_client_cannot_join_the_local_cluster() -> None:
    """Another user of this machine who finds the port has no certificate: refused."""
    with cluster(workers=1) as live:
        plain = live.client.scheduler.address.replace("tls://", "tcp://")
        with pytest.raises((OSError, TimeoutError)):
            distributed.Client(plain, timeout="3s")
