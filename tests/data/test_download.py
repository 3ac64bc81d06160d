"""Downloads with checksum verification, from file:// URLs (never the network)."""

import hashlib
import types

import numpy as np
import pytest

from volnet.data import DataError, cache_dir, download, fetch, load


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """A folder served at a file:// URL; ``remote.publish(name, files)`` points fetch's tables at it."""
    folder = tmp_path / "remote"
    folder.mkdir()

    def publish(name, files, checksums=None):
        for filename, content in files.items():
            (folder / filename).write_bytes(content)
        monkeypatch.setitem(download.URLS, name, (folder.as_uri() + "/",))
        monkeypatch.setitem(download.FILES, name, tuple(files))
        for filename, content in files.items():
            digest = (checksums or {}).get(filename) or ("md5", hashlib.md5(content).hexdigest())
            monkeypatch.setitem(download.CHECKSUMS, filename, digest)

    return types.SimpleNamespace(folder=folder, url=folder.as_uri() + "/", publish=publish)


def test_fetch_verifies_and_places_files(tmp_path, remote):
    remote.publish("mnist", {"a.gz": b"first", "b.gz": b"second"},
                   {"b.gz": ("sha256", hashlib.sha256(b"second").hexdigest())})
    root = tmp_path / "data"
    assert fetch("mnist", root) == root
    assert (root / "a.gz").read_bytes() == b"first" and (root / "b.gz").read_bytes() == b"second"
    assert sorted(p.name for p in root.iterdir()) == ["a.gz", "b.gz"]  # no temporary files left


def test_wrong_checksum_fails_and_leaves_no_file(tmp_path, remote):
    remote.publish("mnist", {"a.gz": b"tampered"}, {"a.gz": ("md5", "0" * 32)})
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"a.gz.*checksum mismatch: md5 .*, expected 0{32}") as info:
        fetch("mnist", root)
    assert str(root / "a.gz") in str(info.value)
    assert list(root.iterdir()) == []


def test_unreachable_url_names_the_path_to_fill_by_hand(tmp_path, remote, monkeypatch):
    remote.publish("mnist", {"a.gz": b"x"})
    monkeypatch.setitem(download.URLS, "mnist", ((tmp_path / "gone").as_uri() + "/",))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="could not download a.gz") as info:
        fetch("mnist", root)
    assert f"place it at {root / 'a.gz'}" in str(info.value) and "\n" not in str(info.value)  # one line
    assert list(root.iterdir()) == []


def test_next_mirror_is_tried(tmp_path, remote, monkeypatch):
    remote.publish("mnist", {"a.gz": b"x"})
    bases = ((tmp_path / "gone").as_uri() + "/", remote.url)
    monkeypatch.setitem(download.URLS, "mnist", bases)
    assert (fetch("mnist", tmp_path / "data") / "a.gz").read_bytes() == b"x"


def test_verified_files_are_not_downloaded_again(tmp_path, remote):
    remote.publish("mnist", {"a.gz": b"x"})
    fetch("mnist", tmp_path / "data")
    (remote.folder / "a.gz").unlink()
    fetch("mnist", tmp_path / "data")  # would fail if it downloaded


def test_a_damaged_local_file_is_replaced(tmp_path, remote):
    remote.publish("mnist", {"a.gz": b"good"})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.gz").write_bytes(b"half")
    fetch("mnist", tmp_path / "data")
    assert (tmp_path / "data" / "a.gz").read_bytes() == b"good"


def test_default_folder_is_the_cache(cache, remote, monkeypatch):
    remote.publish("cifar10", {"c.tar.gz": b"x"})
    assert cache_dir() == cache
    assert fetch("cifar10") == cache / "cifar10" and (cache / "cifar10" / "c.tar.gz").is_file()
    monkeypatch.delenv("VOLNET_DATA")
    assert str(cache_dir()).endswith(".cache/volnet")


def test_unknown_name():
    with pytest.raises(DataError, match="nothing to download for 'folder'"):
        fetch("folder")


def test_published_checksums_cover_every_file():
    for files in download.FILES.values():
        for filename in files:
            algorithm, digest = download.CHECKSUMS[filename]
            assert algorithm in ("md5", "sha256") and len(digest) == hashlib.new(algorithm).digest_size * 2


def test_load_downloads_only_when_asked(cache, remote, rng, write_idx, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    images = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    files = {}
    for stem, array in [("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", np.array([3, 9], np.uint8)),
                        ("t10k-images-idx3-ubyte", images[:1]), ("t10k-labels-idx1-ubyte", np.array([4], np.uint8))]:
        files[f"{stem}.gz"] = write_idx(staging / f"{stem}.gz", array).read_bytes()
    remote.publish("mnist", files)
    with pytest.raises(DataError, match=r'volnet\.data\.fetch\("mnist"\)'):
        load("mnist")
    assert not cache.exists()
    data = load("mnist", split="test", download=True)
    assert data.labels.tolist() == [4] and data.images[0, 3, 4, 0] == np.float32(images[0, 3, 4]) / np.float32(255)
    assert load("mnist").labels.tolist() == [3, 9]


def test_volnet_fetch_command(tmp_path, remote, capsys):
    from volnet.cli import main

    remote.publish("mnist", {"a.gz": b"first"})
    assert main(["fetch", "mnist", "--root", str(tmp_path / "data")]) == 0
    assert "files verified in" in capsys.readouterr().out
    assert (tmp_path / "data" / "a.gz").read_bytes() == b"first"
    remote.publish("mnist", {"a.gz": b"tampered"}, {"a.gz": ("md5", "0" * 32)})
    assert main(["fetch", "mnist", "--root", str(tmp_path / "other")]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
