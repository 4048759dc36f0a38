"""The lab on Ray (`engine="ray"`): the local engine's records, a killed worker or driver, a failing factory, the CLI.

One real local Ray per module (2 CPUs), nothing mocked. Which equality holds where:
a plain MLP (blobs) gives bit-identical records whatever the shards' composition; a model run
through `torch.func.vmap` (sequence's convolution) is bit-identical when a shard is the local
population (`shard_size` = `chunk`) and equal to 1e-6 relative when the shards split it otherwise.

User problems live in a module written to a temporary folder: the driver imports it by name
(`get_problem("lrkit_ray_helpers:...")`) and its functions travel to the workers by value
(`ray.cloudpickle.register_pickle_by_value`); a driver in a subprocess runs a script from that
folder, which Ray puts on its workers' path.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrkit.errors import LabError
from lrkit.lab.population import Member, train
from lrkit.lab.problems import get_problem
from lrkit.lab.runner import study

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # with `--dist loadgroup`, the Ray tests share one worker and one Ray at a time

HELPERS = '''
import dataclasses, os, time

import ray

from lrkit.lab.problems import get_problem, mlp

CONTROL = {control!r}


def _on_worker():
    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def _blobs(make_model):
    return dataclasses.replace(get_problem("blobs"), make_model=make_model)


def _broken_model():
    if _on_worker():
        raise RuntimeError("no such file on the worker: weights.pt")
    return mlp((2, 50, 3))


def broken(seed=0):
    return _blobs(_broken_model)


def _claim(name):
    """True for the one process that creates CONTROL/name first (it holds its pid)."""
    try:
        fd = os.open(os.path.join(CONTROL, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        with open(os.path.join(CONTROL, name)) as f:
            return f.read().strip() == str(os.getpid())
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _dying_model():
    # the first worker to build a model writes its pid and waits to be killed (kill -9 by the test); the retry goes on
    if _on_worker() and _claim("victim") and not os.path.exists(os.path.join(CONTROL, "killed")):
        time.sleep(120)
    return mlp((2, 50, 3))


def dying(seed=0):
    return _blobs(_dying_model)


def _gated_model():
    # while CONTROL/gate exists, only the first worker process to build a model trains: the study cannot finish
    while _on_worker() and os.path.exists(os.path.join(CONTROL, "gate")) and not _claim("first"):
        time.sleep(0.05)
    return mlp((2, 50, 3))


def gated(seed=0):
    return _blobs(_gated_model)
'''

DRIVER = """
import sys
sys.path.insert(0, {folder!r})
import lrkit.lab
lrkit.lab.study("lr", problem="lrkit_ray_helpers:gated", values=[0.1, 0.01, 0.001], seeds=2, epochs=4, out={out!r},
                report=False, engine="ray", address={address!r}, shard_size=1)
"""

KW: dict[str, Any] = {"values": [0.1, 0.01, 0.001], "seeds": 3, "epochs": 4}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Ray of 2 CPUs for the module (studies use it as it is), stopped at the end."""
    from lrkit.engine import ray_session

    with ray_session("tests", None, LabError, num_cpus=2) as r:
        yield r


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory, cluster: Any) -> Iterator[Any]:
    """The user-problem module `lrkit_ray_helpers`, importable here and shipped by value to the workers."""
    folder = tmp_path_factory.mktemp("ray_helpers")
    (folder / "control").mkdir()
    (folder / "lrkit_ray_helpers.py").write_text(HELPERS.format(control=str(folder / "control")))
    sys.path.insert(0, str(folder))
    module = importlib.import_module("lrkit_ray_helpers")
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield module
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
        sys.modules.pop("lrkit_ray_helpers", None)
        sys.path.remove(str(folder))


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype.kind == "f" and rtol:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=0, err_msg=k)
        else:
            assert a[k].tolist() == b[k].tolist() or np.array_equal(a[k], b[k], equal_nan=True), k


def stored(path: Path) -> dict[str, np.ndarray]:
    from lrkit.lab.store import Store

    with sqlite3.connect(path) as db:
        spec = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM spec")}
    s = Store(path, spec)
    try:
        return s.records()
    finally:
        s.close()


def test_plain_mlp_is_bit_identical_whatever_the_shards(cluster: Any) -> None:
    local = study("lr", **KW, chunk=100)
    for shard_size in (2, 9):  # split unlike the local population, and as it
        assert_same(study("lr", **KW, engine="ray", shard_size=shard_size).table, local.table)


def test_vmapped_model_is_identical_as_the_local_populations_and_close_otherwise(cluster: Any) -> None:
    kw = {"problem": "sequence", "values": [0.1, 0.01], "seeds": 3, "epochs": 1}
    local = study("lr", **kw, chunk=3).table
    assert_same(study("lr", **kw, engine="ray", shard_size=3).table, local)  # a shard per local population: the same arithmetic
    split = study("lr", **kw, engine="ray", shard_size=2).table
    assert_same(split, local, rtol=1e-6)


