"""What eBPF sources need from the node: bcc, tracefs and kernel headers.

Everything here is probed, never guessed from version numbers, and every
failure is a SourceUnavailable whose reason says what to do:

- bcc is Debian's python3-bpfcc (pure Python over libbcc). The PyPI package
  named `bcc` is unrelated, so when a venv cannot `import bcc` we resolve ONLY
  the `bcc` package from the distribution's folder (bcc_finder.py).
- tracefs: bcc reads tracepoint formats from it; it is mounted when absent and
  we are allowed to (root), at /sys/kernel/tracing.
- headers: bcc compiles against kernel headers. When /lib/modules/$(uname -r)/build
  is missing we merge the nearest installed Debian split header trees
  (-common and -<arch>) into a private cache folder as a symlink tree and point
  bcc at it with BCC_KERNEL_SOURCE. We never write into /lib/modules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

from nodetape.recorder.sources.bpf.bcc_finder import BCC_DIRS, bcc_folder
from nodetape.recorder.sources.bpf.bcc_finder import BccFinder as _BccFinder
from nodetape.core.errors import SourceUnavailable

BCC_HINT = "bcc not installed (apt-get install python3-bpfcc)"
TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")
SRC_ROOT = Path("/usr/src")

# The dirs searched by the finder; tests replace this to simulate "no bcc".
bcc_search_dirs: list[str] = list(BCC_DIRS)


def find_bcc() -> tuple[str, str | None]:
    """(folder holding the `bcc` package, its version) without importing it: the recorder
    never loads libbcc (loader.py compiles in a child), so this is what it checks."""
    mod = sys.modules.get("bcc")
    if mod is not None and hasattr(mod, "BPF"):
        return os.path.dirname(os.path.dirname(mod.__file__)), getattr(mod, "__version__", None)
    folder = None
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if os.path.isfile(os.path.join(loc, "libbcc.py")):  # not the unrelated PyPI package
            folder = os.path.dirname(loc)
            break
    folder = folder or bcc_folder(bcc_search_dirs)
    if folder is None:
        raise SourceUnavailable(BCC_HINT)
    return folder, _bcc_version(folder)


def _bcc_version(folder: str) -> str | None:
    try:
        text = Path(folder, "bcc", "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return m[1] if m else None


def import_bcc():
    """The bcc module: a plain import, else Debian's python3-bpfcc folder."""
    mod = sys.modules.get("bcc")
    if mod is not None and hasattr(mod, "BPF"):
        return mod
    try:
        import bcc  # noqa: PLC0415

        if hasattr(bcc, "BPF"):  # not the unrelated PyPI package
            return bcc
    except ImportError:
        pass
    folder = bcc_folder(bcc_search_dirs)
    if folder is None:
        raise SourceUnavailable(BCC_HINT)
    sys.modules.pop("bcc", None)  # the unrelated PyPI package, if it was imported
    finder = _BccFinder(folder)
    sys.meta_path.insert(0, finder)
    try:
        import bcc  # noqa: PLC0415
    except Exception as e:  # libbcc missing or broken: say which
        for k in [k for k in sys.modules if k == "bcc" or k.startswith("bcc.")]:
            del sys.modules[k]
        sys.meta_path.remove(finder)
        raise SourceUnavailable(f"{BCC_HINT}: importing bcc from {folder} failed: {e}") from None
    return bcc


# -- tracefs -------------------------------------------------------------------

