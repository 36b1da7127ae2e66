"""EEA explainer: architecture, loss, pretraining (incl. resume) and batched per-image fine-tuning."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.explainer.finetuning import finetune_maps, finetune_maps_loop
from eea_repro.explainer.network import MaskExplainer, eea_loss, explain, load_explainer, save_explainer, upsample_masks
from eea_repro.explainer.pretraining import pretrain
from eea_repro.metrics.engine import normalize_maps, pos_auc_per_image
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

NUM_CLASSES = 4
VIT = ModelSpec(
    "vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
    {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
)
CNN = ModelSpec(
    "resnet18", "cnn", 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
    {"channels": (8, 16, 32, 64), "stem_width": 8},
)
GRID = {"vit": (4, 4), "cnn": (2, 2)}


def make_pair(explainer_spec, explained_spec, seed=0):
    """An explained model and an explainer; the explainer starts from the explained weights when the specs match."""
    torch.manual_seed(seed)
    net = create_network(explained_spec, NUM_CLASSES)
    explained = ExplainedModel(net, explained_spec).eval().requires_grad_(False)
    backbone_state = net.state_dict() if explainer_spec == explained_spec else None
    return MaskExplainer(explainer_spec, backbone_state, NUM_CLASSES), explained


def random_images(count, size, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator)


def pos_of(explained, images, token_maps, classes):
    """Independent scoring of token maps with the metric engine."""
    normalized, _, _ = normalize_maps(token_maps, images.shape[-1])
    return pos_auc_per_image(explained, images, normalized, classes)


# ---------------------------------------------------------------------------------------------------------------
# 1. architecture


@pytest.mark.parametrize("explainer_spec, explained_spec", [(VIT, VIT), (CNN, CNN), (VIT, CNN), (CNN, VIT)])
def test_masks_shape_range_and_gradients(explainer_spec, explained_spec):
    explainer, explained = make_pair(explainer_spec, explained_spec)
    images = random_images(3, explained_spec.input_size)
    masks = explainer(images)
    assert masks.shape == (3, *GRID[explainer_spec.family])
    assert ((masks > 0) & (masks < 1)).all()
    size = explained_spec.input_size
    assert upsample_masks(masks, size).shape == (3, size, size)

    total, _, _ = eea_loss(explained, masks, images, torch.tensor([0, 1, 2]), 5.0, "ltx")
    total.backward()
    assert all(parameter.grad is None for parameter in explained.parameters())
    for name, parameter in explainer.named_parameters():
        # Every trainable parameter is in the graph, so torch's AdamW (skips grad None) and the functional update
        # (sees zeros) step the same set.
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name


def test_vit_explainer_matches_explained_backbone_and_freezes_embeddings():
    explainer, explained = make_pair(VIT, VIT)
    frozen = {name for name, parameter in explainer.named_parameters() if not parameter.requires_grad}
    assert {"backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.proj.weight"} <= frozen
    assert not any(name.startswith(("backbone.blocks", "head")) for name in frozen)
    assert explainer.head[0].bias.abs().sum() == 0 and explainer.head[2].bias.abs().sum() == 0
    assert 0.015 < explainer.head[0].weight.std().item() < 0.025

    images = random_images(2, 32)
    tokens = explained.net.forward_features(explained.normalize(images))[:, 1:]  # drop CLS
    head = explainer.head
    expected = torch.sigmoid(head[2](torch.tanh(head[0](tokens)))).view(2, 4, 4)  # raster order of the patches
    torch.testing.assert_close(explainer(images), expected)


def test_cnn_backbone_batchnorm_stays_in_eval_mode():
    explainer, _ = make_pair(CNN, CNN)
    explainer.train()
    batchnorms = [m for m in explainer.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    assert all(parameter.requires_grad for parameter in explainer.backbone.parameters())
    images = random_images(2, 64)
    before = [m.running_mean.clone() for m in batchnorms]
    explainer(images).sum().backward()
    assert all(torch.equal(m.running_mean, b) for m, b in zip(batchnorms, before))


def test_save_and_load_round_trip(tmp_path):
    explainer, _ = make_pair(VIT, VIT)
    save_explainer(explainer, tmp_path / "explainer.safetensors")
    loaded = load_explainer(VIT, tmp_path / "explainer.safetensors", NUM_CLASSES)
    images = random_images(2, 32)
    torch.testing.assert_close(loaded(images), explainer(images), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# 2. loss


@pytest.mark.parametrize("size_loss", ["ltx", "l1"])
def test_eea_loss_by_hand(size_loss):
    _, explained = make_pair(VIT, VIT)
    images = random_images(2, 32)
    token_masks = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(3))
    classes = torch.tensor([1, 3])
    total, ce, size = eea_loss(explained, token_masks, images, classes, 7.0, size_loss)

    # Each mask value covers an 8x8 block; bilinear upsampling of a 4x4 grid interpolates between block centres.
    masked = images * F.interpolate(token_masks[:, None], scale_factor=8, mode="bilinear")
    logits = explained.net((masked - 0.5) / 0.5)
    expected_ce = -logits.log_softmax(1)[torch.arange(2), classes].mean()
    expected_size = torch.log1p(torch.exp(token_masks)).mean() if size_loss == "ltx" else token_masks.mean()
    torch.testing.assert_close(ce, expected_ce)
    torch.testing.assert_close(size, expected_size)
    torch.testing.assert_close(total, expected_ce + 7.0 * expected_size)


# ---------------------------------------------------------------------------------------------------------------
# Pretraining


def tiny_dataset(count=8, size=32):
    return random_images(count, size, seed=5), torch.arange(count) % NUM_CLASSES


def batches_for(images, labels, batch_size=4):
    def train_batches(epoch):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield images[index], labels[index]

    return train_batches


PRETRAIN_ARGS = dict(lam=2.0, size_loss="ltx", lr=1e-3, weight_decay=0.01)


@pytest.mark.parametrize("variant", ["target", "predicted"])
def test_pretraining_lowers_the_loss_and_keeps_the_best_epoch(variant, tmp_path):
    explainer, explained = make_pair(VIT, VIT)
    images, labels = tiny_dataset()
    history = pretrain(
        explainer, explained, batches_for(images, labels), images[:4], labels[:4],
        variant=variant, epochs=4, checkpoint_dir=tmp_path, log=lambda line: None, **PRETRAIN_ARGS,
    )
    losses = [record["loss"] for record in history["epochs"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    val_pos = [record["val_pos"] for record in history["epochs"]]
    assert history["best_epoch"] == 1 + min(range(4), key=lambda i: (val_pos[i], i))
    # The explainer is left holding the best epoch: its maps reproduce that epoch's validation POS.
    assert pos_of(explained, images[:4], explain(explainer, images[:4]), labels[:4]).mean().item() == pytest.approx(
        history["best_val_pos"]
    )


def test_unvalidated_one_epoch_fit_has_the_weights_of_the_validated_one(tmp_path):
    """Skipping validation (the sanity checks' one-epoch re-fits) saves the pass without changing the weights."""
    images, labels = tiny_dataset()
    fitted = {}
    for validate in (True, False):
        explainer, explained = make_pair(VIT, VIT)
        history = pretrain(
            explainer, explained, batches_for(images, labels), images[:4], labels[:4], variant="target", epochs=1,
            checkpoint_dir=tmp_path / str(validate), log=lambda line: None, validate=validate, **PRETRAIN_ARGS,
        )
        fitted[validate] = (explainer.state_dict(), history)
    validated, unvalidated = fitted[True], fitted[False]
    assert validated[0].keys() == unvalidated[0].keys()
    for name, tensor in validated[0].items():
        assert torch.equal(tensor, unvalidated[0][name]), name
    assert unvalidated[1]["best_epoch"] == 1 and math.isnan(unvalidated[1]["best_val_pos"])
    assert math.isfinite(validated[1]["best_val_pos"])


def test_unvalidated_fit_keeps_the_last_epoch(tmp_path):
    images, labels = tiny_dataset()
    explainer, explained = make_pair(VIT, VIT)
    history = pretrain(explainer, explained, batches_for(images, labels), images[:0], labels[:0], variant="target",
                       epochs=3, checkpoint_dir=tmp_path, log=lambda line: None, validate=False, **PRETRAIN_ARGS)
    assert history["best_epoch"] == 3
    assert all(math.isnan(record["val_pos"]) for record in history["epochs"])


def test_pretraining_resume_equals_uninterrupted_run(tmp_path):
    images, labels = tiny_dataset()
    requested = []

    def run(directory, epochs):
        explainer, explained = make_pair(VIT, VIT, seed=0)
        batches = batches_for(images, labels)

        def recorded(epoch):
            requested.append(epoch)
            return batches(epoch)

        history = pretrain(
            explainer, explained, recorded, images[:4], labels[:4], variant="target", epochs=epochs,
            checkpoint_dir=directory, log=lambda line: None, **PRETRAIN_ARGS,
        )
        return explainer, history, torch.load(directory / "pretrain_state.pt", weights_only=True)

    run(tmp_path / "resumed", 2)
    requested.clear()
    resumed, resumed_history, resumed_state = run(tmp_path / "resumed", 3)
    assert requested == [2]  # only the third epoch ran after the resume
    straight, straight_history, straight_state = run(tmp_path / "straight", 3)

    assert resumed_history == straight_history
    for name, tensor in straight_state["explainer"].items():
        torch.testing.assert_close(resumed_state["explainer"][name], tensor, rtol=0, atol=0)
    for name, tensor in straight_state["best"]["state"].items():
        torch.testing.assert_close(resumed_state["best"]["state"][name], tensor, rtol=0, atol=0)
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)
    assert resumed_state["optimizer"]["state"].keys() == straight_state["optimizer"]["state"].keys()
    for index, slot in straight_state["optimizer"]["state"].items():
        for key, tensor in slot.items():
            torch.testing.assert_close(resumed_state["optimizer"]["state"][index][key], tensor, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# 3 + 5. per-image fine-tuning


FINETUNE_ARGS = dict(steps=4, lr=0.05, lam=1.0, size_loss="ltx")


class PooledLinear(nn.Module):
    """A cheap explained model whose prediction reacts to removing pixels (random timm nets barely do), so POS varies
    between images and fine-tuning steps and the selection logic is exercised."""

    def __init__(self, seed):
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, NUM_CLASSES)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(3 * torch.randn(self.linear.weight.shape, generator=generator))
            self.linear.bias.zero_()

    def forward(self, images01):
        return self.linear(F.adaptive_avg_pool2d(images01, 4).flatten(1))


