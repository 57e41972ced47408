"""Raw pickle and checkpoint builders for the PyTorch tests, including hostile pickles.

Hostile payloads are written opcode by opcode as bytes: building them never runs them.
"Live" payloads really would run code under ``pickle.load`` — each creates the file
:data:`CANARY` in the current directory — which the Python tests prove in a subprocess,
then show that quantlens refuses them and the canary never appears.

Used by ``scripts/make_pytorch_fixtures.py`` (fixtures for the Rust tests) and
``tests/test_pytorch_files.py``.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

CANARY = "quantlens-canary"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# -- opcodes ------------------------------------------------------------------------------


def proto(n: int = 2) -> bytes:
    return b"\x80" + bytes([n])


def text(s: str) -> bytes:
    """BINUNICODE."""
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_text(s: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def glob(module: str, name: str) -> bytes:
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def integer(n: int) -> bytes:
    """BININT1/BININT/LONG1, whichever fits."""
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def tuple_of(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) with REDUCE."""
    return func + tuple_of(*args) + b"R"


STOP = b"."
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
NONE = b"N"
FALSE = b"\x89"


def pickle_of(body: bytes, protocol: int = 2) -> bytes:
    return proto(protocol) + body + STOP


# -- torch-shaped pieces ------------------------------------------------------------------


def storage_pid(key: str, numel: int, cls: str = "FloatStorage", legacy: bool = False) -> bytes:
    items = [text("storage"), glob("torch", cls), text(key), text("cpu"), integer(numel)]
    if legacy:
        items.append(NONE)
    return tuple_of(*items) + b"Q"


def rebuild_v2(pid: bytes, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    return call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        pid,
        integer(offset),
        tuple_of(*map(integer, size)),
        tuple_of(*map(integer, stride)),
        FALSE,
        call(glob("collections", "OrderedDict")),
    )


def state_dict(*items: tuple[str, bytes]) -> bytes:
    """An OrderedDict of name → value pickles."""
    return (
        call(glob("collections", "OrderedDict"))
        + b"("
        + b"".join(text(k) + v for k, v in items)
        + b"u"
    )


def torch_zip(
    data_pkl: bytes,
    records: dict[str, bytes] | None = None,
    prefix: str = "archive",
    byteorder: bytes | None = b"little",
    compress_storages: bool = False,
) -> bytes:
    """A zip laid out as torch.save lays it out (data.pkl first, storages under data/)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in (records or {}).items():
            method = zipfile.ZIP_DEFLATED if compress_storages else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(f"{prefix}/data/{key}"), raw, compress_type=method)
        z.writestr(f"{prefix}/version", b"3\n")
    return out.getvalue()


def legacy_stream(main: bytes, keys: list[str] | None = None, little_endian: bool = True) -> bytes:
    """The pre-1.6 layout: magic, version, sys info, `main`, the key list (no storage data)."""
    sys_info = (
        EMPTY_DICT
        + b"("
        + text("protocol_version")
        + integer(1001)
        + text("little_endian")
        + (b"\x88" if little_endian else FALSE)
        + b"u"
    )
    key_list = EMPTY_LIST + b"(" + b"".join(text(k) for k in keys or []) + b"e"
    return (
        b"".join(pickle_of(x) for x in (integer(LEGACY_MAGIC), integer(1001), sys_info))
        + main
        + pickle_of(key_list)
    )


# -- what quantlens makes of a loaded checkpoint ------------------------------------------


def meta_repr(value: object) -> str:
    """The text quantlens gives a non-tensor leaf (strings as they are, else ``repr``)."""
    if isinstance(value, str):
        return value
    if type(value).__module__ == "torch":  # dtypes and devices: torch.float16, cpu
        return str(value)
    return repr(value)


def flatten(obj: object) -> tuple[list[tuple[str, Any]], list[list[str]]]:
    """Tensors and metadata of a ``torch.load`` result, named as quantlens names them:
    dotted dict keys and list/tuple indices (``state_dict.layers.0.weight``)."""
    import torch

    tensors: list[tuple[str, Any]] = []
    metadata: list[list[str]] = []

    def walk(value: object, name: str) -> None:
        def join(key: object) -> str:
            key = key if isinstance(key, str) else meta_repr(key)
            return f"{name}.{key}" if name else key

        if isinstance(value, torch.Tensor):
            tensors.append((name, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, join(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, join(i))
        else:
            metadata.append([name, meta_repr(value)])

    walk(obj, "")
    return tensors, metadata


# -- hostile cases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A checkpoint that must be refused; ``error`` is the Rust `Error` variant name."""

    name: str
    data: bytes
    error: str
    global_name: str | None = None
    live: bool = False
    """Whether ``pickle.load`` of ``payload`` really creates the canary."""
    payload: bytes | None = None
    """The raw pickle the checkpoint carries (for the live check)."""


def _touch() -> bytes:
    return text(f"touch {CANARY}")


def _py_create() -> bytes:
    return text(f"open({CANARY!r}, 'w').close()")