def _mount_tracefs(target: Path) -> str | None:
    """mount -t tracefs nodev TARGET through mount(2); None on success, else the error."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    rc = libc.mount(b"nodev", str(target).encode(), b"tracefs", 0, None)
    if rc != 0:
        err = ctypes.get_errno()
        return f"mount -t tracefs nodev {target} failed: {os.strerror(err)}"
    return None


def tracefs_path(mount: bool = True) -> Path:
    """The tracefs folder (with events/), mounting it at /sys/kernel/tracing if allowed."""
    for p in (TRACEFS, DEBUGFS_TRACING):
        if (p / "events").is_dir():
            return p
    if not mount:
        raise SourceUnavailable(f"tracefs is not mounted (mount -t tracefs nodev {TRACEFS})")
    if os.geteuid() != 0:
        raise SourceUnavailable(f"tracefs is not mounted and mounting it needs root (CAP_SYS_ADMIN): "
                                f"mount -t tracefs nodev {TRACEFS}")
    if not TRACEFS.is_dir():
        raise SourceUnavailable(f"{TRACEFS} does not exist: kernel without CONFIG_TRACING?")
    err = _mount_tracefs(TRACEFS)
    if err is not None or not (TRACEFS / "events").is_dir():
        raise SourceUnavailable(err or f"tracefs mounted at {TRACEFS} but has no events/ (CONFIG_FTRACE off?)")
    return TRACEFS


def tracepoint_format(category: str, event: str) -> str:
    """The format file of a tracepoint; SourceUnavailable when the kernel lacks it."""
    p = tracefs_path() / "events" / category / event / "format"
    try:
        return p.read_text()
    except OSError as e:
        raise SourceUnavailable(f"tracepoint {category}:{event} not available ({p}: {e.strerror})") from None


# -- headers -------------------------------------------------------------------

_VER = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def _version_tuple(s: str) -> tuple[int, int, int] | None:
    m = _VER.match(s)
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def _debian_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def installed_header_pairs(src_root: Path = SRC_ROOT) -> list[tuple[str, Path, Path]]:
    """(version, common tree, arch tree) for each Debian split header install."""
    arch = _debian_arch()
    out = []
    for common in sorted(src_root.glob("linux-headers-*-common")):
        ver = common.name[len("linux-headers-"):-len("-common")]
        arch_tree = src_root / f"linux-headers-{ver}-{arch}"
        if arch_tree.is_dir() and (common / "include").is_dir():
            out.append((ver, common, arch_tree))
    return out


def nearest_headers(release: str, src_root: Path = SRC_ROOT) -> tuple[str, Path, Path] | None:
    """The installed header pair closest to the running kernel release (by version)."""
    want = _version_tuple(release) or (0, 0, 0)
    pairs = [(p, _version_tuple(p[0])) for p in installed_header_pairs(src_root)]
    pairs = [(p, v) for p, v in pairs if v is not None]
    if not pairs:
        return None

    def distance(v):
        return (abs(v[0] - want[0]), abs(v[1] - want[1]), abs(v[2] - want[2]))

    return min(pairs, key=lambda pv: distance(pv[1]))[0]


def _merge_tree(dst: Path, sources: list[Path]) -> None:
    """Symlink tree of `sources` overlaid (later sources win on files): a directory
    present in only one source is one symlink, so the merge is a few hundred links."""
    entries: dict[str, list[Path]] = {}
    for s in sources:
        with os.scandir(s) as it:
            for e in it:
                entries.setdefault(e.name, []).append(Path(e.path))
    dst.mkdir(parents=True, exist_ok=True)
    for name, paths in entries.items():
        dirs = [p for p in paths if p.is_dir()]
        if len(dirs) > 1:
            _merge_tree(dst / name, dirs)
        else:
            target = dirs[0] if dirs else paths[-1]
            os.symlink(os.path.realpath(target), dst / name)


def _cache_root() -> Path:
    sys_cache = Path("/var/cache/nodetape/headers")
    try:
        sys_cache.mkdir(parents=True, exist_ok=True)
        if os.access(sys_cache, os.W_OK):
            return sys_cache
    except OSError:
        pass
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return xdg / "nodetape" / "headers"


def merged_headers(version: str, common: Path, arch_tree: Path, cache_root: Path | None = None) -> Path:
    """A merged header folder for `version`, built once (atomically) in the cache."""
    root = cache_root or _cache_root()
    dst = root / f"{version}-{_debian_arch()}"
    if (dst / "include" / "linux" / "kconfig.h").exists():
        return dst
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        # -common has the sources' include/ and arch/; -<arch> has .config,
        # include/generated and arch/*/include/generated: overlay arch on common
        _merge_tree(tmp, [common, arch_tree])
        try:
            os.rename(tmp, dst)
        except OSError:  # another recorder built it first
            if not dst.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


_headers_used: dict | None = None


def ensure_headers() -> dict:
    """Make bcc find kernel headers; returns what was used (for the manifest).

    Order: BCC_KERNEL_SOURCE already set by the user; /lib/modules/$(uname -r)/build;
    the nearest Debian headers merged into the cache.
    """
    global _headers_used
    if _headers_used is not None:
        return _headers_used
    release = os.uname().release
    if os.environ.get("BCC_KERNEL_SOURCE"):
        used = {"kind": "BCC_KERNEL_SOURCE", "path": os.environ["BCC_KERNEL_SOURCE"], "version": None}
    elif Path(f"/lib/modules/{release}/build/include").is_dir():
        used = {"kind": "modules_build", "path": f"/lib/modules/{release}/build", "version": release}
    else:
        pair = nearest_headers(release)
        if pair is None:
            raise SourceUnavailable(
                f"no kernel headers for {release} (no /lib/modules/{release}/build and no "
                f"{SRC_ROOT}/linux-headers-*-common): apt-get install linux-headers-{_debian_arch()}"
            )
        ver, common, arch_tree = pair
        try:
            path = merged_headers(ver, common, arch_tree)
        except OSError as e:
            raise SourceUnavailable(f"cannot build merged headers from {common} and {arch_tree}: {e}") from None
        os.environ["BCC_KERNEL_SOURCE"] = str(path)
        used = {"kind": "debian_merged", "path": str(path), "version": ver,
                "from": [str(common), str(arch_tree)], "running": release}
    _headers_used = used
    return used


# -- privileges ----------------------------------------------------------------

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def effective_caps(proc_root: str = "/proc") -> int:
    with open(f"{proc_root}/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = effective_caps()
    has = lambda c: bool(caps >> c & 1)  # noqa: E731
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    who = "not root" if os.geteuid() != 0 else "root without capabilities"
    raise SourceUnavailable(
        f"{who}: loading tracing BPF programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root"
    )


def probe_bpf() -> None:
    """Raise SourceUnavailable with the first precise reason eBPF sources cannot run."""
    check_privileges()
    find_bcc()
    tracefs_path()
    ensure_headers()


def bpf_environment() -> dict:
    """What the eBPF sources run on, for the manifest; never raises."""
    env: dict = {"kernel": os.uname().release}
    try:
        folder, env["bcc_version"] = find_bcc()
        env["bcc_path"] = os.path.join(folder, "bcc")
    except SourceUnavailable as e:
        env["bcc_version"], env["bcc_error"] = None, e.reason
    for p in (TRACEFS, DEBUGFS_TRACING):
        if (p / "events").is_dir():
            env["tracefs"] = str(p)
            break
    else:
        env["tracefs"] = None
    env["headers"] = _headers_used
    return env