def finetune_setup(spec, count, seed=1):
    torch.manual_seed(seed)
    explainer = MaskExplainer(spec, None, NUM_CLASSES)
    explained = PooledLinear(seed).eval().requires_grad_(False)
    return explainer, explained, random_images(count, spec.input_size, seed=7 + seed)


@pytest.mark.parametrize("spec", [VIT, CNN], ids=["vit", "cnn"])
@pytest.mark.parametrize("early_stop", [False, True], ids=["run-all", "early-stop"])
def test_batched_finetuning_equals_the_per_image_adamw_loop(spec, early_stop):
    explainer, explained, images = finetune_setup(spec, 5)
    # float64 so that the equality holds to tight tolerance and the discrete POS selections cannot flip
    explainer.double()
    explained.double()
    images = images.double()
    classes = explained(images).argmax(1)
    selection = (classes + torch.tensor([0, 0, 0, 1, 2])) % NUM_CLASSES  # ground truth differs from top-1 on two
    early_stop_pos = None
    if early_stop:  # a threshold between the images' pEEA scores, so that some stop at once and some go on
        start = pos_of(explained, images, explain(explainer, images), selection)
        early_stop_pos = float(start.max())
        assert (start < early_stop_pos).any()

    kwargs = dict(FINETUNE_ARGS, early_stop_pos=early_stop_pos, selection_labels=selection)
    batched_maps, batched = finetune_maps(explainer, explained, images, classes, chunk_size=3, **kwargs)
    loop_maps, loop = finetune_maps_loop(explainer, explained, images, classes, **kwargs)

    torch.testing.assert_close(batched_maps, loop_maps, rtol=1e-5, atol=1e-6)
    assert torch.equal(batched["best_step"], loop["best_step"])
    assert torch.equal(batched["steps_run"], loop["steps_run"])
    torch.testing.assert_close(batched["best_pos"], loop["best_pos"], equal_nan=True)
    assert (batched["best_step"] > 0).any()  # fine-tuning did replace some pretrained maps
    if early_stop:
        assert (batched["steps_run"] == 1).any() and (batched["steps_run"] > 1).any()
        stopped = batched["steps_run"] < FINETUNE_ARGS["steps"]
        assert (batched["best_pos"][stopped] < early_stop_pos).all()
    else:
        assert (batched["steps_run"] == FINETUNE_ARGS["steps"]).all()


