"""Crafted and mutated weight files never hurt the process that opens them.

Real files (the shared corpus, files written by gguf-py, safetensors and torch.save, and
the hostile pickles of ``pytorch_builders``) are truncated, spliced, bit-flipped and
overwritten with absurd counts and offsets; GGUF and safetensors headers are also built
from scratch with duplicate names, overlapping extents and offsets past the end. Every
case is opened, every tensor read and decoded, in a child process under a 2 GiB address
space cap and a time bound: each must end in success or a typed error
(:class:`~quantlens.QuantlensError` or :class:`OSError`), never a signal, a hang, another
exception, or code from the file running.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf_builders import KV, Tensor, build_gguf, write_small_model, write_split_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytorch_builders import CANARY, hostile_cases

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
CHILD = Path(__file__).with_name("fuzz_child.py")
MEMORY_CAP = 2 << 30
CASE_SECONDS = 10.0
BATCH_SECONDS = 240
#: Largest real file mutated (bigger ones make a slow suite, not a stronger one).
BASE_CAP = 2 << 20

ABSURD = [0, 1, 2**31, 2**32 - 1, 2**40, 2**62, 2**63, 2**64 - 1]


@dataclass
class Case:
    """Files to write into a folder of their own, and which one to open."""

    label: str
    files: dict[str, bytes]
    open_name: str
    notes: list[str] = field(default_factory=list)


# -- bases --------------------------------------------------------------------------------


def corpus_bases() -> list[Case]:
    if not (CORPUS / "MANIFEST.json").is_file():
        print(f"no corpus at {CORPUS}: mutating generated files only")
        return []
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    bases = []
    for entry in manifest["files"]:
        path = CORPUS / entry["path"]
        if entry["format"] == "safetensors-index-json" or not path.is_file():
            continue
        if path.stat().st_size <= BASE_CAP:
            bases.append(Case(f"corpus:{entry['path']}", {path.name: path.read_bytes()}, path.name))
    split = sorted(CORPUS.glob("gguf/generated/*-0000?-of-00002.gguf"))
    if len(split) == 2:
        files = {p.name: p.read_bytes() for p in split}
        bases.append(Case("corpus:split", files, split[0].name))
    return bases


def generated_bases(tmp: Path) -> list[Case]:
    import io

    import torch
    from gguf import GGUFEndian
    from safetensors.numpy import save

    tmp.mkdir(parents=True, exist_ok=True)
    bases = []
    for endian in (GGUFEndian.LITTLE, GGUFEndian.BIG):
        path = write_small_model(tmp / f"small-{endian.name}.gguf", endian=endian)
        bases.append(Case(f"gguf-py:{endian.name}", {"m.gguf": path.read_bytes()}, "m.gguf"))
    shards = write_split_model(tmp, "split", ["a", "b", "c", "d"], 2)
    bases.append(Case("gguf-py:split", {p.name: p.read_bytes() for p in shards}, shards[0].name))
    rng = np.random.default_rng(5)
    tensors = {"w": rng.standard_normal((4, 8)).astype(np.float32), "b": np.arange(3)}
    bases.append(Case("safetensors", {"m.safetensors": save(tensors)}, "m.safetensors"))
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "n": torch.ones(2)}
    for zipped in (True, False):
        buf = io.BytesIO()
        torch.save(state, buf, _use_new_zipfile_serialization=zipped)
        bases.append(Case(f"torch.save:zip={zipped}", {"m.pt": buf.getvalue()}, "m.pt"))
    return bases


def hostile_bases() -> list[Case]:
    return [Case(f"hostile:{c.name}", {"m.pt": c.data}, "m.pt") for c in hostile_cases()]


# -- mutations ----------------------------------------------------------------------------

Op = tuple[Any, ...]

positions = st.one_of(st.integers(0, 4095), st.integers(0, 2**31))
ops = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("splice"), positions, st.binary(max_size=16)),
    st.tuples(st.just("absurd"), positions, st.sampled_from(ABSURD), st.sampled_from([4, 8])),
    st.tuples(st.just("copy"), positions, positions, st.integers(1, 64)),
    st.tuples(st.just("delete"), positions, st.integers(1, 64)),
)


def mutate(data: bytes, op: Op) -> bytes:
    """Apply one mutation; positions wrap around the data's length."""
    if not data:
        return data
    out = bytearray(data)
    kind, *args = op
    if kind == "truncate":
        return bytes(out[: int(len(out) * args[0])])
    at = args[0] % len(out)
    if kind == "flip":
        out[at] ^= 1 << args[1]
    elif kind == "splice":
        out[at:at] = args[1]
    elif kind == "absurd":
        value, width = args[1], args[2]
        out[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    elif kind == "copy":
        src, n = args[1] % len(out), args[2]
        out[at : at + n] = out[src : src + n]
    elif kind == "delete":
        del out[at : at + args[1]]
    return bytes(out)


# -- headers built from scratch -----------------------------------------------------------

NAMES = ["a", "b", "a.weight", "b"]  # "b" twice: duplicate names are common


@st.composite
def crafted_gguf(draw: st.DrawFn) -> bytes:
    """A GGUF file whose tensor infos and counts are drawn, not derived."""
    n = draw(st.integers(0, 4))
    tensors = []
    for _ in range(n):
        dims = draw(st.lists(st.sampled_from([1, 2, 32, 32, 256, 2**62]), min_size=1, max_size=4))
        ty = draw(st.sampled_from([0, 0, 1, 1, 2, 8, 12, 14, 16, 23, 30, 39, 40, 41, 4, 2**31]))
        offset = draw(st.sampled_from([0, 0, 32, 64, 96, 4096, 2**64 - 32, 7]))
        tensors.append(Tensor(draw(st.sampled_from(NAMES)), dims, ty, offset))
    kvs = []
    if draw(st.booleans()):
        kvs.append(
            KV(
                "general.alignment",
                4,
                struct.pack("<I", draw(st.sampled_from([8, 32, 32, 64, 7, 0]))),
            )
        )
    if draw(st.booleans()):
        elem, count = draw(st.sampled_from([(8, 2**40), (9, 2**62), (4, 3), (8, 1), (5, 2)]))
        kvs.append(KV("arr", 9, struct.pack("<IQ", elem, count) + b"\x00" * 16))
    data = b"\x00" * draw(st.sampled_from([0, 32, 64, 128, 1024]))
    layout = build_gguf(
        kvs,
        tensors,
        data,
        tensor_count=draw(st.sampled_from([None] * 6 + [n + 1, 2**40, 2**63])),
        kv_count=draw(st.sampled_from([None] * 6 + [len(kvs) + 1, 2**64 - 1])),
    )
    return layout.data


@st.composite
def crafted_safetensors(draw: st.DrawFn) -> bytes:
    """A safetensors file whose JSON header is written by hand: duplicate keys, offsets
    past the end, overlapping extents and absurd shapes all occur."""
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(NAMES))
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "F4", "XX"]))
        shape = draw(st.lists(st.sampled_from([0, 1, 3, 4, 2**31, 2**63]), max_size=4))
        start = draw(st.sampled_from([0, 4, 8, 16, 2**40]))
        end = draw(st.sampled_from([0, 8, 16, 32, 2**40, 2**64 - 1]))
        entries.append(
            f'"{name}": {{"dtype": "{dtype}", "shape": {shape}, "data_offsets": [{start}, {end}]}}'
        )
    if draw(st.booleans()):
        entries.append('"__metadata__": {"format": "pt"}')
    header = ("{" + ", ".join(entries) + "}").encode()
    header += b" " * (-len(header) % 8)
    data = b"\x01" * draw(st.sampled_from([0, 8, 16, 32]))
    length = draw(st.sampled_from([len(header), len(header), len(header) + 8, 2**63]))
    return struct.pack("<Q", length) + header + data


