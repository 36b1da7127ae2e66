"""The resident memory each job declares (``resources: mem_mb``), from a model of its peak, so that
``snakemake --cores N --resources mem_mb=M`` never starts more jobs than fit in M, and a cluster job asks for what
it needs.

A job's peak is what every job process holds (Python, torch, timm and the package: about 1.1 GB, most of it the
pages of torch's libraries, more of which are mapped when the files are in the page cache), the weights it
keeps (the model, its inference copy, an explainer with its optimiser state, randomized copies: counted as
``WEIGHT_COPIES`` times the model's weights), the images of its shard, and its passes through the network. Every large
pass is bounded by the per-pass budget (:mod:`eea_repro.models.memory`): a configured count of inputs, or fewer where
they would not fit. A job's passes of different shapes leave heap fragments that the next pass cannot reuse, so a job
is counted as holding ``PASSES`` of its largest pass: the heap an earlier pass left and the pass's own. The footprint
per input is measured on the meta device (no weights, no memory) while the workflow is read, and kept with the other
preflight answers.

The constants were fitted to the peaks measured on the CI config, the embedded default and the real-photos example,
with room to spare; a job prints its own peak next to what it declared at the end of its log, and a test checks the
CI config's jobs against their declarations.
"""

from __future__ import annotations

import math

MB = 10**6
# a job process with torch, timm, numpy, pandas, scipy, matplotlib and the package imported: 1,104 MB measured with
# the libraries' files in the page cache (as after an install, or while other jobs run), 844 MB with them partly evicted
PROCESS_MB = 1300
LIGHT_JOB_MB = 1300  # tables, figures, split lists, the report: no network (profiles/default sets the same)
WEIGHT_COPIES = 20
PASSES = 2  # the largest pass, and the heap an earlier pass left
FINETUNE_WEIGHT_COPIES = 5
SCORECAM_AND_VALIDATION_INPUTS = 256  # the largest fixed counts of inference inputs per pass (Score-CAM, validation)
INTEGRATED_GRADIENT_STEPS = 128  # IG's interpolation steps per pass, under autograd
IMAGE_COPIES = 4  # a shard's (or the validation split's) images: loaded, on the device, perturbed, masked
TRAINING_PASSES = 3  # a training batch's activations, their gradients and the heap a validation pass left
TRAINING_IMAGE_COPIES = 2  # the training images, loaded and batched
# a compared map at the input size: float32 values, two float64 rankings, a float32 normalised copy and the SSIM and
# HOG temporaries of one comparison
SIMILARITY_BYTES_PER_PIXEL = 32


def model_facts(config: dict) -> dict[str, dict[str, int]]:
    """Per configured model: its weights' bytes, one input's footprint (``models.memory.Footprint``) at its input
    size, measured on the meta device, and the CPU budget per pass (so that the Snakefile need not import torch)."""
    import torch

    from eea_repro.models.memory import CPU_BUDGET_BYTES, input_footprint
    from eea_repro.models.network import ModelSpec, create_network

    facts = {}
    for name, entry in config["models"].items():
        spec = ModelSpec.from_config(entry)
        with torch.device("meta"):
            net = create_network(spec, num_classes=1000).eval()  # ImageNet's head: an upper bound for fewer classes
        footprint = input_footprint(net, spec.input_size, torch.device("meta"))
        weights = sum(tensor.numel() * tensor.element_size() for tensor in [*net.parameters(), *net.buffers()])
        facts[name] = {"weights": weights, "retained": footprint.retained, "largest": footprint.largest,
                       "image": footprint.image, "cpu_budget": CPU_BUDGET_BYTES}
    return facts


def _bounded(count: int, per_input: int, budget: int, extra_per_input: int = 0) -> int:
    """Bytes of a pass of ``count`` inputs that the code cuts to what fits in ``budget`` at ``per_input`` each (one
    at least); ``extra_per_input`` is held per input on top of what the cut counts."""
    inputs = max(1, min(count, budget // max(1, per_input)))
    return inputs * (per_input + extra_per_input)


def largest_pass_bytes(facts: dict[str, int], config: dict, budget: int) -> int:
    """The largest pass a job of this model runs, each pass being its configured count or what fits in ``budget``
    (as ``models.memory`` cuts them)."""
    inference = facts["image"] + 3 * facts["largest"]
    training = facts["retained"] + facts["image"]
    return max(
        _bounded(config["explainer"]["batch_size"], 2 * training, budget),  # explainer + explained model, autograd
        # EEA's fine-tuning: each image of a chunk also has its own copy of the weights, their gradients and AdamW's
        # two moments, and its best map's weights
        _bounded(config["finetune"]["chunk_size"], 2 * training, budget, FINETUNE_WEIGHT_COPIES * facts["weights"]),
        _bounded(config["explainer"]["batch_size"], training, budget),  # gradient map methods
        _bounded(INTEGRATED_GRADIENT_STEPS, training, budget),
        _bounded(config["metrics"]["batch_size"], inference, budget),
        _bounded(SCORECAM_AND_VALIDATION_INPUTS, inference, budget),
    )


def model_job_mb(facts: dict[str, int], config: dict, device: str) -> int:
    """mem_mb of a job that runs one model's networks (maps, metrics, the explainer, sanity checks).

    On a GPU (``device`` cuda) the passes run in device memory and the host keeps the process, the weights and the
    images; ``auto`` is counted as a CPU, which only overstates a GPU job's host memory."""
    held_images = max(config["dataset"]["shard_size"], config["explainer"]["val_count"])
    images = IMAGE_COPIES * held_images * facts["image"]
    work = 0 if device.startswith("cuda") else PASSES * largest_pass_bytes(facts, config, facts["cpu_budget"])
    return PROCESS_MB + math.ceil((WEIGHT_COPIES * facts["weights"] + images + work) / MB)


def training_job_mb(facts: dict[str, int], batch_size: int, images_held: int, device: str) -> int:
    """mem_mb of a job that trains a model's weights (the embedded model, the permuted-label model) on
    ``images_held`` images: a whole batch under autograd, as batch-norm statistics need it, with its gradients."""
    work = 0 if device.startswith("cuda") else TRAINING_PASSES * batch_size * (facts["retained"] + facts["image"])
    images = TRAINING_IMAGE_COPIES * images_held * facts["image"]
    return PROCESS_MB + math.ceil((WEIGHT_COPIES * facts["weights"] + images + work) / MB)


def similarity_job_mb(images: int, methods: int, size: int) -> int:
    """mem_mb of a job comparing the sanity maps (no network): every method's reference maps of ``images`` images
    at the ``size`` x ``size`` input, and one level's maps at a time."""
    return LIGHT_JOB_MB + math.ceil(images * (methods + 1) * size * size * SIMILARITY_BYTES_PER_PIXEL / MB)
