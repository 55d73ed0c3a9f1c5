#!/usr/bin/env python3
"""Build nodetape's container image from Debian packages, with no registry.

    python3 deploy/build_image.py --out nodetape-image.tar [--tag nodetape:dev] [--keep-rootfs DIR]

Steps, each from something this machine can reach (Debian's archive and PyPI):

1. a bookworm root filesystem made by `debootstrap --variant=minbase`, with
   python3 and python3-bpfcc (bcc's Python bindings and libbcc) from Debian;
   the result is cached in /var/cache/nodetape/ keyed by suite and package list,
   since debootstrap is the slow step (~1m45s here) and a rebuild changes nothing;
2. kernel headers for bcc's tracepoint programs: the files of Debian's
   linux-headers-<ver>-common and -amd64 packages, unpacked from the .debs (usr/src only)
   (installing them would pull in gcc through linux-compiler-gcc-12-x86, about
   100 MB the recorder never runs);
3. nodetape itself, as a wheel built from this checkout, and its Python
   dependencies from PyPI, installed with `pip --target` into the image's
   /usr/local/lib/python3.11/dist-packages (the image's python3 is 3.11, like
   the interpreter that runs this script; checked below);
4. the OCI image layout (one uncompressed layer, config, manifest, index) in a
   tar archive, the format `ctr images import` reads.

The image runs `nodetape` as its entrypoint; the DaemonSet passes `record ...`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-bpfcc")
CACHE = Path("/var/cache/nodetape")
SITE = "usr/local/lib/python3.11/dist-packages"
DEFAULT_TAG = "localhost/nodetape:dev"
ENTRYPOINT_SCRIPT = "#!/usr/bin/python3\nimport sys\nfrom nodetape.cli import main\nsys.exit(main())\n"
# Never shipped: caches, documentation, the package manager's lists.
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
         "usr/share/locale")

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def debian_mirror(sources_dir: Path = Path("/etc/apt/sources.list.d")) -> str:
    """The archive apt already uses (deb822 or one-line format); Debian's default otherwise."""
    texts = [p.read_text() for p in sorted(sources_dir.glob("*.sources"))]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", stanza, re.M) and "security" not in stanza:
                m = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", legacy.read_text(), re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def base_rootfs(root: Path) -> None:
    """debootstrap into root, through the cache."""
    key = hashlib.sha256(f"{SUITE}:{','.join(DEBIAN_PACKAGES)}".encode()).hexdigest()[:16]
    cached = CACHE / f"rootfs-{SUITE}-{key}.tar"
    if cached.exists():
        say(f"base root filesystem from the cache ({cached})")
        run(["tar", "--numeric-owner", "-xpf", str(cached), "-C", str(root)])
        return
    mirror = debian_mirror()
    say(f"debootstrap --variant=minbase {SUITE} from {mirror} (with {', '.join(DEBIAN_PACKAGES)})")
    run(["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", SUITE, str(root), mirror],
        stdout=subprocess.DEVNULL)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    run(["tar", "--numeric-owner", "-cpf", str(tmp), "-C", str(root), "."])
    os.replace(tmp, cached)


def header_packages() -> list[str]:
    """linux-headers-<ver>-amd64 and its -common twin, as linux-headers-amd64 names them today."""
    out = run(["apt-cache", "depends", "linux-headers-amd64"], capture_output=True, text=True).stdout
    arch = re.search(r"Depends:\s*(linux-headers-\S+-amd64)", out)
    if not arch:
        raise SystemExit("build_image: apt-cache names no linux-headers-*-amd64 (run apt-get update)")
    return [arch.group(1), arch.group(1).removesuffix("-amd64") + "-common"]


def add_headers(root: Path, work: Path) -> list[str]:
    pkgs = header_packages()
    say(f"kernel headers: {', '.join(pkgs)} (unpacked, without their compiler dependency)")
    run(["apt-get", "download", *pkgs], cwd=work, stdout=subprocess.DEVNULL)
    for deb in sorted(work.glob("linux-headers-*.deb")):
        # Only usr/src: the packages' lib/modules/<ver>/build links are for a kernel the image never
        # runs, and extracting them would replace the merged-/usr `lib -> usr/lib` link with a folder.
        files = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        run(["tar", "-x", "--keep-directory-symlink", "-C", str(root), "./usr/src"], stdin=files.stdout)
        if files.wait() != 0:
            raise SystemExit(f"build_image: dpkg-deb could not read {deb.name}")
    return pkgs


def add_nodetape(root: Path, work: Path) -> None:
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"build_image: needs Python 3.11 (the image's), this is {sys.version.split()[0]}")
    say("nodetape wheel and its Python dependencies")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(REPO)])
    wheel = next(work.glob("nodetape-*.whl"))
    run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-script-location",
         "--target", str(root / SITE), str(wheel)])
    script = root / "usr/local/bin/nodetape"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(ENTRYPOINT_SCRIPT)
    script.chmod(0o755)


def prune(root: Path) -> None:
    for rel in PRUNE:
        p = root / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def _file_blob(blobs: Path, path: Path, media_type: str) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    os.replace(path, blobs / digest)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": (blobs / digest).stat().st_size}


def _json_blob(blobs: Path, obj, media_type: str) -> dict:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def oci_archive(root: Path, out: Path, tag: str, work: Path) -> dict:
    """Write the OCI layout of a one-layer image of `root` as the tar archive `out`."""
    layout = work / "oci"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = work / "layer.tar"
    say("layer (uncompressed tar of the root filesystem)")
    run(["tar", "--numeric-owner", "--sort=name", "--mtime=@0", "-cf", str(layer), "-C", str(root), "."])
    layer_desc = _file_blob(blobs, layer, LAYER_TYPE)
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/usr/local/bin/nodetape"], "Cmd": ["--help"], "WorkingDir": "/",
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "PYTHONDONTWRITEBYTECODE=1"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},  # uncompressed: digest = diff id
    }
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": _json_blob(blobs, config, CONFIG_TYPE), "layers": [layer_desc]}
    manifest_desc = _json_blob(blobs, manifest, MANIFEST_TYPE)
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [
        {**manifest_desc, "annotations": {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    os.replace(tmp, out)
    return {"tag": tag, "layer_bytes": layer_desc["size"], "manifest_digest": manifest_desc["digest"]}


def build(out: Path, tag: str = DEFAULT_TAG, keep_rootfs: Path | None = None) -> dict:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nodetape-image-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        root = keep_rootfs or work / "rootfs"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        base_rootfs(root)
        headers = add_headers(root, work)
        add_nodetape(root, work)
        prune(root)
        facts = oci_archive(root, out, tag, work)
    facts.update(seconds=round(time.monotonic() - t0, 1), archive_bytes=out.stat().st_size, headers=headers)
    say(f"image {tag}: {facts['archive_bytes'] / 2**20:.0f} MiB in {facts['seconds']} s -> {out}")
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the OCI archive to write (for `ctr images import`)")
    ap.add_argument("--tag", default=DEFAULT_TAG, help=f"the image's name (default {DEFAULT_TAG})")
    ap.add_argument("--keep-rootfs", type=Path, help="build the root filesystem here and keep it")
    ap.add_argument("--facts", type=Path, help="write size and time of the build here as JSON")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("build_image: run as root (debootstrap and dpkg-deb need it)", file=sys.stderr)
        return 2
    facts = build(args.out.resolve(), args.tag, args.keep_rootfs)
    if args.facts:
        args.facts.write_text(json.dumps(facts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
