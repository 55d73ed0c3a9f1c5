"""Confinement of re-enactment: every path a tape names resolves beneath the target, never through a link.

Tapes are untrusted (DESIGN.md principle 6, STYLE.md principle 14). A row's
`cgroup_path` such as `../../../tmp/x`, a PSI `resource` of `../../etc/passwd`
or a manifest hierarchy at `/sys/fs/cgroup/../../etc` must not make
`replay --into DIR` write, create or remove anything outside DIR.

Two layers:
- `components()` and `plain_name()` turn a tape's value into plain names (no
  '/', no NUL, not '.' or '..', at most NAME_MAX bytes), or refuse it. The
  command validates every row of the selection with them before anything is
  written, so a hostile tape is refused whole (exit 2), not half re-enacted.
- `Beneath` opens, creates, writes and removes through directory file
  descriptors, one component at a time, with O_NOFOLLOW: a symbolic link
  anywhere below the target (made by someone else, or left by an earlier run)
  is refused (ELOOP/ENOTDIR), never followed. Removal walks with directory fds
  too and unlinks links themselves, never what they point to. A walk that
  crosses into another filesystem checks its statfs magic: a real cgroupfs
  (cgroup v1 or cgroup2) is refused unless the user allowed it (--allow-cgroupfs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import stat
from collections import OrderedDict
from pathlib import Path

from nodetape.core.errors import UserError

NAME_MAX = 255  # bytes per path component (Linux NAME_MAX)
MAX_DEPTH = 64  # components in one cgroup path; the kernel nests far less
# statfs f_type of a real cgroup filesystem (include/uapi/linux/magic.h)
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_MAGICS = (CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# open directory fds kept for repeated writes (a sample per cgroup per interval)
DIR_CACHE = 128


class Escape(ValueError):
    """A tape value that cannot be a path beneath the target; the message says why."""


def components(path) -> tuple[str, ...]:
    """A tape's cgroup path as plain names beneath a hierarchy root ('/' and '' are the root)."""
    if not isinstance(path, str):
        raise Escape("is not text")
    if "\x00" in path:
        raise Escape("contains a NUL byte")
    parts = []
    for c in path.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            raise Escape("has a '..' component")
        if len(c.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise Escape(f"has a component longer than {NAME_MAX} bytes")
        parts.append(c)
    if len(parts) > MAX_DEPTH:
        raise Escape(f"is deeper than {MAX_DEPTH} folders")
    return tuple(parts)


def plain_name(value) -> str:
    """A value used inside a file name (a PSI resource): letters, digits, '_', '.', '-'; not hidden."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        raise Escape("is not a plain name")
    return value


def shown(value, limit: int = 80) -> str:
    """A tape value for a one-line message: control characters escaped, long values cut."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_libc = None


def fs_magic(fd: int) -> int | None:
    """statfs f_type of the filesystem holding fd; None if unknown."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86_64; f_type comes first
    if _libc.fstatfs(fd, buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def is_cgroupfs_path(path: Path) -> bool:
    """Whether `path`, or its nearest existing ancestor, is on a real cgroup filesystem."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if p.is_dir() else 0))
    except OSError:
        return False
    try:
        return fs_magic(fd) in CGROUP_MAGICS
    finally:
        os.close(fd)


class Refused(UserError):
    """Re-enactment met something it must not pass through (a link, a cgroupfs mount)."""


class Beneath:
    """Folders and files beneath `root`, reached through directory fds with O_NOFOLLOW."""

    def __init__(self, root: Path, *, allow_cgroupfs: bool = False):
        self.root = Path(root)
        self.allow_cgroupfs = allow_cgroupfs
        # the target itself is the user's choice: links in its own path are theirs to make
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._devs: dict[int, bool] = {}
        self.cgroupfs = self._check_fs(self.root_fd, os.fstat(self.root_fd).st_dev, self.root)
        self._cache: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def _check_fs(self, fd: int, dev: int, where) -> bool:
        if dev not in self._devs:
            self._devs[dev] = fs_magic(fd) in CGROUP_MAGICS
        if self._devs[dev] and not self.allow_cgroupfs:
            raise Refused(f"--into {self.root}: {shown(str(where), 200)} is on a real cgroup filesystem; "
                          "re-enact into a plain folder or pass --allow-cgroupfs to write the tape's own cgroups there",
                          str(self.root))
        return self._devs[dev]

    def _where(self, comps) -> str:
        return str(self.root.joinpath(*comps))

    def _open_child(self, parent: int, name: str, comps, create: bool) -> tuple[int, bool]:
        made = False
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
                made = True
            except FileExistsError:
                pass
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(f"--into: {shown(self._where(comps), 200)} is a symbolic link or not a folder; "
                              "re-enactment never follows links", self._where(comps)) from None
            raise
        return fd, made

    def dir(self, comps: tuple[str, ...], create: bool = False, on_create=None) -> int | None:
        """An fd of the folder `comps` beneath the root (owned by the cache: do not close);
        None if it does not exist and `create` is false. `on_create(comps, fd)` runs for each
        folder made, parents first (one level at a time, as inotify watchers expect)."""
        if not comps:
            return self.root_fd
        fd = self._cache.get(comps)
        if fd is not None:
            self._cache.move_to_end(comps)
            return fd
        parent = self.dir(comps[:-1], create, on_create)
        if parent is None:
            return None
        try:
            fd, made = self._open_child(parent, comps[-1], comps, create)
        except FileNotFoundError:
            return None
        st_dev, parent_dev = os.fstat(fd).st_dev, os.fstat(parent).st_dev
        if st_dev != parent_dev:
            try:
                self._check_fs(fd, st_dev, self._where(comps))
            except Refused:
                os.close(fd)
                raise
        self._cache[comps] = fd
        while len(self._cache) > DIR_CACHE:
            os.close(self._cache.popitem(last=False)[1])
        if made and on_create is not None:
            on_create(comps, fd)
        return fd

    def on_cgroupfs(self, comps: tuple[str, ...]) -> bool:
        fd = self.dir(comps)
        return fd is not None and self._devs.get(os.fstat(fd).st_dev, False)

    def exists(self, comps: tuple[str, ...], name: str) -> bool:
        fd = self.dir(comps)
        if fd is None:
            return False
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False

    def remove_tree(self, comps: tuple[str, ...], *, unlink_files: bool = True) -> None:
        """Remove the folder `comps` and everything in it, children first, through fds; links are
        removed as links. The root itself is never removed. Missing is not an error."""
        if not comps:
            return
        self._forget(comps)
        parent = self.dir(comps[:-1])
        if parent is not None:
            _rmtree_at(parent, comps[-1], unlink_files)

    def _forget(self, comps: tuple[str, ...]) -> None:
        n = len(comps)
        for k in [k for k in self._cache if k[:n] == comps]:
            os.close(self._cache.pop(k))

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1


def write_at(dir_fd: int, name: str, data: bytes, *, create: bool = True, truncate: bool = True) -> None:
    """Overwrite a regular file's content in place (same inode), never through a link."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):
            raise Refused(f"--into: {shown(name)} is a symbolic link or not a regular file; "
                          "re-enactment never follows links", name) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"--into: {shown(name)} is not a regular file", name)
        os.pwrite(fd, data, 0)
        if truncate and len(data) < st.st_size:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _rmtree_at(parent: int, name: str, unlink_files: bool) -> None:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            os.unlink(name, dir_fd=parent)  # a link or a file where a folder was: it goes, its target stays
            return
        raise
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for child, is_dir in entries:
            if is_dir:
                _rmtree_at(fd, child, unlink_files)
            elif unlink_files:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