def _payloads() -> list[tuple[str, bytes, str, str | None, bool]]:
    """(name, pickle, error, global, live) for pickles wrapped as checkpoints below."""
    eval_call = call(glob("builtins", "eval"), _py_create())
    return [
        (
            "os_system",
            pickle_of(call(glob("os", "system"), _touch())),
            "UnsafePickle",
            "os.system",
            True,
        ),
        (
            "posix_system",
            pickle_of(call(glob("posix", "system"), _touch())),
            "UnsafePickle",
            "posix.system",
            True,
        ),
        ("builtins_eval", pickle_of(eval_call), "UnsafePickle", "builtins.eval", True),
        (
            "builtins_exec",
            pickle_of(call(glob("builtins", "exec"), _py_create())),
            "UnsafePickle",
            "builtins.exec",
            True,
        ),
        (
            "py2_builtin_eval",
            pickle_of(call(glob("__builtin__", "eval"), _py_create())),
            "UnsafePickle",
            "__builtin__.eval",
            True,
        ),
        (
            "subprocess_popen",
            pickle_of(call(glob("subprocess", "Popen"), tuple_of(text("touch"), text(CANARY)))),
            "UnsafePickle",
            "subprocess.Popen",
            True,
        ),
        (
            "stack_global_eval",
            pickle_of(
                short_text("builtins")
                + short_text("eval")
                + b"\x93"
                + b"\x94"
                + _py_create()
                + b"\x85R",
                protocol=4,
            ),
            "UnsafePickle",
            "builtins.eval",
            True,
        ),
        (
            "getattr_import",
            pickle_of(
                call(
                    call(
                        glob("builtins", "getattr"),
                        call(glob("builtins", "__import__"), text("os")),
                        text("system"),
                    ),
                    _touch(),
                )
            ),
            "UnsafePickle",
            "builtins.getattr",
            True,
        ),
        (
            "inst_opcode",
            pickle_of(b"(" + _touch() + b"ios\nsystem\n"),
            "UnsafePickle",
            "os.system",
            True,
        ),
        (
            "obj_opcode",
            pickle_of(b"(" + glob("os", "system") + _touch() + b"o"),
            "UnsafePickle",
            "os.system",
            True,
        ),
        (
            "nested_reduce",
            pickle_of(call(glob("collections", "OrderedDict"), eval_call)),
            "UnsafePickle",
            "builtins.eval",
            True,
        ),
        (
            "payload_in_hooks",
            pickle_of(
                state_dict(
                    (
                        "w",
                        call(
                            glob("torch._utils", "_rebuild_tensor_v2"),
                            storage_pid("0", 1),
                            integer(0),
                            tuple_of(integer(1)),
                            tuple_of(integer(1)),
                            FALSE,
                            eval_call,
                        ),
                    )
                )
            ),
            "UnsafePickle",
            "builtins.eval",
            True,
        ),
        (
            "build_setstate_payload",
            pickle_of(
                call(glob("collections", "OrderedDict"))
                + EMPTY_DICT
                + text("x")
                + eval_call
                + b"sb"
            ),
            "UnsafePickle",
            "builtins.eval",
            True,
        ),
        (
            "torch_load",
            pickle_of(call(glob("torch", "load"), text("x.pt"))),
            "UnsafePickle",
            "torch.load",
            False,
        ),
        (
            "main_class",
            pickle_of(glob("__main__", "Net") + EMPTY_TUPLE + b"\x81" + EMPTY_DICT + b"b"),
            "UnsafePickle",
            "__main__.Net",
            False,
        ),
        (
            "rebuild_qtensor",
            pickle_of(call(glob("torch._utils", "_rebuild_qtensor"))),
            "UnsafePickle",
            "torch._utils._rebuild_qtensor",
            False,
        ),
        ("build_on_list", pickle_of(EMPTY_LIST + EMPTY_DICT + b"b"), "Malformed", None, False),
        ("build_on_dict", pickle_of(EMPTY_DICT + EMPTY_DICT + b"b"), "Malformed", None, False),
        (
            "reduce_on_storage_class",
            pickle_of(call(glob("torch", "FloatStorage"))),
            "Malformed",
            None,
            False,
        ),
        (
            "reduce_on_string",
            pickle_of(text("os.system") + EMPTY_TUPLE + b"R"),
            "Malformed",
            None,
            False,
        ),
        ("memo_undefined", pickle_of(b"h\x05"), "Malformed", None, False),
        ("memo_long_undefined", pickle_of(b"j\xff\xff\xff\xff"), "Malformed", None, False),
        ("memo_put_empty", pickle_of(b"q\x00" + NONE), "Malformed", None, False),
        ("memo_cycle", pickle_of(EMPTY_LIST + b"q\x00h\x00a"), "LimitExceeded", None, False),
        ("dag_bomb", pickle_of(EMPTY_LIST + b"q\x00h\x00\x86" * 64), "LimitExceeded", None, False),
        (
            "huge_binunicode8",
            pickle_of(b"\x8d" + struct.pack("<Q", 1 << 62) + b"abc"),
            "Truncated",
            None,
            False,
        ),
        (
            "huge_binbytes8",
            pickle_of(b"\x8e" + struct.pack("<Q", (1 << 64) - 1)),
            "Truncated",
            None,
            False,
        ),
        (
            "huge_frame",
            pickle_of(b"\x95" + struct.pack("<Q", 1 << 60) + NONE, protocol=4),
            "Truncated",
            None,
            False,
        ),
        ("huge_long4", pickle_of(b"\x8b" + struct.pack("<i", 2**31 - 1)), "Truncated", None, False),
        ("negative_long4", pickle_of(b"\x8b" + struct.pack("<i", -5)), "Malformed", None, False),
        (
            "huge_global_line",
            pickle_of(b"c" + b"o" * 5000 + b"\nsystem\n"),
            "Malformed",
            None,
            False,
        ),
        ("deep_marks", pickle_of(b"(" * 5000), "LimitExceeded", None, False),
        ("deep_lists", pickle_of(EMPTY_LIST * 300 + b"a" * 299), "LimitExceeded", None, False),
        ("no_stop", proto(2) + EMPTY_DICT, "Truncated", None, False),
        ("unknown_opcode", pickle_of(b"\xff"), "Malformed", None, False),
        ("protocol_0_opcode", pickle_of(b"I1\n"), "Malformed", None, False),
        (
            "tensor_out_of_bounds",
            pickle_of(state_dict(("w", rebuild_v2(storage_pid("0", 4), 0, (1000,), (1,))))),
            "Malformed",
            None,
            False,
        ),
        (
            "tensor_size_overflow",
            pickle_of(
                state_dict(("w", rebuild_v2(storage_pid("0", 4), 0, (1 << 62, 1 << 62), (1, 1))))
            ),
            "Malformed",
            None,
            False,
        ),
        (
            "storage_numel_huge",
            pickle_of(state_dict(("w", rebuild_v2(storage_pid("0", 1 << 60), 0, (2,), (1,))))),
            "Truncated",
            None,
            False,
        ),
        (
            "missing_record",
            pickle_of(state_dict(("w", rebuild_v2(storage_pid("7", 4), 0, (4,), (1,))))),
            "Malformed",
            None,
            False,
        ),
        (
            "negative_storage_offset",
            pickle_of(state_dict(("w", rebuild_v2(storage_pid("0", 4), -1, (1,), (1,))))),
            "Malformed",
            None,
            False,
        ),
    ]


