"""Fine-tuning end to end: fit with pushes, checkpoints, exact resume after a kill, torchrun."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import protozoo
from protozoo.train import Recipe, fit
from protozoo.train.session import prepare_run

TINY_RUN = [
    "--data",
    "synthetic-parts",
    "--image-size",
    "64",
    "--num-samples",
    "48",
    "--epochs",
    "3",
    "--warm-epochs",
    "1",
    "--push-start",
    "3",
    "--push-every",
    "3",
    "--last-layer-epochs",
    "2",
    "--batch-size",
    "16",
    "--prototypes-per-class",
    "2",
    "--no-progress",
]


def run_cli(args, **kwargs):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "protozoo", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_fit_pushes_checkpoints_and_saves(tmp_path):
    run = prepare_run(
        "protopnet_resnet18", "synthetic-parts", image_size=64, num_samples=32, prototypes_per_class=2, prototype_dim=16
    )
    recipe = Recipe(epochs=2, warm_epochs=1, push_start=2, push_every=2, last_layer_epochs=1, batch_size=16)
    lines = []
    result = fit(
        run.model,
        run.train,
        recipe=recipe,
        val_data=run.val,
        push_data=run.push,
        out_dir=tmp_path,
        progress=False,
        log=lines.append,
    )
    assert [row["kind"] for row in result.history] == ["train", "train", "push", "train"]
    assert [row.get("phase") for row in result.history] == ["warm", "joint", None, "last_layer"]
    assert "plan: warm x1 -> joint x1 -> PUSH -> last_layer x1" in lines[0]
    for name in (
        "recipe.json",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "metrics.csv",
        "model/config.json",
        "model/model.safetensors",
        "model/prototypes.json",
    ):
        assert (tmp_path / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.history and "val_accuracy" in rows[0]

    # Pushed prototypes are latent patches of training images of their own class.
    model = protozoo.load(str(tmp_path / "model"))
    items = {run.push[i]["id"]: run.push[i] for i in range(len(run.push))}
    for row in model.provenance:
        item = items[row["image_id"]]
        assert item["label"] == row["class"] == model.prototype_class[row["prototype"]]
        h, w = row["feature_hw"]
        with torch.no_grad():
            z = model.latent(item["image"][None])[0, :, h, w]
        assert (z - model.prototypes[row["prototype"]]).abs().max() < 1e-5

    # The last layer trained only in its phase; warm/joint left it at the paper's init.
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(run.model, run.train, recipe=recipe, out_dir=tmp_path, progress=False, log=lines.append)


def next_step(checkpoint):
    try:
        with safe_open(str(checkpoint), framework="pt") as handle:
            return json.loads(handle.metadata()["protozoo"])["state"]["next_step"]
    except Exception:
        return -1


def test_killed_run_resumes_exactly(tmp_path):
    straight = run_cli([*TINY_RUN, "--model", "protopnet_resnet18", "--out", str(tmp_path / "straight")])
    killed = run_cli([*TINY_RUN, "--model", "protopnet_resnet18", "--out", str(tmp_path / "killed")])
    checkpoint = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 300
    while next_step(checkpoint) < 2 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed; make TINY_RUN longer"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted_at = next_step(checkpoint)
    assert 2 <= interrupted_at < 6

    resumed = run_cli([*TINY_RUN, "--model", "protopnet_resnet18", "--out", str(tmp_path / "killed"), "--resume"])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert f"resuming {tmp_path / 'killed'} at step {interrupted_at}/6" in out
    straight_out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, straight_out

    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history_a = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    history_b = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(history_a) == strip(history_b)
    assert json.loads((tmp_path / "killed" / "model" / "prototypes.json").read_text()) == json.loads(
        (tmp_path / "straight" / "model" / "prototypes.json").read_text()
    )


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # torchrun passes --master_port to the workers as is: 0 would hang them
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        port,
        "-m",
        "protozoo",
        "train",
        *TINY_RUN,
        "--model",
        "protopnet_resnet18",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    model = protozoo.load(str(tmp_path / "model"))
    assert len(model.provenance) == model.num_prototypes == 12
    history = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in history] == ["train"] * 3 + ["push"] + ["train"] * 2


def test_finetune_example_smoke(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "examples/finetune.py", "--smoke", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "classes: ['bar', 'disc']" in done.stdout
    model = protozoo.load(str(tmp_path / "model"))
    assert model.pretrained_cfg.label_names == ("bar", "disc")
    assert {row["image_id"].split("/")[0] for row in model.provenance} <= {"bar", "disc"}


def test_a_trained_model_remembers_its_training_data_so_push_sources_are_the_same_images(tmp_path):
    from protozoo.data import load_dataset
    from protozoo.train.session import training_options

    run = prepare_run(
        "protopnet_resnet18",
        "synthetic-parts",
        image_size=32,
        num_samples=6,
        seed=3,
        data_options={"num_classes": 3, "decoy_prob": 0.0},
        prototypes_per_class=1,
        prototype_dim=8,
    )
    run.model.save_pretrained(tmp_path / "model")
    model = protozoo.load(tmp_path / "model")
    options = training_options(model, "synthetic-parts")
    assert options == {"seed": 3, "num_classes": 3, "decoy_prob": 0.0, "image_size": 32, "num_samples": 6}
    assert training_options(model, "synthetic-mammo") == {}  # another dataset: nothing to apply
    again = load_dataset("synthetic-parts", "train", **options)
    assert again[4]["id"] == run.push[4]["id"]
    assert torch.equal(again[4]["image"], load_dataset("synthetic-parts", "train", **options)[4]["image"])
    assert again[4]["image"].shape[-1] == 32 and again.classes == run.push.classes


def test_weight_decay_is_set_per_group_by_the_recipe():
    from protozoo.train.loop import make_optimizers

    model = protozoo.create_model("protopnet_resnet18", backbone="test_resnet", num_classes=2, prototypes_per_class=1)

    def decay(recipe):
        return {g["name"]: g["weight_decay"] for g in make_optimizers(model, recipe)["joint"].param_groups}

    assert decay(Recipe()) == {"backbone": 1e-3, "add_on": 1e-3, "prototypes": 0.0}
    assert decay(Recipe(weight_decay={"prototypes": 0.5})) == {"backbone": 0.0, "add_on": 0.0, "prototypes": 0.5}
    assert decay(Recipe(weight_decay=1e-2)) == {"backbone": 1e-2, "add_on": 1e-2, "prototypes": 0.0}
    assert Recipe.from_dict(Recipe(weight_decay=1e-2).to_dict()).weight_decay["backbone"] == 1e-2  # recipe.json
