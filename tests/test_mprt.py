"""The repaired parameter-randomization tests (sanity/mprt.py, bottom-up cascading, the no-information control),
checked against Quantus itself where it computes the same thing."""

import copy

import numpy as np
import pytest
import torch

from eea_repro.methods import compute_maps
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network
from eea_repro.sanity.mprt import discrete_entropy, efficient_mprt, smoothed_maps
from eea_repro.sanity.randomization import bottom_up, cascading, randomization_layers
from eea_repro.sanity.similarity import resize_maps, spearman_per_image

quantus = pytest.importorskip("quantus", reason="Quantus (the test extra) is the oracle of these tests")

SIZE = 64
SPEC = ModelSpec("resnet18", "cnn", SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                 {"channels": (8, 8, 16, 16), "stem_width": 8})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ExplainedModel(create_network(SPEC, 5), SPEC).eval()


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, SIZE, SIZE, generator=generator), torch.tensor([0, 1, 2, 3])


def maps_at_input_size(model, inputs, targets, **_) -> np.ndarray:
    """FullGrad of our registry at the input resolution (N, 1, H, W): the explain_func both sides use."""
    maps = compute_maps("fullgrad", model, torch.as_tensor(inputs), torch.as_tensor(targets))
    return resize_maps(maps.detach().numpy(), SIZE)[:, None]


def quantus_bottom_up_models(model):
    """Quantus's own bottom-up randomized models, in its order: every module with reset_parameters, re-initialised one
    more at a time."""
    from quantus.helpers.model.pytorch_model import PyTorchModel

    wrapped = PyTorchModel(model, channel_first=True, device="cpu")
    return [(name, copy.deepcopy(randomized)) for name, randomized in
            wrapped.get_random_layer_generator(order="bottom_up", seed=42)]


def _on_bin_edges(generator, dtype) -> np.ndarray:
    """Maps whose values are numpy's own 100-bin edges of the map in ``dtype`` (and its minimum and maximum), where
    edges computed in another precision would bin values differently."""
    maps = []
    for _ in range(40):
        low = dtype(generator.normal())
        edges = np.linspace(low, dtype(low + 3), 101, dtype=dtype)
        values = generator.choice(edges, size=32 * 32)
        values[:2] = edges[0], edges[-1]
        maps.append(values.reshape(32, 32))
    return np.stack(maps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # numpy bins float32 maps with float32 edges
@pytest.mark.parametrize("kind", ["uniform", "ties", "normal", "constant", "two_values", "on_edges"])
def test_discrete_entropy_is_quantus_s(kind, dtype):
    from quantus.functions.complexity_func import discrete_entropy as quantus_entropy

    generator = np.random.default_rng(3)
    maps = {"uniform": generator.random((40, 32, 32)),
            "ties": generator.integers(0, 7, (40, 32, 32)) / 7,  # values on bin edges
            "normal": generator.normal(size=(40, 32, 32)),
            "constant": np.full((40, 32, 32), 0.3),
            "two_values": np.where(generator.random((40, 32, 32)) < 0.2, 1.0, -2.0),
            "on_edges": _on_bin_edges(generator, dtype)}[kind].astype(dtype)
    ours = discrete_entropy(torch.as_tensor(maps)).numpy()
    theirs = np.array([quantus_entropy(a=map_, x=None) for map_ in maps])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_efficient_mprt_is_quantus_s_on_its_fully_randomized_model(model, images):
    inputs, targets = images
    metric = quantus.EfficientMPRT(disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), a_batch=None,
                    explain_func=maps_at_input_size, device="cpu", batch_size=len(inputs))
    randomized = quantus_bottom_up_models(model)[-1][1]
    ours = efficient_mprt(torch.as_tensor(maps_at_input_size(model, inputs, targets)),
                          torch.as_tensor(maps_at_input_size(randomized, inputs, targets)))
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs, dtype=np.float64), rtol=1e-9, atol=1e-12)


