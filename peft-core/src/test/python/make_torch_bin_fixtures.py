#!/usr/bin/env python3
"""Fixtures for peft4j's safe torch.save (.bin) reader (io.github.peft4j.io.TorchBinFile).

Writes, under ../resources/fixtures/torch-bin/ (or --out):

  valid/*.bin             real torch.save files: several dtypes and shapes, strided views, shared storages,
                          nn.Parameter, an nn.Linear state dict (OrderedDict + _metadata), another archive prefix
  valid/expected.json     for each file and key: dtype, shape, stride, storage offset and the flat values
  llama_lora_legacy/      HF PEFT's legacy adapter_model.bin (save_pretrained(safe_serialization=False)) of the
                          llama_lora fixture's adapter, with that fixture's adapter_config.json
  hostile/*.bin           pickles a safe reader must refuse: code-running globals via GLOBAL and STACK_GLOBAL,
                          REDUCE of non-allowed callables, INST/OBJ/NEWOBJ/EXT, nested tricks, truncated and
                          oversized data, missing or short storage records, ...

Every hostile payload that would run code creates the marker file MARKER; the script checks torch's own
weights_only loader refuses the hostile files (so the corpus is hostile by torch's standard too) and that the
marker never appears. Nothing here ever unpickles a hostile file with a full unpickler.

Run:  /work/V/bin/python make_torch_bin_fixtures.py [--out DIR]
"""
import argparse
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "resources" / "fixtures"
MARKER = "/tmp/peft4j-unpickle-pwned"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------- valid files


def dtype_name(dt):
    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL",
    }[dt]


def describe(t):
    flat = t.detach().flatten()
    if t.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    if t.dtype == torch.bool:
        flat = flat.to(torch.int64)
    return {
        "dtype": dtype_name(t.dtype),
        "shape": list(t.shape),
        "stride": list(t.stride()),
        "offset": t.storage_offset(),
        "values": flat.tolist(),
    }


