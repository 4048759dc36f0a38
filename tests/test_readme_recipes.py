"""Every README recipe (a ```python block starting `# recipe: NAME`) runs as written; its asserts are its checks."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
RECIPES = dict(re.findall(r"```python\n# recipe: (\S+)\n(.*?)```", README.read_text(), flags=re.S))


def test_the_readme_has_its_recipes() -> None:
    assert sorted(RECIPES) == ["hf", "keras", "lightning", "optax", "presets"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_readme_recipe_runs_as_written(name: str, tmp_path: pathlib.Path) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", RECIPES[name]], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
