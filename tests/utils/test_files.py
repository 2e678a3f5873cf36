"""reid.utils.files: an interrupted write leaves the old file (and no temporary file); the hash is the file's."""
import hashlib

import pytest

from reid.utils.files import atomic_write, file_sha256


def test_atomic_write_replaces_only_a_whole_file(tmp_path):
    path = tmp_path / "gallery.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["gallery.npz"]
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["gallery.npz"]


def test_file_sha256_reads_files_larger_than_its_chunk(tmp_path):
    data = bytes(range(256)) * (5 << 14)  # 5 MiB: more than one 4 MiB chunk
    (tmp_path / "w.pt").write_bytes(data)
    assert file_sha256(tmp_path / "w.pt") == hashlib.sha256(data).hexdigest()
