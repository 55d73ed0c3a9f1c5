"""CRI v1 gRPC stubs, generated from nodetape_cri_v1.proto on first use.

No generated code is checked in: the first caller runs grpcio-tools' protoc
into a cache folder named after the .proto's hash (a changed .proto gets new
stubs, an unchanged one is compiled once per machine and user), written to a
temporary folder and renamed into place so concurrent first uses never see
half a module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("nodetape_cri_v1.proto")
_MOD = PROTO.stem  # nodetape_cri_v1 -> nodetape_cri_v1_pb2, nodetape_cri_v1_pb2_grpc


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(PROTO.read_bytes()).hexdigest()[:16]
    return base / "nodetape" / f"cri-stubs-{digest}"


def _generate(out: Path) -> None:
    from grpc_tools import protoc  # noqa: PLC0415 - heavy, only on first use

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cri-stubs-", dir=out.parent))
    try:
        include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{include}",
                          f"--python_out={tmp}", f"--grpc_python_out={tmp}", str(PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
        try:
            tmp.rename(out)
        except OSError:
            if not (out / f"{_MOD}_pb2_grpc.py").is_file():  # not a concurrent winner
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # the _grpc module imports the _pb2 one by this top-level name
    spec.loader.exec_module(mod)
    return mod


def load() -> tuple[ModuleType, ModuleType]:
    """(messages, services) modules of runtime.v1, generating them on first use."""
    out = cache_dir()
    if not (out / f"{_MOD}_pb2_grpc.py").is_file():
        _generate(out)
    pb2 = _load(f"{_MOD}_pb2", out / f"{_MOD}_pb2.py")
    grpc_mod = _load(f"{_MOD}_pb2_grpc", out / f"{_MOD}_pb2_grpc.py")
    return pb2, grpc_mod