def valid_cases():
    g = torch.Generator().manual_seed(1234)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    dtypes = {
        "f32": randn(2, 3),
        "f16": randn(4, dtype=torch.float16),
        "bf16": randn(3, 2, dtype=torch.bfloat16),
        "f64": torch.tensor(3.25, dtype=torch.float64),  # 0-d
        "i64": torch.tensor([-(2 ** 62), -1, 0, 2 ** 62 + 5], dtype=torch.int64),
        "i32": torch.tensor([[-(2 ** 31), 7], [2 ** 31 - 1, 0]], dtype=torch.int32),
        "i16": torch.tensor([-32768, -2, 7, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "empty": torch.zeros(0, 3),
        "four_d": randn(2, 3, 2, 2),
    }
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    other = randn(6, dtype=torch.float16)
    views = {
        "base": base,  # the storage every view below shares
        "transposed": base.t(),  # stride (1, 4)
        "column": base[:, 1],  # stride (4,), offset 1
        "block": base[1:, 2:],  # offset 6, stride (4, 1): non-contiguous
        "row": base[2],  # offset 8, contiguous
        "every_other": base.flatten()[1::2],  # stride (2,)
        "expanded": torch.arange(3, dtype=torch.int64).expand(2, 3),  # stride (0, 1)
        "shared_a": other[:4],  # two tensors sharing one fp16 storage
        "shared_b": other[2:].view(2, 2),
    }
    params = {
        "weight": torch.nn.Parameter(randn(2, 2)),
        "frozen": torch.nn.Parameter(randn(3, dtype=torch.bfloat16), requires_grad=False),
    }
    torch.manual_seed(7)
    linear = torch.nn.Linear(3, 2).state_dict()  # OrderedDict with a _metadata attribute (BUILD)
    return {"dtypes": dtypes, "views": views, "param": params, "linear": linear}


def write_valid(out):
    d = out / "valid"
    d.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, sd in valid_cases().items():
        path = d / f"{name}.bin"
        if name == "linear":
            torch.save(sd, path)  # written to a path: archive prefix is the stem, 'linear/'
        else:
            buf = io.BytesIO()
            torch.save(sd, buf)  # written to a buffer: archive prefix 'archive/'
            path.write_bytes(buf.getvalue())
        expected[path.name] = {k: describe(v) for k, v in sd.items()}
        back = torch.load(path, weights_only=True)
        assert list(back) == list(sd), name
        for k, v in sd.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v.detach()), (name, k)
            assert back[k].stride() == v.stride() and back[k].storage_offset() == v.storage_offset(), (name, k)
    prefixes = {p.name: zipfile.ZipFile(p).namelist()[0].split("/")[0] for p in sorted(d.glob("*.bin"))}
    assert prefixes["linear.bin"] == "linear" and prefixes["dtypes.bin"] == "archive", prefixes
    (d / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print("valid:", ", ".join(f"{k} ({(d / k).stat().st_size} B)" for k in prefixes))


def write_legacy_adapter(out):
    """HF PEFT's own legacy writer: save_pretrained(safe_serialization=False) -> adapter_model.bin."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    src = FIXTURES / "hf-peft" / "llama_lora"
    base = AutoModelForCausalLM.from_pretrained(src / "base", torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, src / "adapter")
    tmp = out / "_tmp_legacy"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=False)
    dest = out / "llama_lora_legacy"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "adapter_model.bin", dest / "adapter_model.bin")
    shutil.copy(src / "adapter" / "adapter_config.json", dest / "adapter_config.json")
    shutil.rmtree(tmp)
    assert not (dest / "adapter_model.safetensors").exists()
    ours = torch.load(dest / "adapter_model.bin", weights_only=True)
    ref = load_file(src / "adapter" / "adapter_model.safetensors")
    assert sorted(ours) == sorted(ref), (sorted(ours), sorted(ref))
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    print(f"legacy adapter: {len(ours)} tensors, {(dest / 'adapter_model.bin').stat().st_size} B, equal to "
          "the safetensors adapter")


# ---------------------------------------------------------------- hostile files


class System:
    """Pickles as GLOBAL 'posix system' + REDUCE: os.system('touch MARKER') when unpickled."""

    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


class Eval:
    def __reduce__(self):
        return eval, (f"__import__('os').system('touch {MARKER}')",)


class Popen:
    def __reduce__(self):
        return subprocess.Popen, (["touch", MARKER],)


def u(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def integer(n):
    return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n)


def tup(items):
    return b"(" + b"".join(items) + b"t"


PROTO = b"\x80\x02"
STOP = b"."
HOOKS = glob("collections", "OrderedDict") + b")R"  # OrderedDict()


def persid(storage=None, key="0", numel=6):
    storage = storage if storage is not None else glob("torch", "FloatStorage")
    return tup([u("storage"), storage, u(key), u("cpu"), integer(numel)]) + b"Q"


def tensor(pid=None, offset=0, size=(2, 3), stride=(3, 1), hooks=HOOKS):
    pid = pid if pid is not None else persid()
    args = tup([pid, integer(offset), tup([integer(s) for s in size]), tup([integer(s) for s in stride]),
                b"\x89", hooks])
    return glob("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict(*items):
    """{key: value, ...} from (key, pickled value) pairs."""
    return PROTO + b"}(" + b"".join(u(k) + v for k, v in items) + b"u" + STOP


F32_RECORD = struct.pack("<6f", 1, 2, 3, 4, 5, 6)


def zipped(path, pickle_bytes, records=None, prefix="archive", byteorder=b"little", extra=()):
    """A zip laid out as torch.save lays it out, with any data.pkl and records."""
    records = {"0": F32_RECORD} if records is None else records
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        def put(name, data):
            z.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data)

        put(f"{prefix}/data.pkl", pickle_bytes)
        put(f"{prefix}/byteorder", byteorder)
        for key, data in records.items():
            put(f"{prefix}/data/{key}", data)
        put(f"{prefix}/version", b"3\n")
        for name, data in extra:
            put(name, data)


def torch_saved(path, obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    path.write_bytes(buf.getvalue())


def write_hostile(out):
    d = out / "hostile"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    ok = torch.ones(2, 3)
    # name -> (writer, whether torch's weights_only loader must refuse it too)
    cases = {}

    def case(name, torch_refuses=True):
        def register(fn):
            cases[name] = (fn, torch_refuses)
            return fn
        return register

    # -- globals that would run code, in real torch.save files (the payload follows a good tensor)
    case("posix_system.bin")(lambda p: torch_saved(p, {"w": ok, "evil": System()}))
    case("builtins_eval.bin")(lambda p: torch_saved(p, {"w": ok, "evil": Eval()}, pickle_protocol=3))
    case("builtin_eval_protocol2.bin")(lambda p: torch_saved(p, {"w": ok, "evil": Eval()}))  # '__builtin__ eval'
    # protocol 3: protocol 2 would write subprocess.Popen as 'commands Popen' (Python 2 names)
    case("subprocess_popen.bin")(lambda p: torch_saved(p, {"w": ok, "evil": Popen()}, pickle_protocol=3))
    case("commands_popen.bin")(lambda p: torch_saved(p, {"w": ok, "evil": Popen()}))
    case("stack_global_posix_system.bin")(lambda p: torch_saved(p, {"w": ok, "evil": System()}, pickle_protocol=4))
    case("nested_deep_posix_system.bin")(lambda p: torch_saved(p, {"w": ok, "meta": [({"a": [System()]},)]}))
    case("os_system_global.bin")(lambda p: zipped(p, PROTO + glob("os", "system") + tup([u(f"touch {MARKER}")])
                                                  + b"R" + STOP))
    case("builtins_exec_stack_global.bin")(lambda p: zipped(
        p, b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04exec\x93" + tup([u(f"import os; os.system('touch {MARKER}')")])
        + b"R" + STOP))
    # -- a code-running global hidden inside a persistent id, inside the hooks, as the storage type
    case("global_in_persistent_id.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor(pid=tup([u("storage"), tup([glob("posix", "system")]), u("0"), u("cpu"), integer(6)]) + b"Q")))))
    case("global_as_storage_type.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor(pid=persid(storage=glob("posix", "system")))))))
    case("global_in_hooks.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor(hooks=glob("builtins", "getattr") + tup([u("os"), u("system")]) + b"R")))))
    # -- allowed globals used where torch never uses them
    case("ordered_dict_as_storage_type.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor(pid=persid(storage=glob("collections", "OrderedDict")))))))
    case("reduce_storage_type.bin")(lambda p: zipped(p, state_dict(
        ("w", glob("torch", "FloatStorage") + tup([integer(6)]) + b"R"))))
    case("reduce_string.bin")(lambda p: zipped(p, state_dict(("w", u("posix.system") + tup([u("x")]) + b"R"))))
    case("ordered_dict_with_args.bin", torch_refuses=False)(lambda p: zipped(p, state_dict(
        ("w", glob("collections", "OrderedDict") + tup([tup([tup([u("a"), integer(1)])])]) + b"R"))))
    case("build_on_tensor.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor() + b"}" + u("__class__") + u("x") + b"sb"))))
    case("hooks_not_empty.bin", torch_refuses=False)(lambda p: zipped(p, state_dict(
        ("w", tensor(hooks=HOOKS + u("h") + integer(1) + b"s")))))
    # -- opcodes that create arbitrary objects
    case("inst_opcode.bin")(lambda p: zipped(p, PROTO + b"(" + u(f"touch {MARKER}") + b"ios\nsystem\n" + STOP))
    case("obj_opcode.bin")(lambda p: zipped(p, PROTO + b"(" + glob("collections", "OrderedDict") + b"o" + STOP))
    case("newobj_opcode.bin", torch_refuses=False)(lambda p: zipped(p, PROTO + glob("collections", "OrderedDict") + b")\x81" + STOP))
    case("ext1_opcode.bin")(lambda p: zipped(p, PROTO + b"\x82\x01" + b")R" + STOP))
    # -- malformed data
    case("truncated_pickle.bin")(lambda p: zipped(p, state_dict(("w", tensor()))[:40]))
    case("oversized_binunicode.bin")(lambda p: zipped(p, PROTO + b"}(X" + struct.pack("<I", 0xFFFFFF00) + b"abc"))
    case("memo_get_missing.bin")(lambda p: zipped(p, PROTO + b"h\x09" + STOP))
    case("long1_too_wide.bin", torch_refuses=False)(lambda p: zipped(p, PROTO + b"\x8a\x09" + bytes(9) + STOP))
    case("many_marks.bin", torch_refuses=False)(lambda p: zipped(p, PROTO + b"(" * 3000 + b"}" + STOP))
    case("many_memo.bin", torch_refuses=False)(lambda p: zipped(p, b"\x80\x04}" + b"\x94" * 3000 + STOP, records={}))
    # -- a sound pickle whose records do not back it
    case("missing_storage_record.bin")(lambda p: zipped(p, state_dict(("w", tensor(pid=persid(key="7"))))))
    case("numel_exceeds_record.bin")(lambda p: zipped(p, state_dict(
        ("w", tensor(pid=persid(numel=1000), size=(10, 100), stride=(100, 1))))))
    case("view_outside_storage.bin")(lambda p: zipped(p, state_dict(("w", tensor(size=(4, 4), stride=(4, 1))))))
    case("storage_key_path.bin")(lambda p: zipped(p, state_dict(("w", tensor(pid=persid(key="../data.pkl"))))))
    # -- containers and formats the reader does not take
    case("truncated_zip.bin")(lambda p: p.write_bytes(_saved_bytes({"w": ok})[:300]))
    case("legacy_format.bin", torch_refuses=False)(
        lambda p: torch_saved(p, {"w": ok}, _use_new_zipfile_serialization=False))
    case("no_data_pkl.bin")(lambda p: _zip_without_pickle(p))
    case("big_endian.bin", torch_refuses=False)(lambda p: zipped(p, state_dict(("w", tensor())), byteorder=b"big"))
    case("not_a_dict.bin", torch_refuses=False)(lambda p: torch_saved(p, [ok]))
    case("non_tensor_value.bin", torch_refuses=False)(lambda p: torch_saved(p, {"w": ok, "epoch": 3}))
    case("complex_tensor.bin", torch_refuses=False)(lambda p: torch_saved(p, {"c": torch.zeros(2, dtype=torch.complex64)}))
    case("uint16_tensor.bin", torch_refuses=False)(lambda p: torch_saved(p, {"u": torch.zeros(2, dtype=torch.uint16)}))

    if os.path.exists(MARKER):
        os.remove(MARKER)
    accepted = []
    for name, (write, torch_refuses) in cases.items():
        write(d / name)
        size = (d / name).stat().st_size
        assert size < 8192, (name, size)
        if torch_refuses:
            try:
                torch.load(d / name, weights_only=True)
            except Exception as e:  # noqa: BLE001 - any refusal will do
                lines = [x.strip() for x in str(e).splitlines() if x.strip()]
                why = next((x for x in lines if "Unsupported" in x or "GLOBAL" in x), lines[0] if lines else "")[:90]
            else:
                accepted.append(name)
                why = "ACCEPTED by torch.load(weights_only=True)"
        else:
            why = "(torch's weights_only loader takes it or was not asked)"
        print(f"hostile {name:36s} {size:5d} B  torch: {why}")
    assert not os.path.exists(MARKER), "a payload ran"
    assert not accepted, f"torch's weights_only loader accepted {accepted}: mark them torch_refuses=False"


def _saved_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zip_without_pickle(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("archive/data/0", date_time=ZIP_TIME), F32_RECORD)
        z.writestr(zipfile.ZipInfo("archive/version", date_time=ZIP_TIME), b"3\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURES / "torch-bin")
    args = ap.parse_args()
    torch.set_num_threads(1)
    write_valid(args.out)
    write_legacy_adapter(args.out)
    write_hostile(args.out)


if __name__ == "__main__":
    sys.exit(main())