def hostile_cases() -> list[Hostile]:
    """Every hostile checkpoint: zips carrying each payload, plus legacy-format ones."""
    storage0 = {"0": struct.pack("<4f", 1, 2, 3, 4)}
    cases = [
        Hostile(f"zip_{name}", torch_zip(pkl, storage0), error, global_name, live, pkl)
        for name, pkl, error, global_name, live in _payloads()
    ]
    system = pickle_of(call(glob("posix", "system"), _touch()))
    evil_main = pickle_of(call(glob("builtins", "eval"), _py_create()))
    cases += [
        Hostile("legacy_first_pickle", system, "UnsafePickle", "posix.system", True, system),
        Hostile(
            "legacy_main_pickle",
            legacy_stream(evil_main),
            "UnsafePickle",
            "builtins.eval",
            True,
            evil_main,
        ),
        Hostile(
            "legacy_storage_view",
            legacy_stream(
                pickle_of(
                    tuple_of(
                        text("storage"),
                        glob("torch", "FloatStorage"),
                        text("0"),
                        text("cpu"),
                        integer(4),
                        tuple_of(text("1"), integer(0), integer(2)),
                    )
                    + b"Q"
                ),
                ["0"],
            ),
            "UnsupportedVersion",
        ),
        Hostile(
            "legacy_big_endian",
            legacy_stream(pickle_of(EMPTY_DICT), little_endian=False),
            "UnsupportedVersion",
        ),
        Hostile("legacy_bad_magic", pickle_of(integer(12345)), "Malformed"),
        Hostile(
            "zip_big_endian",
            torch_zip(
                pickle_of(state_dict(("w", rebuild_v2(storage_pid("0", 4), 0, (4,), (1,))))),
                storage0,
                byteorder=b"big",
            ),
            "UnsupportedVersion",
        ),
        Hostile(
            "zip_compressed_storage",
            torch_zip(
                pickle_of(state_dict(("w", rebuild_v2(storage_pid("0", 4), 0, (4,), (1,))))),
                storage0,
                compress_storages=True,
            ),
            "UnsupportedVersion",
        ),
        Hostile("zip_without_data_pkl", _zip_without_pickle(), "Malformed"),
        Hostile("zip_truncated", torch_zip(pickle_of(EMPTY_DICT))[:-30], "Malformed"),
    ]
    return cases


def _zip_without_pickle() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/version", b"3\n")
    return out.getvalue()
