#!/usr/bin/env python3
"""Regenerates the Flax checkpoint fixtures of test/tools/mixer-run-import-flax.test.

    python3 test/tools/Inputs/make_flax_checkpoint.py

writes test/tools/Inputs/flax/ (committed; the test does not run this script):

- sm_tiny/: models/tiny/sparse_mixer_tiny.json as the original Sparse Mixer
  code saves it: replicated_checkpoint_1000 with the expert parameters left
  empty, and shard-0000p-of-00002_checkpoint_1000 holding host p's experts as
  [local devices 1, ..., experts per device 2, ...]; the word embedding and
  the expert kernels stored as bfloat16. sm_tiny.config.json holds the
  original configuration values the weights do not show.
- fsm_tiny.zip: models/tiny/fast_sparse_mixer_tiny.json as a whole training
  state (step, params, AdamW opt_state) in a deflated zip: one host with two
  local devices of two experts each; fsm_tiny.config.json.
- <model>.ids.npz: a batch of token ids; <model>.expect.npz: the outputs of
  test/reference/mixer_ref.py for the weights the checkpoint holds (mixer's
  names and layouts, mapped here independently of the C++ importer);
  sm_tiny.weights.npz: those weights.
- sm_tiny_chunked.msgpack: the same weights as one state dict, the word
  embedding as raw 2-byte values (numpy's void16) and the arrays above 1 KiB
  split into chunks as Flax splits arrays above its chunk size.

The files are written by Flax's own serializer (flax.serialization), which
the script installs with jax (CPU) into ~/.cache/mixer-venv-flax the first
time.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
VENV = Path.home() / ".cache" / "mixer-venv-flax"


def ensure_flax():
    """Re-runs the script in a virtual environment that has flax."""
    try:
        import flax  # noqa: F401
        import optax  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(python), "-m", "pip", "install", "-q",
                               "jax[cpu]", "flax", "optax", "numpy"])
    os.execv(str(python), [str(python), __file__] + sys.argv[1:])


ensure_flax()

import flax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax.training import train_state  # noqa: E402

sys.path.insert(0, str(ROOT / "test" / "reference"))
import mixer_ref  # noqa: E402

OUT = HERE / "flax"


def model_config(path, router_dtype="bfloat16"):
    """The tiny model as the import describes it: the original's routers
    compute in bfloat16."""
    import json
    model = json.loads(Path(path).read_text())
    model["moe"]["router_dtype"] = router_dtype
    return mixer_ref.parse_config(model)


def is_expert(name):
    return "/expert_" in "/" + name


def original_tree(weights, bf16_names):
    """The original's parameter tree for mixer's weights: routers under
    DenseGeneral_0, the expert axis second."""
    tree = {}
    for name, value in weights.items():
        parts = name.split("/")
        if parts[1].startswith("router_weights_"):
            parts = parts[:2] + ["DenseGeneral_0"] + parts[2:]
        if parts[1].startswith("expert_"):
            value = np.swapaxes(value, 0, 1)
        value = np.ascontiguousarray(value)
        if name in bf16_names:
            value = jnp.asarray(value, dtype=jnp.bfloat16)
        node = tree
        for key in parts[:-1]:
            node = node.setdefault(key, {})
        node[parts[-1]] = value
    return tree


def split(tree, keep, host=None, hosts=1, local=1, path=""):
    """The state dict one file holds: leaves `keep` rejects become
    np.array([]); with `host`, expert leaves [A, E, ...] become that host's
    [local, A, E / (hosts * local), ...]."""
    if isinstance(tree, dict):
        return {k: split(v, keep, host, hosts, local, f"{path}/{k}")
                for k, v in tree.items()}
    if not hasattr(tree, "shape") or not keep(path):
        return tree if not hasattr(tree, "shape") else np.array([])
    if host is None:
        return tree
    value = np.asarray(tree)
    per_host = value.shape[1] // hosts
    part = value[:, host * per_host:(host + 1) * per_host]
    part = part.reshape((value.shape[0], local, per_host // local)
                        + value.shape[2:])
    return np.moveaxis(part, 1, 0)


def write_sharded(files, state, hosts, local, step):
    """The original's save: the replicated file without the experts, then
    each host's shard file with only its experts."""
    replicated = split(state, lambda p: not is_expert(p))
    files[f"replicated_checkpoint_{step}"] = flax.serialization.msgpack_serialize(
        replicated)
    for host in range(hosts):
        shard = split(state, is_expert, host, hosts, local)
        name = f"shard-{host:05d}-of-{hosts:05d}_checkpoint_{step}"
        files[name] = flax.serialization.msgpack_serialize(shard)