def test_bottom_up_spearman_is_quantus_mprt_at_every_layer(model, images):
    """Quantus's MPRT with our comparison's settings (bottom-up, no abs, no normalisation, Spearman) against our
    Spearman of the maps on the same randomized models."""
    inputs, targets = images
    metric = quantus.MPRT(layer_order="bottom_up", abs=False, normalise=False,
                          similarity_func=quantus.similarity_func.correlation_spearman, disable_warnings=True,
                          display_progressbar=False)
    theirs = metric(model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), a_batch=None,
                    explain_func=maps_at_input_size, device="cpu", batch_size=len(inputs))
    original = maps_at_input_size(model, inputs, targets)[:, 0]
    levels = [("original", model), *quantus_bottom_up_models(model)]
    assert list(theirs) == [name for name, _ in levels]
    for name, randomized in levels:
        ours = spearman_per_image(original, maps_at_input_size(randomized, inputs, targets)[:, 0])
        np.testing.assert_allclose(ours, np.asarray(theirs[name], dtype=np.float64), rtol=1e-6, atol=1e-6,
                                   err_msg=name)


def test_a_constant_map_has_entropy_zero_and_no_rise_where_quantus_divides_zero_by_zero():
    constant = torch.ones(3, 7, 7)
    assert discrete_entropy(constant).tolist() == [0.0, 0.0, 0.0]
    assert efficient_mprt(constant, constant).tolist() == [0.0, 0.0, 0.0]  # Quantus: 0 / 0
    varying = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(0))
    assert efficient_mprt(constant, varying).isnan().all()  # no relative rise from zero
    assert (efficient_mprt(varying, constant) == -1).all()  # all structure lost


def test_bottom_up_randomizes_from_the_input_and_ends_at_cascading_s_random_network(model):
    model = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in model.parameters():  # off the initial values, which a reset would draw again (BN's 1 and 0)
            parameter.add_(0.01)
    layers = randomization_layers(model, "cnn", "block")
    original = dict(model.named_parameters())
    for k in range(1, len(layers) + 2):
        changed = {name for name, parameter in bottom_up(model, k, layers).named_parameters()
                   if not torch.equal(parameter, original[name])}
        assert changed == {name for layer in layers[: k - 1] for name in layer}, k
    last = len(layers) + 2
    for ours, theirs in zip(bottom_up(model, last, layers).parameters(), cascading(model, last, layers).parameters()):
        assert torch.equal(ours, theirs)
    with pytest.raises(ValueError, match="outside"):
        bottom_up(model, last + 1, layers)


def test_smoothed_maps_average_the_noisy_copies_and_the_clean_image(model, images):
    inputs, targets = images
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(3, *inputs.shape, generator=generator)

    def explain(batch, rows):
        return compute_maps("gradcam", model, batch, targets[rows])

    smoothed = smoothed_maps(explain, inputs, noise, noise_level=0.1, chunk=5)  # chunks across copies
    spread = (inputs.flatten(1).max(1).values - inputs.flatten(1).min(1).values).view(-1, 1, 1, 1)
    every = torch.arange(len(inputs))
    by_hand = torch.stack([explain(inputs + noise[s] * 0.1 * spread, every) for s in range(3)]
                          + [explain(inputs, every)]).mean(0)
    torch.testing.assert_close(smoothed, by_hand, rtol=1e-5, atol=1e-6)
    assert torch.equal(smoothed_maps(explain, inputs, noise[:0]), explain(inputs, every))


def test_each_image_s_noise_is_its_own_whatever_the_batch():
    from eea_repro.sanity.mprt import image_noise

    together = image_noise(3, [0, 5, 9], 4, (3, 8, 8))
    assert together.shape == (4, 3, 3, 8, 8)
    assert torch.equal(image_noise(3, [9], 4, (3, 8, 8))[:, 0], together[:, 2])
    assert not torch.equal(image_noise(4, [9], 4, (3, 8, 8))[:, 0], together[:, 2])  # another seed, other noise


