"""The child process that compiles, loads and attaches one eBPF program with bcc (loader.py).

Run as a script (`python compile_child.py SOCKET_FD BCC_FOLDER`), not imported:
it imports bcc and nothing of nodetape. It reads one request (program text and
cflags, JSON) from the SOCK_SEQPACKET socket, builds bcc.BPF (which compiles,
loads the programs and attaches the TRACEPOINT_PROBE / RAW_TRACEPOINT_PROBE
functions), and sends back one message: the maps' shapes, the attachments'
names, and every descriptor (maps, perf events, raw tracepoint links, programs)
as SCM_RIGHTS. It then leaves with os._exit: bcc's atexit cleanup would detach
(PERF_EVENT_IOC_DISABLE acts on the perf event the parent now shares).
The compiler's and the verifier's words go to stderr, which the parent reads.
"""

import ctypes
import importlib.util
import json
import os
import socket
import sys


def _install_finder(here: str, folder: str) -> None:
    """bcc, and only bcc, from `folder` (bcc_finder.py, loaded by path: this folder is not on sys.path)."""
    spec = importlib.util.spec_from_file_location("_nt_bcc_finder", os.path.join(here, "bcc_finder.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.meta_path.insert(0, mod.BccFinder(folder))


def describe(bcc, b) -> tuple[dict, list[int]]:
    """The reply: shapes and names, and the descriptors in the order they are listed."""
    lib = bcc.libbcc.lib
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    for f in (lib.bpf_table_key_size, lib.bpf_table_leaf_size):  # untyped in bcc's bindings
        f.restype, f.argtypes = ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p]
    maps, fds = [], []
    for i in range(lib.bpf_num_tables(b.module)):
        name = lib.bpf_table_name(b.module, i)
        fd = lib.bpf_table_fd(b.module, name)
        if fd < 0:
            continue  # an extern map: not ours
        maps.append({"name": name.decode(), "type": lib.bpf_table_type_id(b.module, i),
                     "key_size": lib.bpf_table_key_size(b.module, name),
                     "value_size": lib.bpf_table_leaf_size(b.module, name),
                     "max_entries": lib.bpf_table_max_entries_id(b.module, i)})
        fds.append(fd)
    tps = list(b.tracepoint_fds.items())
    raws = list(b.raw_tracepoint_fds.items())
    progs = [f.fd for f in b.funcs.values()]
    reply = {"ok": True, "maps": maps, "tracepoints": [k.decode() for k, _ in tps],
             "raw_tracepoints": [k.decode() for k, _ in raws], "programs": len(progs)}
    return reply, fds + [v for _, v in tps] + [v for _, v in raws] + progs


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    here = sys.path.pop(0)  # this folder holds modules named like others (syscalls, stream): off the path
    try:
        _install_finder(here, sys.argv[2])
        import bcc  # noqa: PLC0415

        req = json.loads(sock.recv(1 << 24))
        b = bcc.BPF(text=req["text"].encode(), cflags=req["cflags"])
        reply, fds = describe(bcc, b)
    except BaseException as e:  # bcc raises plain Exception; the details went to stderr
        sock.send(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}).encode())
        sys.stderr.flush()
        os._exit(1)
    socket.send_fds(sock, [json.dumps(reply).encode()], fds)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
