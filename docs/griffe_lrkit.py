"""A griffe extension for the API reference: lrkit's docstrings, read as the doctests read them.

lrkit writes its doctests under `Example:` (singular), which griffe's Google parser takes
for an admonition and renders as Markdown, so `[0.1, 0.2]` in an output line becomes a
broken link. This reads it as an `Examples:` section (code). It also splits an argument
entry that documents several parameters at once (`start, end: ...`, as in `find_lr`) into
one entry per parameter, each with the whole description, so every parameter is found in
the signature. Nothing in lrkit's code changes; only what the site shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_GROUPED = re.compile(r"^(\s+)(\w+(?:, \w+)+):(.*)$")


def read_docstring(text: str) -> str:
    """The docstring with `Example:` read as `Examples:` and grouped argument entries split."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _GROUPED.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, names, first = match.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > len(indent):
            j += 1  # the entry's continuation lines, indented deeper than its name
        for name in names.split(", "):
            out += [f"{indent}{name}:{first}", *lines[i + 1 : j]]
        i = j
    return "\n".join(out)


class LrkitDocstrings(griffe.Extension):
    """Rewrite each object's docstring with `read_docstring` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = read_docstring(obj.docstring.value)
