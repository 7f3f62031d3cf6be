"""Fidelity to the reference codes: Recipe.paper() is cfchen-duke/ProtoPNet's schedule step for
step, the BatchNorm-statistics switch, and push's box of the map before the push."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import protozoo
from protozoo.push import high_activation_boxes, push_prototypes
from protozoo.train import Recipe, fit

JOINT_LR, WARM_LR, LAST_LR = 3e-3, 3e-3, 1e-4  # the largest learning rate of each phase's optimizer


def reference_schedule(num_train_epochs, *, num_warm_epochs=5, push_start=10, push_every=10, step_size=5,
                       last_layer_iterations=20, linear=False):  # fmt: skip
    """cfchen-duke/ProtoPNet main.py's loop, transcribed: (kind, phase, largest lr) per step.

    ``joint_lr_scheduler.step()`` comes before each joint epoch's training; StepLR's counter is 0
    after construction; pushes at epoch indices >= push_start in push_epochs (multiples of 10),
    each followed by 20 last-layer iterations unless the similarity is linear."""
    steps, scheduler_count = [], 0
    for epoch in range(num_train_epochs):
        if epoch < num_warm_epochs:
            steps.append(("train", "warm", WARM_LR))
        else:
            scheduler_count += 1
            steps.append(("train", "joint", JOINT_LR * 0.1 ** (scheduler_count // step_size)))
        if epoch >= push_start and epoch % push_every == 0:
            steps.append(("push", "push", None))
            if not linear:
                steps += [("train", "last_layer", LAST_LR)] * last_layer_iterations
    return steps


def plan_of(recipe):
    """(kind, phase, lr) per step of a recipe's plan, the lr as fit sets it."""
    out, joint = [], 0
    for step in recipe.plan():
        if step.kind == "push":
            out.append(("push", "push", None))
        elif step.phase == "joint":
            out.append(
                ("train", "joint", JOINT_LR * recipe.lr_gamma ** ((joint + recipe.lr_step_offset) // recipe.lr_step))
            )
            joint += 1
        else:
            out.append(("train", step.phase, WARM_LR if step.phase == "warm" else LAST_LR))
    return out


def same_steps(ours, reference):
    assert [s[:2] for s in ours] == [s[:2] for s in reference]
    assert all(a[2] == pytest.approx(b[2]) for a, b in zip(ours, reference) if b[2] is not None)


def test_paper_recipe_is_the_reference_schedule_step_for_step():
    recipe = Recipe.paper()
    assert (recipe.epochs, recipe.batch_size, recipe.freeze_norm_stats) == (1000, 80, False)
    assert recipe.lr["backbone"] == 1e-4 and recipe.lr["last_layer"] == 1e-4 and recipe.warm_lr["add_on"] == 3e-3
    same_steps(plan_of(recipe), reference_schedule(1000))
    same_steps(plan_of(Recipe.paper(similarity="linear")), reference_schedule(1000, linear=True))
    for epochs in (9, 11, 12, 31, 45):  # short runs: the last epoch is pushed only on schedule
        same_steps(plan_of(Recipe.paper(epochs=epochs)), reference_schedule(epochs))


def test_default_recipe_differs_where_documented():
    default, reference = plan_of(Recipe(epochs=31)), reference_schedule(31)

    def pushes(steps):
        return [sum(s[1] in ("warm", "joint") for s in steps[:i]) for i, s in enumerate(steps) if s[0] == "push"]

    assert pushes(default) == [10, 20, 30, 31] and pushes(reference) == [11, 21, 31]  # one epoch earlier; at the end
    joint_lrs = lambda steps: [s[2] for s in steps if s[1] == "joint"][:6]  # noqa: E731
    assert joint_lrs(default)[4:] == [JOINT_LR, pytest.approx(JOINT_LR / 10)]  # decays from the 6th joint epoch
    assert joint_lrs(reference)[3:5] == [JOINT_LR, pytest.approx(JOINT_LR / 10)]  # ... the reference's from the 5th
    assert Recipe().freeze_norm_stats and Recipe().last_layer_epochs == 20  # also for linear similarity


def tiny_run():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, prototype_dim=8,
                                  feature_stage=2)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    data = [
        {"image": torch.randn(3, 32, 32, generator=generator) + i % 2, "label": i % 2, "id": f"i{i}"} for i in range(8)
    ]
    return model, data


def running_means(model):
    return torch.cat([m.running_mean.clone() for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)])


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_in_the_warm_phase(freeze):
    model, data = tiny_run()
    before = running_means(model)
    recipe = Recipe(epochs=1, warm_epochs=1, push_at_end=False, last_layer_epochs=0, batch_size=4,
                    freeze_norm_stats=freeze)  # fmt: skip
    fit(model, data, recipe=recipe, progress=False, log=lambda _: None)
    # Frozen backbone: its statistics stay (default) or move with every batch (the reference).
    assert torch.equal(running_means(model), before) is freeze


def test_fit_follows_the_reference_learning_rates():
    model, data = tiny_run()
    recipe = Recipe.paper(epochs=12, warm_epochs=1, last_layer_epochs=1, batch_size=4)
    result = fit(model, data, recipe=recipe, progress=False, log=lambda _: None)
    ran = [("push", "push", None) if r["kind"] == "push" else ("train", r["phase"], r["lr"]) for r in result.history]
    same_steps(ran, reference_schedule(12, num_warm_epochs=1, last_layer_iterations=1))
    assert [r["lr"] for r in result.history if r.get("phase") == "joint"][3:5] == [
        JOINT_LR,
        pytest.approx(JOINT_LR / 10),
    ]


def test_push_box_of_the_map_before_the_push():
    model, data = tiny_run()
    model.eval()
    old = model.prototypes.detach().clone()
    before = push_prototypes(model, DataLoader(data, batch_size=3), box_map="before")
    pushed_vectors = model.prototypes.detach().clone()
    model.prototypes.data.copy_(old)
    after = push_prototypes(model, DataLoader(data, batch_size=3))
    assert torch.equal(model.prototypes, pushed_vectors)  # the option changes the record, not the push
    assert before.changed.all()  # every prototype moved: the two maps differ
    images = {d["id"]: d["image"] for d in data}
    with torch.no_grad():
        for p, (row, row_after) in enumerate(zip(before.provenance, after.provenance)):
            assert (row["image_id"], row["feature_hw"]) == (row_after["image_id"], row_after["feature_hw"])
            z = model.latent(images[row["image_id"]][None])  # (1, D, h, w)
            for vector, record in ((old[p], row), (pushed_vectors[p], row_after)):
                similarity = model.head.activation(model.head.distance(z, vector[None]))[0, 0]  # (h, w)
                assert torch.allclose(torch.tensor(record["self_similarity_map"]), similarity, atol=1e-5)
                assert record["high_activation_box"] == high_activation_boxes(similarity[None], (32, 32))[0].tolist()
            h, w = row_after["feature_hw"]
            assert torch.tensor(row_after["self_similarity_map"]).argmax() == h * len(similarity[0]) + w
    with pytest.raises(ValueError, match="box_map"):
        push_prototypes(model, DataLoader(data, batch_size=3), box_map="old")
