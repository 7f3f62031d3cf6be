"""Issue #15, training: one run per folder, a resume only of the same run, flags and recipe values
that mean something, one clear line for Ctrl-C and a full disk."""

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

import protozoo.cli
from protozoo.serialization import WeightFileError, atomic_path
from protozoo.train import Recipe, fit
from protozoo.train.checkpoint import LOCK_NAME, RunDefinitionError, RunLock, RunLockedError, load_checkpoint
from protozoo.train.session import prepare_run

TINY = Recipe(epochs=1, warm_epochs=1, push_start=1, push_every=1, last_layer_epochs=0, batch_size=8)


def tiny_run(**changes):
    options = dict(
        image_size=32,
        num_samples=8,
        prototypes_per_class=1,
        prototype_dim=8,
        backbone="test_resnet",
        data_options={"num_classes": 2},
    )
    options |= changes
    return prepare_run("protopnet_resnet18", "synthetic-parts", **options)


def train(run, out, recipe=TINY, **kwargs):
    lines = []
    result = fit(
        run.model, run.train, recipe=recipe, push_data=run.push, out_dir=out, progress=False, log=lines.append, **kwargs
    )
    return result, lines


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run: its folder holds a checkpoint, recipe.json and the model."""
    out = tmp_path_factory.mktemp("run")
    train(tiny_run(), out)
    return out


# --- the run folder is locked -------------------------------------------------------------


def test_a_second_process_into_the_same_folder_is_refused_naming_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from protozoo.train.checkpoint import RunLock
            RunLock({str(tmp_path)!r}).acquire()
            print("locked", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"{tmp_path}.*in use by process {holder.pid}"):
            train(tiny_run(), tmp_path)
        assert not (tmp_path / "checkpoint.safetensors").exists()  # it wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # The holder died (SIGKILL): its lock went with it; the next run takes it over and says so.
    _, lines = train(tiny_run(), tmp_path)
    assert any(f"left by process {holder.pid}" in line and "no longer running" in line for line in lines)
    assert not (tmp_path / LOCK_NAME).exists()  # released on exit


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    (tmp_path / "checkpoint.safetensors").write_bytes(b"")  # a checkpoint without resume: refused
    with pytest.raises(FileExistsError):
        train(tiny_run(), tmp_path)
    RunLock(tmp_path).acquire().release()  # not held any more


def test_a_lock_in_the_same_process_is_refused_too(tmp_path):
    first = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    finally:
        first.release()


# --- a resume checks the run definition -----------------------------------------------------


def test_resuming_the_same_run_works(finished):
    _, lines = train(tiny_run(), finished, resume=True)
    assert any(line.startswith(f"resuming {finished}") for line in lines)


# (what changes on resume, what the error must say)
CHANGED_RUNS = [
    (
        dict(recipe=Recipe(epochs=2, warm_epochs=1, push_start=1, push_every=1, last_layer_epochs=0, batch_size=8)),
        r"recipe\.epochs: 1 -> 2",
    ),
    (
        dict(recipe=Recipe(epochs=1, warm_epochs=1, push_start=1, push_every=1, last_layer_epochs=0, batch_size=4)),
        r"recipe\.batch_size: 8 -> 4",
    ),
    (dict(run=dict(image_size=48)), r"input_size: \[3, 32, 32\] -> \[3, 48, 48\]"),
    (dict(run=dict(num_samples=12)), r"data\.options"),
    (dict(run=dict(data_options={"num_classes": 2, "decoy_prob": 0.0})), r"data\.options"),
    (dict(run=dict(prototypes_per_class=2)), r"belongs to another model.*prototypes_per_class: 1 -> 2"),
    (dict(run=dict(backbone="test_efficientnet")), r"belongs to another model.*backbone"),
]


@pytest.mark.parametrize("change, message", CHANGED_RUNS)
def test_resuming_another_run_definition_is_refused_saying_what_differs(finished, change, message):
    run = tiny_run(**change.get("run", {}))
    with pytest.raises(RunDefinitionError, match=message):
        train(run, finished, recipe=change.get("recipe", TINY), resume=True)


def test_resuming_without_recipe_json_is_an_error(finished, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "recipe.json").unlink()
    with pytest.raises(RunDefinitionError, match=r"recipe\.json.* is missing"):
        train(tiny_run(), copy, resume=True)


def test_a_checkpoint_of_another_model_names_the_file_not_a_size_dump(finished):
    from protozoo.train.loop import joint_scheduler, make_optimizers

    other = tiny_run(prototypes_per_class=2).model
    optimizers = make_optimizers(other, TINY)
    with pytest.raises(WeightFileError, match=r"checkpoint .*checkpoint\.safetensors.*do not fit"):
        load_checkpoint(
            finished / "checkpoint.safetensors",
            model=other,
            optimizers=optimizers,
            schedulers={"joint": joint_scheduler(optimizers["joint"], TINY)},
        )


# --- flags and recipe values ----------------------------------------------------------------

TRAIN = ["train", "--model", "protopnet_resnet18", "--data", "synthetic-parts", "--out", "unused"]
BAD_FLAGS = [
    (TRAIN + ["--prototypes-per-class", "0"], "--prototypes-per-class"),
    (TRAIN + ["--image-size", "0"], "--image-size"),
    (TRAIN + ["--image-size", "-32"], "--image-size"),
    (TRAIN + ["--epochs", "0"], "--epochs"),
    (TRAIN + ["--push-every", "0"], "--push-every"),
    (TRAIN + ["--push-every", "-1"], "--push-every"),
    (TRAIN + ["--num-samples", "0"], "--num-samples"),
    (TRAIN + ["--batch-size", "0"], "--batch-size"),
    (TRAIN + ["--warm-epochs", "-1"], "--warm-epochs"),
    (TRAIN + ["--last-layer-epochs", "-1"], "--last-layer-epochs"),
    (TRAIN + ["--epochs", "ten"], "--epochs"),
    (["evaluate", "--model", "m", "--data", "d", "--num-samples", "0"], "--num-samples"),
]


@pytest.mark.parametrize("argv, flag", BAD_FLAGS)
def test_zero_or_negative_flags_are_flag_errors(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        protozoo.cli.main(argv)
    assert exit_.value.code == 2
    assert f"argument {flag}: must be an integer >=" in capsys.readouterr().err


BAD_RECIPES = [
    (dict(epochs=0), "recipe field epochs must be an integer >= 1, not 0"),
    (dict(epochs=2.5), "recipe field epochs"),
    (dict(push_every=0), "recipe field push_every must be an integer >= 1, not 0"),
    (dict(push_every=-1), "recipe field push_every"),
    (dict(push_start=-1), "recipe field push_start"),
    (dict(batch_size=0), "recipe field batch_size"),
    (dict(last_layer_epochs=-1), "recipe field last_layer_epochs"),
    (dict(global_epochs=-2), "recipe field global_epochs"),
    (dict(lr_step=0), "recipe field lr_step"),
    (dict(lr_gamma=0), "recipe field lr_gamma"),
    (dict(lr="fast"), "recipe field lr must be a table"),
    (dict(lr={"backbone": "fast"}), r"recipe field lr\['backbone'\] must be a number"),
    (dict(warm_lr={"add_on": -1}), r"recipe field warm_lr\['add_on'\]"),
    (dict(lr={"backbone": float("nan")}), r"recipe field lr\['backbone'\]"),
    (dict(weight_decay=-1), "recipe field weight_decay"),
    (dict(push_at_end="yes"), "recipe field push_at_end must be true or false"),
    (dict(seed="0"), "recipe field seed"),
]


@pytest.mark.parametrize("fields, message", BAD_RECIPES)
def test_bad_recipe_values_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(Recipe().to_dict() | fields)


def test_a_bad_recipe_file_is_a_one_line_cli_error(tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"epochs": 0}))
    code = protozoo.cli.main(TRAIN + ["--recipe", str(recipe)])
    assert code == 2
    assert "recipe field epochs must be an integer >= 1" in capsys.readouterr().err


# --- Ctrl-C and a full disk -----------------------------------------------------------------


def fail_with(monkeypatch, error):
    def run(args):
        raise error

    monkeypatch.setattr(protozoo.cli.train, "run", run)


def test_ctrl_c_is_one_line_that_says_resume(monkeypatch, capsys, tmp_path):
    fail_with(monkeypatch, KeyboardInterrupt())
    code = protozoo.cli.main(["train", "--model", "m", "--data", "d", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130
    assert err.count("\n") == 1 and "interrupted" in err and "--resume" in err and str(tmp_path) in err


def test_a_full_disk_is_one_line_naming_the_folder(monkeypatch, capsys, tmp_path):
    target = tmp_path / "run" / "checkpoint.safetensors"
    fail_with(monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(target)))
    code = protozoo.cli.main(["train", "--model", "m", "--data", "d", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "no space left" in err and repr(str(tmp_path / "run")) in err


def test_atomic_writes_name_the_real_file_when_the_disk_is_full(tmp_path):
    with pytest.raises(OSError) as raised:
        with atomic_path(tmp_path / "metrics.json") as tmp:
            tmp.write_text("{}")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "metrics.json")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_a_real_sigint_to_training_prints_one_line_and_exits_130(tmp_path):
    """Ctrl-C in a real ``protozoo train`` (a SIGINT once its first checkpoint exists)."""
    import signal
    import time

    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "protozoo",
        "train",
        "--model",
        "protopnet_resnet18",
        "--data",
        "synthetic-parts",
        "--image-size",
        "32",
        "--num-samples",
        "16",
        "--epochs",
        "50",
        "--warm-epochs",
        "1",
        "--push-start",
        "50",
        "--batch-size",
        "16",
        "--prototypes-per-class",
        "1",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    # a shell's background job (`make test &`) inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (tmp_path / "checkpoint.safetensors").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and "--resume" in err, err
    assert not (tmp_path / LOCK_NAME).exists()


# --- the same through the command line ------------------------------------------------------

CLI_RUN = [
    "--data",
    "synthetic-parts",
    "--image-size",
    "32",
    "--num-samples",
    "8",
    "--epochs",
    "1",
    "--warm-epochs",
    "1",
    "--push-start",
    "1",
    "--last-layer-epochs",
    "0",
    "--batch-size",
    "8",
    "--prototypes-per-class",
    "1",
    "--data-option",
    "num_classes=2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def cli_finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run")
    assert protozoo.cli.main(["train", "--model", "protopnet_resnet18", *CLI_RUN, "--out", str(out)]) == 0
    return out


# (what the resumed command changes, what the one-line error must say)
CLI_CHANGES = [
    (["--image-size", "48"], "input_size"),
    (["--epochs", "2"], "recipe.epochs: 1 -> 2"),
    (["--data-option", "decoy_prob=0.0"], "data.options"),
    (["--data-option", "num_classes=3"], "belongs to another model"),  # 3 classes: another head
    (["--num-samples", "12"], "train_items: 8 -> 12"),
    (
        ["--model", "protopnet_resnet34"],
        "belongs to another model (protopnet_resnet18; this run builds protopnet_resnet34",
    ),
]


@pytest.mark.parametrize("change, message", CLI_CHANGES)
def test_cli_resume_of_another_run_is_one_line_saying_what_differs(cli_finished, change, message, capsys):
    argv = ["train", "--model", "protopnet_resnet18", *CLI_RUN, *change, "--out", str(cli_finished), "--resume"]
    assert protozoo.cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_cli_second_run_into_a_locked_folder_is_one_line_naming_the_holder(tmp_path, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from protozoo.train.checkpoint import RunLock; import time; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = protozoo.cli.main(["train", "--model", "protopnet_resnet18", *CLI_RUN, "--out", str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"process {holder.pid}" in err and str(tmp_path) in err, err