# -- running ------------------------------------------------------------------------------


def run_batch(cases: list[Case], folder: Path) -> None:
    """Write every case, open them all in one child, and fail on anything but success
    or a typed error."""
    paths = []
    for i, case in enumerate(cases):
        where = folder / f"case{i:04d}"
        where.mkdir(parents=True)
        for name, data in case.files.items():
            (where / name).write_bytes(data)
        paths.append(str(where / case.open_name))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(MEMORY_CAP)],
        input="\n".join(paths) + "\n",
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=BATCH_SECONDS,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ended = {e["case"]: e for e in events if e["event"] == "end"}
    started = [e["case"] for e in events if e["event"] == "start"]

    def describe(i: int) -> str:
        return f"case {i} {cases[i].label} {cases[i].notes} at {paths[i]}"

    if proc.returncode != 0:
        running = started[-1] if started else None
        who = describe(running) if running is not None else "before the first case"
        pytest.fail(f"child exited with {proc.returncode} during {who}\n{proc.stderr[-3000:]}")
    assert len(ended) == len(cases), proc.stderr[-3000:]
    for i, event in ended.items():
        outcome = event["outcome"]
        assert outcome == "ok" or outcome.startswith("typed:"), f"{describe(i)}: {outcome}"
        assert event["seconds"] < CASE_SECONDS, f"{describe(i)} took {event['seconds']:.1f} s"
    assert not list(folder.rglob(f"*{CANARY}*")), "a pickle ran code"
    outcomes = Counter(e["outcome"] for e in ended.values())
    print(f"{len(cases)} cases: {dict(outcomes.most_common())}")


