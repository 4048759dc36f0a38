"""The pure core works without torch or matplotlib installed, and `import lrkit` loads neither."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_lrkit_loads_no_heavy_module() -> None:
    done = _run(
        """
        import sys, lrkit, lrkit.lab, lrkit.landscape
        print(sorted(m for m in ("torch", "matplotlib", "sklearn") if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_schedule_core_works_without_torch_and_matplotlib() -> None:
    # None in sys.modules makes `import torch` raise ImportError, as on a machine without it
    done = _run(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["matplotlib"] = None
        import lrkit
        s = lrkit.parse("warmup(cosine(start=0.1, steps=90), steps=10)")
        print(s(10), lrkit.from_dict(s.to_dict()) == s, s.values(range(3)).tolist())
        try:
            lrkit.Scheduler
        except ImportError:
            print("no torch")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["0.1 True [0.0, 0.01, 0.02]", "no torch"]