def test_the_no_information_control_is_the_same_map_for_every_randomized_model(model, images):
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    inputs, targets = images
    layers = randomization_layers(model, "cnn", "block")
    edges = compute_maps("edges", model, inputs, targets)
    for k in (2, len(layers) + 2):
        assert torch.equal(compute_maps("edges", bottom_up(model, k, layers), inputs, targets), edges)
    by_skimage = np.stack([sobel(rgb2gray(image.permute(1, 2, 0).numpy())) for image in inputs])
    np.testing.assert_allclose(edges.numpy(), by_skimage, atol=1e-6)


def test_bottom_up_runs_have_their_own_settings_and_share_only_the_original(model):
    from eea_repro.sanity.randomization import settings_model
    from eea_repro.sanity.runs import parse_setting, run_label, setting_name

    assert [setting_name("bottom_up", level) for level in (1, 2, 3)] == ["original", "bottom_up-2", "bottom_up-3"]
    assert setting_name("cascading", 2) == setting_name("independent", 2) == "cascading-2"
    assert parse_setting("bottom_up-block-3") == ("bottom_up", "block", 3)
    assert run_label("bottom_up-block") == "bottom-up cascading randomization of block layers"
    layers = randomization_layers(model, "cnn", "stage")
    sanity_cfg = {"reinit": "module", "reinit_std": 0.02}
    for ours, theirs in zip(settings_model(model, "bottom_up-3", layers, sanity_cfg, seed=7).parameters(),
                            bottom_up(model, 3, layers, reinit="module", std=0.02, seed=7).parameters()):
        assert torch.equal(ours, theirs)


def test_smooth_mprt_is_quantus_s_given_its_noise(model, images, monkeypatch):
    """Quantus's SmoothMPRT (bottom-up; abs and normalisation off, as in our comparison) with its np.random.randn
    draws recorded: our smoothed maps of the same noisy copies on its randomized models give its Spearman at every
    layer. Quantus 0.6 smooths with its own ``quantus.explain`` whatever ``explain_func`` says (here its vanilla
    gradient), so both sides explain with that. Quantus draws new noise for the reference, the original and every
    layer; ours gives an image the same noise on every model (image_noise), a deliberate difference that keeps the
    noise itself out of the comparison."""
    inputs, targets = images
    samples = 4
    draws = []
    numpy_randn = np.random.randn

    def recorded_randn(*shape):
        draws.append(numpy_randn(*shape))
        return draws[-1]

    monkeypatch.setattr(np.random, "randn", recorded_randn)
    metric = quantus.SmoothMPRT(nr_samples=samples, abs=False, normalise=False,
                                similarity_func=quantus.similarity_func.correlation_spearman,
                                disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), a_batch=None,
                    explain_func=quantus.explain, explain_func_kwargs={"method": "Gradient"}, device="cpu",
                    batch_size=len(inputs))
    monkeypatch.setattr(np.random, "randn", numpy_randn)
    levels = [("original", model), *quantus_bottom_up_models(model)]
    assert list(theirs) == [name for name, _ in levels]
    assert len(draws) == (len(levels) + 1) * (samples - 1)  # the reference, then each level

    def smoothed(net, draw_set):
        noise = torch.as_tensor(np.stack(draws[draw_set * (samples - 1):(draw_set + 1) * (samples - 1)]))

        def explain(batch, rows):
            maps = quantus.explain(net, batch.numpy(), targets[rows].numpy(), method="Gradient", device="cpu")
            return torch.as_tensor(np.asarray(maps)).reshape(len(batch), SIZE, SIZE)

        return smoothed_maps(explain, inputs, noise, noise_level=0.1, chunk=6).numpy()

    reference = smoothed(model, 0)
    for index, (name, net) in enumerate(levels, start=1):
        ours = spearman_per_image(reference, smoothed(net, index))
        np.testing.assert_allclose(ours, np.asarray(theirs[name], dtype=np.float64), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
