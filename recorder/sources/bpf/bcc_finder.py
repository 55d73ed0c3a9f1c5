"""`import bcc` from the project's venv: Debian's python3-bpfcc, and only it.

bcc's Python bindings are Debian's python3-bpfcc (pure Python over libbcc); the
PyPI package named `bcc` is unrelated. Putting all of dist-packages on sys.path
would shadow the venv's numpy and pyarrow with Debian's, so a meta-path finder
resolves `bcc` and `bcc.*` (and nothing else) from the distribution's folder.

`./run setup` puts a one-line .pth in the venv that calls install() at start-up
(appended: a bcc the venv itself holds still wins), so `python -c "import bcc"`
works in the venv. This module imports nothing heavy: it runs in every start-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

BCC_DIRS = (
    "/usr/lib/python3/dist-packages",
    "/usr/lib/python3/site-packages",
    "/usr/local/lib/python3/dist-packages",
    "/usr/share/bcc/python",
)


class BccFinder(importlib.abc.MetaPathFinder):
    """Resolves `bcc` and `bcc.*` (and nothing else) from a distribution folder."""

    def __init__(self, folder: str):
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "bcc" and not fullname.startswith("bcc."):
            return None
        search = path if fullname != "bcc" else [self.folder]
        return importlib.machinery.PathFinder.find_spec(fullname, search)


def bcc_folder(dirs=BCC_DIRS) -> str | None:
    """The first folder holding a `bcc` package, if any."""
    for d in dirs:
        if os.path.isfile(os.path.join(d, "bcc", "__init__.py")):
            return d
    return None


def install() -> BccFinder | None:
    """Append the finder to sys.meta_path once (after the others: a bcc the venv holds wins)."""
    for f in sys.meta_path:
        if isinstance(f, BccFinder):
            return f
    folder = bcc_folder()
    if folder is None:
        return None
    finder = BccFinder(folder)
    sys.meta_path.append(finder)
    return finder
