"""procfs parsers on literal file contents."""

from nodetape.recorder.kernelfs import procfs as pf

STATUS = """Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
Ngid:\t0
Pid:\t4242
PPid:\t4100
TracerPid:\t0
"""


def test_status():
    assert pf.status_ppid(STATUS) == 4242 - 142
    assert pf.status_tgid(STATUS) == 4242
    assert pf.parse_status(STATUS)["Name"] == "sleep"
    assert pf.status_ppid("Name:\tx\n") is None


def test_cmdline_argv0():
    assert pf.cmdline_argv0(b"/bin/sleep\x00100\x00") == "/bin/sleep"
    assert pf.cmdline_argv0(b"") is None  # kernel thread or zombie
    assert pf.cmdline_argv0(b"nginx: worker process\x00") == "nginx: worker process"


def test_comm():
    assert pf.comm(b"bash\n") == "bash"
    assert pf.comm(b"\n") is None


def test_ns_inode():
    assert pf.ns_inode("net:[4026531840]") == 4026531840
    assert pf.ns_inode("pid_for_children:[4026531836]") == 4026531836
    assert pf.ns_inode("garbage") is None


def test_mountinfo_proc5_example():
    m = pf.parse_mountinfo_line("36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
    assert m == pf.MountInfo(36, 35, "98:0", "/mnt1", "/mnt/parent", "rw,noatime", "ext3", "/dev/root", "rw,errors=continue")


def test_mountinfo_no_optional_fields_and_escapes():
    m = pf.parse_mountinfo_line(r"120 25 0:50 / /mnt/with\040space\011tab rw,relatime - tmpfs my\134src rw,size=1024k")
    assert m.mountpoint == "/mnt/with space\ttab"
    assert m.source == "my\\src"
    assert m.fstype == "tmpfs"


def test_mountinfo_several_optional_fields():
    m = pf.parse_mountinfo_line("30 1 0:26 / /sys/fs/cgroup/cpu rw,nosuid shared:9 master:2 - cgroup cgroup rw,cpu")
    assert (m.mount_id, m.parent_id, m.fstype, m.source, m.super_options) == (30, 1, "cgroup", "cgroup", "rw,cpu")


def test_mountinfo_malformed():
    assert pf.parse_mountinfo_line("garbage") is None
    assert pf.parse_mountinfo_line("a b c d e f - x") is None
    text = "1 0 0:1 / / rw - rootfs rootfs rw\nbad line\n"
    assert [m.mount_id for m in pf.parse_mountinfo(text)] == [1]


def test_proc_cgroup_hybrid():
    text = "12:pids:/user.slice\n4:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n"
    assert pf.parse_proc_cgroup(text) == {"pids": "/user.slice", "cpu,cpuacct": "/", "name=systemd": "/init.scope", "": "/init.scope"}
