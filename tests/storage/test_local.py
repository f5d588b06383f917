import os

import pytest

from inferops.storage import NotFound, fetch, list_files, publish


def _tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_publish_then_fetch_round_trip(tmp_path):
    src = _tree(tmp_path / "src", {"m/config.pbtxt": b"name: 'm'", "m/1/model.onnx": os.urandom(1000), "report.json": b"{}"})
    publish(src, f"file://{tmp_path}/out/repo")
    assert list_files(f"file://{tmp_path}/out/repo") == ["m/1/model.onnx", "m/config.pbtxt", "report.json"]
    got = fetch(f"file://{tmp_path}/out/repo", tmp_path / "down")
    assert (got / "m/1/model.onnx").read_bytes() == (src / "m/1/model.onnx").read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["repo"]  # no staging left beside it


def test_a_committed_tree_is_write_once(tmp_path):
    """A second publish of the same artifact (a Job re-run, a reverted spec) neither overwrites
    nor deletes the committed one: it changes nothing and says so."""
    uri = f"file://{tmp_path}/out/repo"
    assert publish(_tree(tmp_path / "a", {"old.txt": b"1", "report.json": b"{}"}), uri) is True
    assert publish(_tree(tmp_path / "b", {"new.txt": b"2", "report.json": b'{"second": true}'}), uri) is False
    assert list_files(uri) == ["old.txt", "report.json"]
    assert (tmp_path / "out/repo/report.json").read_bytes() == b"{}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["repo"], "no staging left beside it"


def test_an_uncommitted_leftover_is_set_aside_not_served(tmp_path):
    uri = f"file://{tmp_path}/out/repo"
    _tree(tmp_path / "out/repo", {"half.onnx": b"x"})  # no report.json: never committed
    assert publish(_tree(tmp_path / "a", {"m.onnx": b"1", "report.json": b"{}"}), uri) is True
    assert list_files(uri) == ["m.onnx", "report.json"]


def test_read_small_refuses_what_is_over_the_cap_without_reading_it(tmp_path):
    from inferops.storage import TooLarge, read_small

    (tmp_path / "small.json").write_bytes(b"{}")
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: 100 MB that costs no disk
    assert read_small(f"file://{tmp_path}/small.json", 1024) == b"{}"
    with pytest.raises(TooLarge, match="104857600 bytes, over the limit of 1024"):
        read_small(f"file://{tmp_path}/big.json", 1024)
    with pytest.raises(NotFound):
        read_small(f"file://{tmp_path}/none.json", 1024)


def test_failed_publish_leaves_nothing(tmp_path):
    src = _tree(tmp_path / "src", {"report.json": b"{}"})
    (src / "dangling").symlink_to(tmp_path / "missing")  # copying it fails midway
    with pytest.raises(Exception):
        publish(src, f"file://{tmp_path}/out/repo")
    assert list(os.scandir(tmp_path / "out")) == []


def test_pvc_uri_publishes_under_the_mount(tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPS_PVC_ROOT", str(tmp_path / "mnt"))
    publish(_tree(tmp_path / "src", {"report.json": b"{}"}), "pvc://models/digits")
    assert (tmp_path / "mnt/models/digits/report.json").is_file()


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(NotFound, match="nothing at file://"):
        fetch(f"file://{tmp_path}/nope.onnx", tmp_path / "down")