def test_train_on_ray_joins_the_shards_in_member_order(cluster: Any) -> None:
    problem = get_problem("blobs")
    members = [Member(lr=lr, seed=s) for lr in (0.1, 0.02) for s in range(3)]
    epochs: list[int] = []
    got = train(problem, members, epochs=3, engine="ray", shard_size=4, on_epoch=epochs.append)
    want = train(problem, members, epochs=3)
    for k in ("train_loss", "test_loss", "test_acc", "lr", "diverged_epoch", "initial_test_loss", "updates"):
        assert np.array_equal(getattr(got, k), getattr(want, k)), k
    assert got.members == want.members and epochs == [1, 2, 3]


def test_a_worker_killed_mid_study_is_retried_and_nothing_is_lost(cluster: Any, helpers: Any, tmp_path: Path) -> None:
    control = Path(helpers.CONTROL)
    problem = "lrkit_ray_helpers:dying"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            study("lr", problem=problem, **KW, out=tmp_path, report=False, engine="ray", shard_size=2)
        except BaseException as e:  # handed to the test's thread
            errors.append(e)

    driver = threading.Thread(target=run)
    driver.start()
    victim = control / "victim"
    deadline = time.monotonic() + 120
    while not victim.exists() or not victim.read_text().strip():
        assert time.monotonic() < deadline and driver.is_alive(), errors
        time.sleep(0.05)
    pid = int(victim.read_text())
    assert pid != os.getpid()
    (control / "killed").touch()
    os.kill(pid, signal.SIGKILL)
    driver.join(timeout=300)
    assert not driver.is_alive() and not errors, errors
    got = stored(tmp_path / "lr.sqlite")
    assert sorted(set(got["member"].tolist())) == list(range(9)) and len(got["member"]) == 9 * 4  # complete, no duplicate
    assert_same(got, study("lr", problem=problem, **KW).table)


