"""A Kubernetes pod template, run the way the kubelet would run it through CRI.

The DaemonSet in deploy/ is tested by running its pod template, not a copy of it:
this module reads the template's containers, volumes, security context and
namespaces and gives the harness the CRI request the kubelet would send. It does
what the kubelet does on the way and nothing more: `$(VAR)` in args expands from
the container's env, `fieldRef: spec.nodeName` is the node's name, a hostPath
volume is a bind mount of that host path (or of the folder a test maps it to),
an emptyDir is a fresh folder, the resource limits become the CFS quota and the
memory limit. Anything else in a template (probes, configMaps, secrets) is
refused, so a template that grows a feature this cannot run fails loudly.
"""

from __future__ import annotations

import re
from pathlib import Path

from .pod import ContainerSpec, Mount, PodSpec

_KNOWN_POD_KEYS = {"hostPID", "hostNetwork", "dnsPolicy", "priorityClassName", "tolerations",
                   "terminationGracePeriodSeconds", "containers", "volumes"}
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def cpu_quota_us(limit: str | int | None, period_us: int = 100_000) -> int:
    """A CPU limit ('1', '500m', 2) as the CFS quota per period the kubelet sets; 0 without a limit."""
    if limit is None:
        return 0
    text = str(limit)
    millis = int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)
    return millis * period_us // 1000


def memory_bytes(limit: str | int | None) -> int:
    """A memory quantity ('640Mi', '1G', 1024) in bytes; 0 without a limit."""
    if limit is None:
        return 0
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(limit))
    if not m:
        raise ValueError(f"memory quantity {limit!r} is not one this reads")
    scale = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(m.group(1)) * scale


def _env(container: dict, node_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = node_name
        else:
            raise ValueError(f"env {e['name']}: only values and fieldRef spec.nodeName are run here")
    return env


def _mounts(container: dict, volumes: dict, host_paths: dict[str, Path], scratch: Path) -> list[Mount]:
    out = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes[vm["name"]]
        if "hostPath" in vol:
            declared = vol["hostPath"]["path"]
            host = Path(host_paths.get(declared, declared))
            if vol["hostPath"].get("type") == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
        elif "emptyDir" in vol:
            host = scratch / vm["name"]
            host.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"volume {vm['name']}: only hostPath and emptyDir are run here")
        out.append(Mount(vm["mountPath"], str(host), bool(vm.get("readOnly"))))
    return out


def container_spec(container: dict, volumes: dict, *, node_name: str, host_paths: dict[str, Path],
                   scratch: Path, image: str | None = None) -> ContainerSpec:
    env = _env(container, node_name)
    args = [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in container.get("args") or []]
    limits = (container.get("resources") or {}).get("limits") or {}
    sec = container.get("securityContext") or {}
    if sec.get("privileged"):
        raise ValueError(f"container {container['name']}: privileged is not least privilege")
    caps = sec.get("capabilities") or {}
    return ContainerSpec(
        container["name"], list(container.get("command") or []), image=image or container["image"],
        cpu_quota_us=cpu_quota_us(limits.get("cpu")), memory_limit_bytes=memory_bytes(limits.get("memory")),
        args=args, env=env, mounts=_mounts(container, volumes, host_paths, scratch),
        # as the kubelet passes them: the pod spec's names (the runtime adds the CAP_ prefix)
        capabilities_add=list(caps.get("add") or []), capabilities_drop=list(caps.get("drop") or []),
        readonly_rootfs=bool(sec.get("readOnlyRootFilesystem")),
        no_new_privs=sec.get("allowPrivilegeEscalation") is False)


def pod_from_template(obj: dict, *, node_name: str, scratch: Path, host_paths: dict[str, Path] | None = None,
                      image: str | None = None, qos: str = "burstable") -> PodSpec:
    """The PodSpec the harness runs for a DaemonSet (or a bare Pod) manifest on node `node_name`.

    `host_paths` maps a template's hostPath to the folder a test gives it instead (a private
    store, the private containerd's state); `scratch` holds the emptyDir folders.
    """
    template = obj["spec"]["template"] if obj.get("kind") == "DaemonSet" else obj
    pod = template["spec"]
    unknown = set(pod) - _KNOWN_POD_KEYS
    if unknown:
        raise ValueError(f"pod spec fields not run here: {sorted(unknown)}")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    containers = [container_spec(c, volumes, node_name=node_name, host_paths=host_paths or {}, scratch=scratch,
                                 image=image) for c in pod["containers"]]
    name = f"{obj['metadata']['name']}-{node_name}"
    return PodSpec(name, namespace=obj["metadata"].get("namespace", "default"), qos=qos, containers=containers,
                   host_network=bool(pod.get("hostNetwork")), host_pid=bool(pod.get("hostPID")))
