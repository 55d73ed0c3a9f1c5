"""A container image built here from busybox-static: no registry is needed.

The image is written as an OCI image layout (oci-layout, index.json,
blobs/sha256/...) in a tar archive, the format `ctr images import` reads:
one uncompressed layer holding bin/busybox, its applet links and empty
proc, sys, dev, etc and tmp; a config whose entrypoint sleeps; a manifest;
an index naming the image once per tag (the `io.containerd.image.name`
annotation is what ctr names an imported image after). Every timestamp in
the layer is 0, so the same busybox always gives the same digests and a
second import changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "sleep", "cat", "ls", "true", "false", "echo", "ps", "ip", "wc", "head", "seq")
DIRS = ("proc", "sys", "dev", "etc", "tmp")
SLEEP_FOREVER = ["/bin/sleep", "2147483647"]

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def _tar_add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar(busybox: str = BUSYBOX) -> bytes:
    """The single layer: bin/busybox, its applet links, empty top-level folders."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", *DIRS):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            _tar_add(tar, info)
        data = Path(busybox).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        _tar_add(tar, info, data)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            _tar_add(tar, info)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(tags: list[str], entrypoint: list[str] | None = None, busybox: str = BUSYBOX) -> bytes:
    """An OCI image layout as a tar archive, the image named once per tag."""
    blobs: dict[str, bytes] = {}
    layer = layer_tar(busybox)
    layer_desc = _blob(blobs, layer, LAYER_TYPE)
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint or SLEEP_FOREVER, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},  # uncompressed: digest = diff id
    }
    config_desc = _blob(blobs, _json(config), CONFIG_TYPE)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, _json(manifest), MANIFEST_TYPE)
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
        {**manifest_desc, "annotations": {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": tag}}
        for tag in tags]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": _json(index)}
        files.update({f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in blobs.items()})
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            _tar_add(tar, info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            _tar_add(tar, info, data)
    return buf.getvalue()
