"""A file cut short on disk while it is open: mapped files check a tensor's extent
against the file's current size and raise :class:`~quantlens.TruncatedFileError` instead
of faulting (``SIGBUS``); files opened with ``mmap=False`` were read whole and keep
answering from memory.

Each scenario runs in a child process, so a ``SIGBUS`` shows up as a failed test rather
than killing pytest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = r"""
import os, sys
import numpy as np
import quantlens

path, name, mmap = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
f = quantlens.open_weights(path, mmap=mmap)
before = np.array(f.get_tensor(name), copy=True)
info = f.tensor(name)
os.truncate(path, info.offset + 1)  # the tensor's data now runs past the end
for read in (lambda: f.get_tensor(name), lambda: np.array(f.tensor_bytes(name))):
    try:
        after = read()
    except quantlens.TruncatedFileError as e:
        assert mmap, "read mode must answer from memory"
        assert e.path == path and name in str(e), e
        print("refused:", e)
    else:
        assert not mmap, "a mapped read past the new end must be refused"
        if after.dtype == before.dtype:
            assert after.tobytes() == before.tobytes()
print("done")
"""


def small_files(tmp: Path) -> list[tuple[Path, str]]:
    import io

    import numpy as np
    import torch
    from gguf_builders import write_small_model
    from safetensors.numpy import save_file

    gguf = write_small_model(tmp / "m.gguf")
    st = tmp / "m.safetensors"
    save_file({"a": np.ones(4, np.float32), "w": np.arange(4096, dtype=np.float32)}, st)
    pt = tmp / "m.pt"
    buf = io.BytesIO()
    torch.save({"a": torch.ones(4), "w": torch.arange(4096, dtype=torch.float32)}, buf)
    pt.write_bytes(buf.getvalue())
    return [(gguf, "out.weight"), (st, "w"), (pt, "w")]


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "read"])
@pytest.mark.parametrize("kind", [0, 1, 2], ids=["gguf", "safetensors", "pytorch"])
def test_truncated_while_open(tmp_path: Path, kind: int, mmap: bool) -> None:
    path, name = small_files(tmp_path)[kind]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(path), name, "1" if mmap else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != -signal.SIGBUS, "SIGBUS reading a truncated file"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("done")
    assert ("refused:" in proc.stdout) == mmap


HEADER_SCENARIO = r"""
import os, sys
import quantlens

path, mmap = sys.argv[1], sys.argv[2] == "1"
f = quantlens.GGUFFile(path, mmap=mmap)
os.truncate(path, 64)  # inside the header: the metadata strings are gone
try:
    tokens = f.metadata["tokenizer.ggml.tokens"]
    assert not mmap, "mapped metadata past the new end must be refused"
    assert tokens[3] == "世界" and tokens.tolist()[:2] == ["<s>", "</s>"]
except quantlens.TruncatedFileError as e:
    assert mmap, "read mode must answer from memory"
    print("refused:", e)
print("done")
"""


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "read"])
def test_gguf_header_cut_while_open(small_model: Path, mmap: bool) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", HEADER_SCENARIO, str(small_model), "1" if mmap else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != -signal.SIGBUS, "SIGBUS reading a truncated header"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("done")
    assert ("refused:" in proc.stdout) == mmap