def collect(strategy: st.SearchStrategy[Case], examples: int) -> list[Case]:
    """Draw `examples` cases from `strategy` with hypothesis."""
    drawn: list[Case] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(case: Case) -> None:
        drawn.append(case)

    draw()
    return drawn


def mutated(bases: list[Case]) -> st.SearchStrategy[Case]:
    @st.composite
    def build(draw: st.DrawFn) -> Case:
        base = draw(st.sampled_from(bases))
        target = draw(st.sampled_from(sorted(base.files)))
        changes = draw(st.lists(ops, min_size=1, max_size=4))
        data = base.files[target]
        for op in changes:
            data = mutate(data, op)
        files = dict(base.files, **{target: data})
        return Case(base.label, files, base.open_name, [target, *map(repr, changes)])

    return build()


def whole(make: Callable[[], st.SearchStrategy[bytes]], name: str) -> st.SearchStrategy[Case]:
    return make().map(lambda data: Case(f"crafted:{name}", {name: data}, name))


def test_mutated_real_files_fail_cleanly(tmp_path: Path) -> None:
    bases = corpus_bases() + generated_bases(tmp_path / "bases")
    cases = bases + collect(mutated(bases), 300)
    run_batch(cases, tmp_path / "cases")


#: Inputs that once failed, replayed every run (the Rust fuzz targets replay theirs in
#: rust/quantlens-core/tests/fuzz_regressions.rs).
REGRESSIONS = ROOT / "rust/quantlens-core/tests/data/fuzz-regressions"


def regression_cases() -> list[Case]:
    return [
        Case(f"regression:{p.parent.name}/{p.name}", {p.name: p.read_bytes()}, p.name)
        for p in sorted(REGRESSIONS.glob("*/*"))
        if p.is_file() and not p.name.startswith(".") and p.parent.name != "dequant"
    ]


def test_crafted_headers_fail_cleanly(tmp_path: Path) -> None:
    cases = regression_cases()
    cases += collect(whole(crafted_gguf, "m.gguf"), 150)
    cases += collect(whole(crafted_safetensors, "m.safetensors"), 150)
    run_batch(cases, tmp_path / "cases")


def test_mutated_hostile_pickles_run_nothing(tmp_path: Path) -> None:
    """The hostile checkpoints of the PyTorch suite, as they are and mutated: refused or
    read as data, and the canary their payloads would create never appears."""
    bases = hostile_bases()
    cases = bases + collect(mutated(bases), 200)
    run_batch(cases, tmp_path / "cases")