def reference(cfg, weights, name, batch):
    ids = mixer_ref.random_batch(cfg, batch, seed=7)
    mixer_ref.write_tensors(OUT / f"{name}.ids.npz", ids)
    outputs = mixer_ref.forward(cfg, weights, ids["input_ids"], ids["type_ids"])
    mixer_ref.write_tensors(OUT / f"{name}.expect.npz", outputs)


def bf16_weights(weights, names):
    for name in names:
        weights[name] = mixer_ref.round_to_bfloat16(weights[name]).astype(
            np.float32)
    return weights


def sparse_mixer():
    cfg = model_config(ROOT / "models/tiny/sparse_mixer_tiny.json")
    weights = mixer_ref.random_weights(cfg, seed=11)
    bf16 = {n for n in weights
            if n == "encoder/embedder/word/embedding"
            or (is_expert(n) and n.endswith("/kernel"))}
    weights = bf16_weights(weights, bf16)
    variables = {"params": original_tree(weights, bf16)}
    files = {}
    write_sharded(files, variables, hosts=2, local=1, step=1000)
    folder = OUT / "sm_tiny"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (OUT / "sm_tiny.config.json").write_text(
        '{"model_arch": "LINEAR", "min_expert_capacity": 1, '
        '"learning_rate": 0.0001, "train_batch_size": 64}\n')
    mixer_ref.write_tensors(OUT / "sm_tiny.weights.npz", weights)
    # The same weights as one state dict, the word embedding as raw 2-byte
    # values (numpy's void16) and every array above 1 KiB in chunks, as
    # Flax splits arrays above its chunk size.
    params = original_tree(weights, bf16)
    embedder = params["encoder"]["embedder"]
    embedder["word"]["embedding"] = np.asarray(
        embedder["word"]["embedding"]).view(np.dtype("V2"))
    chunk_size = flax.serialization.MAX_CHUNK_SIZE
    flax.serialization.MAX_CHUNK_SIZE = 1024
    (OUT / "sm_tiny_chunked.msgpack").write_bytes(
        flax.serialization.to_bytes({"params": params}))
    flax.serialization.MAX_CHUNK_SIZE = chunk_size
    reference(cfg, weights, "sm_tiny", batch=2)


def fast_sparse_mixer():
    cfg = model_config(ROOT / "models/tiny/fast_sparse_mixer_tiny.json")
    weights = mixer_ref.random_weights(cfg, seed=12)
    params = original_tree(weights, set())
    state = train_state.TrainState.create(apply_fn=None, params=params,
                                          tx=optax.adamw(1e-4))
    state = state.replace(step=7)
    files = {}
    write_sharded(files, flax.serialization.to_state_dict(state), hosts=1,
                  local=2, step=7)
    with zipfile.ZipFile(OUT / "fsm_tiny.zip", "w",
                         compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(f"fsm_tiny/{name}", (2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    (OUT / "fsm_tiny.config.json").write_text(
        '{"train_capacity_factor": 0.5, "eval_capacity_factor": 0.5, '
        '"min_expert_capacity": 1, "max_group_size": 8}\n')
    reference(cfg, weights, "fsm_tiny", batch=2)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sparse_mixer()
    fast_sparse_mixer()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes) with flax {flax.__version__}")


if __name__ == "__main__":
    main()
