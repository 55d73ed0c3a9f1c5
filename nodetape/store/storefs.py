"""A fleet store's files, through pyarrow.fs: a local or shared directory, or an object store.

A directory (NFS, CephFS and the like) is pyarrow's LocalFileSystem; `s3://bucket/prefix`
is S3FileSystem (the endpoint may be given as `?endpoint_override=host:port&scheme=http`
in the URL, or by AWS_ENDPOINT_URL), `gs://` GcsFileSystem. Writes are atomic either way:
on a directory a temporary name (hidden, `.NAME.PID.partial`) is renamed into place; an
object store makes an object visible only once its single put completes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nodetape.core.errors import UserError

OBJECT_SCHEMES = ("s3", "gs", "gcs")
CHUNK = 1 << 20
PARTIAL = ".partial"


def is_url(location: str | os.PathLike) -> bool:
    return urlsplit(str(location)).scheme in OBJECT_SCHEMES


def blake2b_file(fs, path: str) -> tuple[str, int]:
    """BLAKE2b (32-byte digest, as tape manifests keep it) and size of a file, streamed."""
    h = hashlib.blake2b(digest_size=32)
    n = 0
    with fs.open_input_stream(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def blake2b_local(path: str | os.PathLike) -> tuple[str, int]:
    h = hashlib.blake2b(digest_size=32)
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@dataclass
class StoreFS:
    """A store root on a pyarrow filesystem; paths given to methods are relative to the root."""

    location: str  # what the user wrote
    fs: object     # pyarrow.fs.FileSystem
    root: str      # the root's path on fs (no trailing '/')
    local: bool

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def local_path(self, rel: str) -> str:
        """A path DuckDB and Spark can read directly (local stores only)."""
        return self.full(rel)

    def size(self, rel: str) -> int | None:
        """Size of a file, None if absent."""
        from pyarrow.fs import FileType

        info = self.fs.get_file_info(self.full(rel))
        return info.size if info.type == FileType.File else None

    def exists_dir(self, rel: str = "") -> bool:
        from pyarrow.fs import FileType

        return self.fs.get_file_info(self.full(rel)).type == FileType.Directory

    def list(self, rel: str) -> list[tuple[str, bool]]:
        """(name, is_dir) of the entries directly under rel; [] if it does not exist. A directory store is
        listed with os.scandir (the entry types come with the listing: no stat per file)."""
        if self.local:
            try:
                with os.scandir(self.full(rel)) as it:
                    return [(e.name, e.is_dir()) for e in it]
            except (FileNotFoundError, NotADirectoryError):
                return []
        from pyarrow.fs import FileSelector, FileType

        try:
            infos = self.fs.get_file_info(FileSelector(self.full(rel), allow_not_found=True))
        except FileNotFoundError:
            return []
        return [(i.base_name, i.type == FileType.Directory) for i in infos]

    def checksum(self, rel: str) -> tuple[str, int]:
        return blake2b_file(self.fs, self.full(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.full(rel)) as f:
            return f.read()

    def _make_parent(self, rel: str) -> None:
        parent = self.full(rel).rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)

    def put_file(self, src: str | os.PathLike, rel: str) -> int:
        """Copy a local file to rel atomically; returns bytes written."""
        self._make_parent(rel)
        if self.local:
            return self._put_local(src, rel)
        n = 0
        with open(src, "rb") as f, self.fs.open_output_stream(self.full(rel)) as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
                n += len(chunk)
        return n

    def put_bytes(self, data: bytes, rel: str) -> None:
        self._make_parent(rel)
        if self.local:
            tmp = self._temp_for(rel)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.full(rel))
            except BaseException:
                _unlink_quiet(tmp)
                raise
            return
        with self.fs.open_output_stream(self.full(rel)) as out:
            out.write(data)

    def _temp_for(self, rel: str) -> str:
        folder, name = self.full(rel).rsplit("/", 1)
        return f"{folder}/.{name}.{os.getpid()}-{uuid.uuid4().hex[:6]}{PARTIAL}"

    def _open_temp(self, rel: str):
        """A new temporary for rel; its folder is made again if a compaction removed it meanwhile
        (store/compact.py removes the per-host folders it emptied)."""
        for _ in range(3):
            tmp = self._temp_for(rel)
            try:
                return tmp, open(tmp, "wb")
            except FileNotFoundError:
                self._make_parent(rel)
        tmp = self._temp_for(rel)
        return tmp, open(tmp, "wb")

    def _put_local(self, src, rel: str) -> int:
        self.clean_partials(rel)
        tmp, out = self._open_temp(rel)
        n = 0
        try:
            with open(src, "rb") as f, out:
                while chunk := f.read(CHUNK):
                    out.write(chunk)
                    n += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.full(rel))
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return n

    def clean_partials(self, rel: str) -> int:
        """Remove temporary files a killed push left for this target (local stores); how many."""
        if not self.local:
            return 0
        folder, name = self.full(rel).rsplit("/", 1)
        removed = 0
        try:
            entries = os.listdir(folder)
        except OSError:
            return 0
        for e in entries:
            if e.startswith(f".{name}.") and e.endswith(PARTIAL):
                pid = e[len(name) + 2:-len(PARTIAL)].split("-")[0]
                if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                    continue  # another push of this very part is running
                removed += _unlink_quiet(f"{folder}/{e}")
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quiet(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0


def check_location(location: str) -> str:
    """A store location worth retrying: a URL of a known scheme, or a folder path (it may not exist yet)."""
    text = str(location)
    scheme = urlsplit(text).scheme
    if scheme and scheme not in OBJECT_SCHEMES and len(scheme) > 1:
        raise UserError(f"--push {text}: unknown store scheme {scheme!r} (a folder, s3:// or gs://)")
    if not text.strip():
        raise UserError("--push: empty store location")
    return text


def open_fs(location: str | os.PathLike, *, create: bool = False) -> StoreFS:
    """The filesystem of a store location; UserError naming it when it cannot be reached."""
    text = str(location)
    if is_url(text):
        return _open_url(text)
    from pyarrow.fs import LocalFileSystem

    p = Path(text).absolute()
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{text}: cannot create the store folder: {e.strerror}") from None
    elif not p.is_dir():
        raise UserError(f"{text}: no such store folder")
    return StoreFS(text, LocalFileSystem(), str(p).rstrip("/") or "/", True)


def _open_url(text: str) -> StoreFS:
    import pyarrow.fs as pafs

    parts = urlsplit(text)
    try:
        if parts.scheme == "s3":
            endpoint = os.environ.get("AWS_ENDPOINT_URL")
            if endpoint and "endpoint_override" not in parts.query:
                ep = urlsplit(endpoint)
                fs = pafs.S3FileSystem(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "https",
                                       region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
                path = (parts.netloc + parts.path).rstrip("/")
            else:
                fs, path = pafs.FileSystem.from_uri(text)
        else:
            fs, path = pafs.FileSystem.from_uri(text)
    except (ValueError, OSError) as e:
        raise UserError(f"{text}: cannot open the store ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return StoreFS(text, fs, path.rstrip("/"), False)