@pytest.mark.parametrize("spec", [VIT, CNN], ids=["vit", "cnn"])
def test_finetuned_maps_are_never_worse_than_pretrained_on_the_selection_score(spec):
    explainer, explained, images = finetune_setup(spec, 6, seed=2)
    classes = explained(images).argmax(1)
    labels = torch.arange(6) % NUM_CLASSES
    maps, info = finetune_maps(
        explainer, explained, images, classes, selection_labels=labels, chunk_size=4, **FINETUNE_ARGS
    )
    pretrained_pos = pos_of(explained, images, explain(explainer, images), labels)
    finetuned_pos = pos_of(explained, images, maps, labels)
    torch.testing.assert_close(finetuned_pos.double(), info["best_pos"].double())
    assert (finetuned_pos <= pretrained_pos).all()
    improved = info["best_step"] > 0
    assert improved.any()
    assert (finetuned_pos[improved] < pretrained_pos[improved]).all()
    assert torch.equal(finetuned_pos[~improved], pretrained_pos[~improved])


@pytest.mark.parametrize("spec", [VIT, CNN], ids=["vit", "cnn"])
def test_keep_last_returns_the_map_learnt_for_each_class(spec):
    explainer, explained, images = finetune_setup(spec, 2, seed=3)
    pair_images = torch.cat([images, images])
    pair_classes = torch.tensor([0, 1, 2, 3])  # every image explained for two different classes
    # early stop is ignored when keeping the last map; a gentle lr keeps the masks away from saturation
    kwargs = dict(FINETUNE_ARGS, lr=0.01, keep="last", early_stop_pos=0.0)
    maps, info = finetune_maps(explainer, explained, pair_images, pair_classes, chunk_size=4, **kwargs)
    assert (info["best_step"] == FINETUNE_ARGS["steps"] - 1).all()
    assert (info["steps_run"] == FINETUNE_ARGS["steps"]).all()
    assert not torch.allclose(maps[0], maps[2]) and not torch.allclose(maps[1], maps[3])
    assert not torch.allclose(maps, explain(explainer, pair_images))
    single, _ = finetune_maps(explainer, explained, pair_images[2:3], pair_classes[2:3], chunk_size=1, **kwargs)
    torch.testing.assert_close(single[0], maps[2], rtol=1e-4, atol=1e-5)


