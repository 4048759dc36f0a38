"""User problem factories run inside a guard; every `lrkit study` mistake is exit 2 and one line, before any work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import Result

from lrkit.errors import LabError
from lrkit.lab.factories import guarded_call, load_factory
from lrkit.lab.problems import get_problem

RunCli = Callable[..., Result]
STUDY = ["study", "lr", "--values", "0.1", "--seeds", "1", "--epochs", "1"]

USER_MODULE = """
import sys
import numpy as np, torch
import lrkit.lab.problems as problems
from os import getpid as aliased_builtin

def _data():
    x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    return x[:20], y[:20], x[20:], y[20:]

def good(seed):
    return (lambda: torch.nn.Linear(2, 2)), _data()
def raises():
    raise ValueError("boom\\non two lines")
def exits():
    sys.exit(0)
def wrong():
    return 3
def needs(x):
    return x
class AClass:
    pass
def model_exits():
    return (lambda: sys.exit(3)), _data()
def model_not_a_module():
    return (lambda: "a model"), _data()
def model_wrong_shape():
    return (lambda: torch.nn.Linear(3, 2)), _data()
def model_too_few_classes():
    return (lambda: torch.nn.Linear(2, 1)), _data()
def text_data():
    return (lambda: torch.nn.Linear(2, 2)), (["a"], ["b"], ["c"], ["d"])

class ExitingProblem(problems.Problem):
    def losses(self, output, target):
        sys.exit(0)

def exits_while_training():
    p = problems.get_problem("blobs")
    return ExitingProblem(**{f: getattr(p, f) for f in p.__dataclass_fields__})
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user module `userprobs` on sys.path, and one that raises on import, `boomprobs`."""
    (tmp_path / "userprobs.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "boomprobs.py").write_text("raise RuntimeError('cannot import me')\n")
    (tmp_path / "exitprobs.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userprobs"
    for name in ("userprobs", "boomprobs", "exitprobs"):
        sys.modules.pop(name, None)


@pytest.fixture
def dangerous(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os.abort and os.system replaced by spies: a factory guard that called them would be seen (and not dump core)."""
    called: list[str] = []
    monkeypatch.setattr(os, "abort", lambda: called.append("abort"))
    monkeypatch.setattr(os, "system", lambda cmd="": called.append("system"))
    return called


def one_line_error(r: Result, *words: str) -> str:
    """Exit 2, no traceback, and one error line saying all of `words`: lrkit's own, or click's usage error (after its usage lines)."""
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith(("lrkit: error:", "Error:"))]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.output and all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("os:system", ["own module, not of the standard library"]),
        ("os:abort", ["own module, not of the standard library"]),
        ("builtins:exit", ["own module, not of the standard library"]),
        ("userprobs:aliased_builtin", ["plain Python function", "builtin_function_or_method"]),
        ("userprobs:AClass", ["plain Python function", "not a type"]),
        ("userprobs:needs", ["required: ['x']"]),
        ("boomprobs:make", ["importable", "RuntimeError: cannot import me"]),
        ("exitprobs:make", ["importable", "called sys.exit(0)"]),
        ("nosuchmodule:make", ["importable", "No module named 'nosuchmodule'"]),
        ("userprobs:missing", ["importable", "no attribute 'missing'"]),
        ("userprobs:raises", ["a factory that runs", "ValueError: boom on two lines"]),
        ("userprobs:exits", ["a factory that runs", "called sys.exit(0)"]),
        ("userprobs:wrong", ["must return a Problem", "not a int"]),
        ("userprobs:text_data", ["numeric arrays"]),
        ("userprobs:model_exits", ["make_model", "called sys.exit(3)"]),
        ("userprobs:model_not_a_module", ["make_model", "torch.nn.Module"]),
        ("userprobs:model_wrong_shape", ["make_model", "takes x_train", "shapes cannot be multiplied"]),
        ("userprobs:model_too_few_classes", ["make_model", "(N, 2) logits", "got (2, 1) for 2 inputs"]),
        ("a:b:c", ["'pkg.module:function'"]),
    ],
)  # fmt: skip
def test_a_bad_problem_factory_is_one_line_naming_it_before_any_work(
    run_cli: RunCli, tmp_path: Path, user_module: str, dangerous: list[str], target: str, words: list[str]
) -> None:
    r = run_cli(*STUDY, "--problem", target, "--out", tmp_path / "out")
    line = one_line_error(r, target, *words)
    assert "\n" not in line and dangerous == []  # os.abort / os.system were never called
    assert not (tmp_path / "out" / "lr.sqlite").exists()  # refused before the store (and any training)


def test_os_abort_is_refused_unrun_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "aborter.py").write_text("from os import abort as make\n")
    code = textwrap.dedent("""
        from lrkit.lab.problems import get_problem
        for target in ("os:abort", "aborter:make"):
            try:
                get_problem(target)
            except Exception as e:
                print(type(e).__name__)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["LabError", "LabError"], (r.returncode, r.stderr)  # not -6: no core dump


def test_the_guard_in_the_library(user_module: str) -> None:
    with pytest.raises(LabError, match=r"userprobs:exits"):
        get_problem("userprobs:exits")
    with pytest.raises(TypeError):
        get_problem("userprobs:model_not_a_module").make_model()  # a wrong type is also a TypeError
    problem = get_problem("userprobs:good", seed=3)
    state = torch.random.get_rng_state()
    assert isinstance(problem.make_model(), torch.nn.Linear)
    assert not torch.equal(state, torch.random.get_rng_state())  # make_model itself is the user's: it draws
    assert load_factory("userprobs:good").__name__ == "good"
    assert guarded_call(lambda seed: seed * 2, "mine:f", {"seed": 4}) == 8
    with pytest.raises(KeyboardInterrupt):  # the user's Ctrl-C is not the factory's error
        guarded_call(_interrupt, "mine:f")


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_checking_a_user_problem_leaves_the_random_state_alone(user_module: str) -> None:
    state = torch.random.get_rng_state()
    get_problem("userprobs:good")
    assert torch.equal(state, torch.random.get_rng_state())


def test_system_exit_from_user_code_while_training_is_not_success(run_cli: RunCli, tmp_path: Path, user_module: str) -> None:
    r = run_cli(*STUDY, "--problem", "userprobs:exits_while_training", "--out", tmp_path)
    one_line_error(r, "user code called sys.exit(0)", "lrkit study")


def test_ctrl_c_still_exits_130_with_the_resume_hint(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lrkit.lab.runner

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lrkit.lab.runner, "study", interrupted)
    r = run_cli(*STUDY, "--out", tmp_path)
    assert r.exit_code == 130 and "run the same command again to resume" in r.stderr


def test_an_unusable_out_is_refused_before_any_work(run_cli: RunCli, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in ["/proc/lrkit-x", str(a_file), str(a_file / "under")]:
        one_line_error(run_cli(*STUDY, "--out", bad), "cannot write to folder", bad)
    assert a_file.read_text() == "x"


def test_an_unknown_device_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    one_line_error(run_cli(*STUDY, "--device", "nosuch", "--out", tmp_path), "'nosuch' is not a torch device")
    assert not (tmp_path / "lr.sqlite").exists()
