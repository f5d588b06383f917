"""The real node's pure parts, without a node: image archives, host-state diffs, host checks."""

from __future__ import annotations

import json
import tarfile

import pytest

from inferops.devcluster import hoststate, images, node


def test_oci_archive_is_a_complete_cached_oci_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPS_CACHE", str(tmp_path / "cache"))
    binary = tmp_path / "hello"
    binary.write_bytes(b"\x7fELF not really")
    ref, archive = images.static_binary_image("inferops.dev/hello", "t1", binary)
    assert ref == "inferops.dev/hello:t1"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))
        desc = index["manifests"][0]
        assert desc["annotations"]["io.containerd.image.name"] == ref
        manifest = json.load(tar.extractfile(f"blobs/sha256/{desc['digest'].split(':')[1]}"))
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
    assert "oci-layout" in names
    assert config["config"]["Entrypoint"] == ["/hello"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]  # uncompressed
    mtime = archive.stat().st_mtime_ns
    assert images.static_binary_image("inferops.dev/hello", "t1", binary)[1] == archive
    assert archive.stat().st_mtime_ns == mtime  # cached, not rebuilt


def _state(**changes) -> hoststate.HostState:
    base = dict(mounts=["/"], links={"lo"}, routes=set(), netns=set(), iptables={"iptables": {}, "ip6tables": {}}, cgroups=set(), sysctls={"kernel.panic": "0"})
    return hoststate.HostState(**{**base, **changes})


def test_compare_names_each_leftover():
    before = _state()
    after = _state(
        mounts=["/", "/x", "/x"],
        links={"lo", "inferops0"},
        iptables={"iptables": {"filter": {":KUBE-FIREWALL"}}, "ip6tables": {}},
        sysctls={"kernel.panic": "10"},
    )
    diffs = hoststate.compare(before, after)
    assert "links: new inferops0" in diffs
    assert "mounts: new /x" in diffs
    assert "iptables filter: new :KUBE-FIREWALL" in diffs
    assert "sysctl kernel.panic: 0 -> 10" in diffs
    assert hoststate.compare(before, _state()) == []


def test_missing_host_tools_give_one_line_with_the_apt_packages(monkeypatch):
    monkeypatch.setattr(node.os, "geteuid", lambda: 0)
    monkeypatch.setattr(node.shutil, "which", lambda name, path=None: None)
    with pytest.raises(node.NodeError) as err:
        node.check_host()
    message = str(err.value)
    assert "\n" not in message and "apt-get install -y runc containernetworking-plugins iptables" in message