def test_micro_batches_give_the_batch_gradient_when_the_batch_does_not_fit(monkeypatch):
    from eea_repro.explainer.pretraining import _accumulate_gradients
    from eea_repro.models import memory

    images, labels = tiny_dataset(count=5)
    gradients, sums, sizes = [], [], []
    for budget in (memory.CPU_BUDGET_BYTES, None):
        explainer, explained = make_pair(CNN, CNN)
        if budget is None:  # room for two images of explainer + explained model per pass
            per_image = sum(memory.training_bytes(memory.input_footprint(net, 32, torch.device("cpu")))
                            for net in (explainer, explained))
            budget = 2 * per_image
        monkeypatch.setattr(memory, "CPU_BUDGET_BYTES", budget)
        memory.input_footprint(explained, 32, torch.device("cpu"))  # measured before the probe counts passes
        probe = explained.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
        sums.append(_accumulate_gradients(explainer, explained, images, labels, 2.0, "ltx"))
        probe.remove()
        gradients.append({name: p.grad.clone() for name, p in explainer.named_parameters() if p.grad is not None})
    assert sizes == [5, 2, 2, 1]  # the whole batch, then micro-batches of what fits
    torch.testing.assert_close(sums[1], sums[0], rtol=1e-5, atol=1e-6)
    assert gradients[0].keys() == gradients[1].keys() and gradients[0]
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, rtol=1e-4, atol=1e-6, msg=name)