def test_a_killed_driver_resumes_with_the_same_command(cluster: Any, helpers: Any, tmp_path: Path) -> None:
    folder, control = Path(helpers.__file__).parent, Path(helpers.CONTROL)
    (control / "gate").touch()
    script = folder / "driver.py"
    out = tmp_path / "out"
    script.write_text(DRIVER.format(folder=str(folder), out=str(out), address=ray.get_runtime_context().gcs_address))
    command = [sys.executable, str(script)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while _members_stored(out / "lr.sqlite") == 0:
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert 0 < _members_stored(out / "lr.sqlite") < 6  # the gate holds a shard: killed mid-study
    (control / "gate").unlink()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    got = stored(out / "lr.sqlite")
    assert len(got["member"]) == 6 * 4
    assert_same(got, study("lr", problem="blobs", values=[0.1, 0.01, 0.001], seeds=2, epochs=4).table)


def _members_stored(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1) as db:
            return int(db.execute("SELECT COUNT(*) FROM members").fetchone()[0])
    except sqlite3.Error:  # not created yet, or being written
        return 0


def test_a_failing_user_factory_is_one_line_naming_the_members(cluster: Any, helpers: Any, run_cli: Any, tmp_path: Path) -> None:
    with pytest.raises(LabError) as caught:
        study("lr", problem="lrkit_ray_helpers:broken", values=[0.1], seeds=2, epochs=2, engine="ray", shard_size=2)
    text = str(caught.value)
    assert text.startswith("study: the shard of members 0-1 failed on Ray (LabError: Problem: parameter 'make_model'")
    assert "RuntimeError: no such file on the worker: weights.pt" in text and "\n" not in text and "Traceback" not in text
    r = run_cli("study", "lr", "--problem", "lrkit_ray_helpers:broken", "--values", "0.1", "--seeds", "2", "--epochs", "2",
                "--engine", "ray", "--shard-size", "2", "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "members 0-1 failed on Ray" in r.stderr


def test_cli_with_engine_ray_writes_the_stores_of_local(cluster: Any, run_cli: Any, tmp_path: Path) -> None:
    args = ["study", "lr", "--values", "0.1,0.01", "--seeds", "2", "--epochs", "3"]
    local = run_cli(*args, "--out", tmp_path / "local")
    on_ray = run_cli(*args, "--out", tmp_path / "ray", "--engine", "ray", "--shard-size", "1", "--cpus-per-shard", "1")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert_same(stored(tmp_path / "ray" / "lr.sqlite"), stored(tmp_path / "local" / "lr.sqlite"))
    again = run_cli(*args, "--out", tmp_path / "ray", "--engine", "ray")  # finished: resumes to nothing, starts no Ray task
    assert again.exit_code == 0


def test_study_pbt_is_routed_to_its_own_command(run_cli: Any) -> None:
    r = run_cli("study", "pbt", "--help")
    assert r.exit_code == 0 and "Usage: cli study pbt [OPTIONS]" in r.output and "Population Based Training" in r.output
    misplaced = run_cli("study", "--seeds", "2", "pbt")
    assert misplaced.exit_code == 2 and "pbt takes its own options after its name" in misplaced.output


def test_engine_input_is_checked(cluster: Any, run_cli: Any, tmp_path: Path) -> None:
    bad = [
        ({"engine": "dask"}, "study: parameter 'engine' must be one of 'local', 'ray', got 'dask'"),
        ({"address": "auto"}, "study: parameter 'address' joins a Ray cluster, so it needs engine='ray'"),
        ({"shard_size": 4}, "study: parameter 'shard_size' cuts a population into Ray tasks, so it needs engine='ray'"),
        ({"engine": "ray", "shard_size": 0}, "study: parameter 'shard_size' must be a positive integer, got 0"),
        ({"engine": "ray", "num_cpus": 64}, "study: parameter 'num_cpus' must fit on one node of the Ray cluster (the largest has 2 CPU)"),
    ]
    for kw, message in bad:
        with pytest.raises(LabError) as caught:
            study("lr", values=[0.1], seeds=1, epochs=1, **kw)
        assert str(caught.value).startswith(message), str(caught.value)
    with pytest.raises(LabError, match="train: parameter 'num_gpus' must be >= 0"):
        train(get_problem("blobs"), [Member(lr=0.1)], epochs=1, engine="ray", num_gpus=-1)
    r = run_cli("study", "lr", "--address", "auto", "--out", tmp_path)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "needs engine='ray'" in r.stderr


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, run_cli: Any, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    hint = "study: parameter 'engine' 'ray' needs Ray, which is not installed: pip install 'lrkit[ray]'"
    with pytest.raises(LabError, match="pip install 'lrkit\\[ray\\]'") as caught:
        study("lr", values=[0.1], seeds=1, epochs=1, engine="ray")
    assert str(caught.value).startswith(hint)
    with pytest.raises(LabError, match="train: parameter 'engine'"):
        train(get_problem("blobs"), [Member(lr=0.1)], epochs=1, engine="ray")
    r = run_cli("study", "lr", "--values", "0.1", "--seeds", "1", "--epochs", "1", "--engine", "ray", "--out", tmp_path)
    assert r.exit_code == 2 and "pip install 'lrkit[ray]'" in r.stderr and r.stderr.count("\n") == 1
    assert study("lr", values=[0.1], seeds=1, epochs=1).values == ["0.1"]  # the local engine needs no Ray


TWO_NODES = """
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time
os.environ["RAY_AUTH_MODE"] = "token"  # the head, the second node and this driver agree on token authentication
import ray
import lrkit.lab
from lrkit.lab import ray_engine
from lrkit.lab.problems import get_problem
from lrkit.lab.population import Member, train

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
address = f"127.0.0.1:{port}"
temp = tempfile.mkdtemp(prefix="lrkit-ray-")  # short: Ray's socket paths under it must fit in 107 characters
nodes = []  # `ray start --block`: SIGTERM stops that node's own processes (`ray stop` would stop every Ray on the machine)


def start(*args):
    log = open(os.path.join(sys.argv[1], f"node{len(nodes)}.log"), "w")
    nodes.append(subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1", *args], start_new_session=True, stdout=log,
                                  stderr=subprocess.STDOUT))


def wait(until, what):
    deadline = time.monotonic() + 120
    while not until():
        if time.monotonic() > deadline or any(node.poll() is not None for node in nodes):
            sys.exit(f"no {what}: see the logs in {sys.argv[1]}")
        time.sleep(0.2)


try:
    start("--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false")
    wait(lambda: os.path.exists(os.path.join(temp, "ray_current_cluster")), "head node")  # written once the head is up
    start("--address", address)
    ray.init(address=address, log_to_driver=False)
    wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, "second node")
    ray.shutdown()
    # the study joins the cluster by its address (and leaves it); the engine's shards then say where they ran
    table = lrkit.lab.study("lr", values=[0.1, 0.01], seeds=2, epochs=3, engine="ray", address=address, shard_size=1).table
    where = {}
    members = [Member(lr=0.1, seed=s) for s in range(4)]
    ray_engine.train_shards("train", get_problem("blobs"), [ray_engine.Work((0, 1, 2, 3), members, None)], {"epochs": 40},
                            ray_engine.Resources(1, 1, None), lambda part, r: where.__setitem__(part[0], r.node), trainer=train,
                            address=address)
    print(json.dumps({"nodes": sorted(set(where.values())), "test_loss": table["test_loss"].tolist()}))
finally:
    for node in reversed(nodes):
        node.send_signal(signal.SIGTERM)
    for node in reversed(nodes):
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)
"""


@pytest.mark.slow
def test_shards_land_on_both_nodes_of_a_two_node_cluster(tmp_path: Path) -> None:
    script = tmp_path / "two_nodes.py"
    script.write_text(textwrap.dedent(TWO_NODES))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["nodes"]) == 2  # shards ran on the head and on the second node
    local = study("lr", values=[0.1, 0.01], seeds=2, epochs=3).table["test_loss"].tolist()
    assert report["test_loss"] == local
