"""Config validation: the JSON schema plus the cross-key checks a schema cannot express, as one-line errors."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@cache
def schema() -> dict:
    """The parsed schema, read once per process (callers copy what they put into a config)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


class ConfigError(ValueError):
    """A bad config key or value; the message is one line that names the key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "required":
        return f"config key '{key}': {error.message}"
    return f"config key '{key}': {error.message}"


def fill_defaults(config: dict, node: dict | None = None) -> dict:
    """Add every key the config leaves out that the schema gives a default (the paper's protocol, mostly), in place:
    a config names only what it sets on purpose. Returns ``config``."""
    node = schema() if node is None else node
    properties = node.get("properties", {})
    dataset = config.get("dataset")
    if "dataset" in properties and isinstance(dataset, dict) and dataset.get("kind") == "imagenet":
        dataset.setdefault("imagenet", {})  # the split of the paper preset unless given (the other kinds have none)
    for key, sub in properties.items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict):
            fill_defaults(config[key], sub)
    if isinstance(node.get("additionalProperties"), dict):
        for key, value in config.items():
            if key not in properties and isinstance(value, dict):
                fill_defaults(value, node["additionalProperties"])
    return config


def redundant_keys(config: dict, node: dict | None = None, prefix: str = "") -> list[str]:
    """Keys a config sets to the schema's default (a shipped config leaves them out)."""
    node = schema() if node is None else node
    properties = node.get("properties", {})
    found = []
    for key, value in config.items():
        sub = properties.get(key, node.get("additionalProperties") if key not in properties else None)
        if not isinstance(sub, dict):
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        if "default" in sub and value == sub["default"]:
            found.append(dotted)
        elif isinstance(value, dict):
            found += redundant_keys(value, sub, dotted)
    return found


def load_config(path) -> dict:
    """A config file with the schema's defaults filled in (not validated: :func:`validate_config` does that)."""
    return fill_defaults(yaml.safe_load(Path(path).read_text()) or {})


def validate_config(config: dict, known_methods: dict[str, tuple[str, ...]] | None = None) -> None:
    """Fill in the schema's defaults (in place), then raise :class:`ConfigError` for the first problem found, before
    any job runs.

    ``known_methods`` maps each method name to the model families it supports (the method registry's view).
    """
    if isinstance(config, dict):
        fill_defaults(config)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), _key_path(e)))
    if errors:
        raise ConfigError(_describe(errors[0]))
    _check_cross_keys(config, known_methods)


def _exists(value: str) -> bool:
    """Whether a config path (``workflow:``, ``package:`` or plain) names an existing file."""
    from eea_repro.workflow.paths import resolve

    try:
        return resolve(value).exists()
    except FileNotFoundError:  # a package that is not installed
        return False


def _check_cross_keys(config: dict, known_methods: dict[str, tuple[str, ...]] | None) -> None:
    if config["numerics"] == "portable" and config["device"] == "cpu" and config["metrics"]["compile"]:
        raise ConfigError("config key 'metrics.compile': true builds code for this CPU, which numerics: portable "
                          "rules out on device: cpu; set metrics.compile: false or numerics: native")
    dataset = config["dataset"]
    kind = dataset["kind"]
    if kind not in dataset:
        raise ConfigError(f"config key 'dataset.{kind}': missing, but dataset.kind is {kind!r}")
    if kind == "folder":
        folder = dataset["folder"]
        for key in ("root", "csv", "boxes"):
            if folder[key] and not _exists(folder[key]):
                raise ConfigError(f"config key 'dataset.folder.{key}': {folder[key]} does not exist")
    if kind == "imagenet":
        for key, what in (("imagenet_dir", "image folder"), ("imagenet_labels", "label file")):
            value = config.get(key)
            if not value:
                raise ConfigError(
                    f"config key '{key}': not set; point it at the ImageNet validation {what} (--config {key}=PATH)"
                )
            if not Path(value).exists():
                raise ConfigError(f"config key '{key}': {value} does not exist")
        if not Path(config["imagenet_dir"]).is_dir() or not any(Path(config["imagenet_dir"]).iterdir()):
            raise ConfigError(f"config key 'imagenet_dir': {config['imagenet_dir']} is not a folder of images")
    for name, model in config["models"].items():
        checkpoint = model["checkpoint"]
        prefix = f"models.{name}.checkpoint"
        if checkpoint["source"] == "file":
            path = checkpoint.get("path")
            if not path:
                raise ConfigError(f"config key '{prefix}.path': required when {prefix}.source is 'file'")
            if not _exists(path):
                hint = " (is its package installed? see the README's install extras)" if path.startswith("package:") else ""
                raise ConfigError(f"config key '{prefix}.path': {path} does not exist{hint}")
        if checkpoint["source"] == "download" and not checkpoint.get("pretrained_tag"):
            raise ConfigError(f"config key '{prefix}.pretrained_tag': required when {prefix}.source is 'download'")
        if checkpoint["source"] == "train":
            if "train" not in model:
                raise ConfigError(f"config key 'models.{name}.train': required when {prefix}.source is 'train'")
            if kind != "embedded":
                raise ConfigError(f"config key '{prefix}.source': 'train' is only available for the embedded dataset")
    configured = {method for names in config["methods"].values() for method in names}
    unknown = [method for method in config["sanity"]["methods"] or [] if method not in configured]
    if unknown:
        raise ConfigError(f"config key 'sanity.methods': {unknown[0]!r} is not a configured method (methods.*)")
    for name in config["data_randomization"]["models"]:
        if name not in config["models"]:
            raise ConfigError(f"config key 'data_randomization.models': {name!r} is not a configured model")
    families = {model["family"] for model in config["models"].values()}
    for family in families:
        if family not in config["methods"]:
            raise ConfigError(f"config key 'methods.{family}': missing, but a model of family {family!r} is configured")
    if known_methods is not None:
        for family, names in config["methods"].items():
            for name in names:
                if name not in known_methods:
                    raise ConfigError(
                        f"config key 'methods.{family}': unknown method {name!r}; known: {', '.join(sorted(known_methods))}"
                    )
                if family not in known_methods[name]:
                    raise ConfigError(f"config key 'methods.{family}': method {name!r} does not support {family} models")


# --- the reference of every key (config/README.md), generated from the schema's descriptions ---------------------


def schema_keys(node: dict | None = None, prefix: str = "") -> list[tuple[str, dict]]:
    """(dotted key, schema node) of every key the schema describes, in its order; a free name (models, twins) is
    ``<name>``."""
    node = schema() if node is None else node
    keys = []
    for key, sub in node.get("properties", {}).items():
        dotted = f"{prefix}.{key}" if prefix else key
        keys.append((dotted, sub))
        keys += schema_keys(sub, dotted)
    if isinstance(node.get("additionalProperties"), dict):
        keys += schema_keys(node["additionalProperties"], f"{prefix}.<name>")
    return keys


def _values(node: dict) -> str:
    """What a key accepts, in a few words."""
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "oneOf" in node:
        return " or ".join(_values(option) for option in node["oneOf"])
    if "const" in node:
        return f"`{node['const']}`"
    kinds = node.get("type", "")
    text = " or ".join(kinds) if isinstance(kinds, list) else kinds
    bounds = [f"≥ {node['minimum']}" if "minimum" in node else "", f"> {node['exclusiveMinimum']}"
              if "exclusiveMinimum" in node else "", f"≤ {node['maximum']}" if "maximum" in node else "",
              f"< {node['exclusiveMaximum']}" if "exclusiveMaximum" in node else ""]
    return " ".join([text, *(bound for bound in bounds if bound)]).replace("null", "`null`")


def reference_markdown() -> str:
    """config/README.md: every key with what it accepts and its description, from the schema."""
    lines = ["# Configuration keys", "",
             "Generated from `src/eea_repro/workflow/config.schema.yaml` by `python -m eea_repro.workflow.config --write "
             "config/README.md`; every config is checked against that schema before any job runs. Shipped configs: "
             "`config.yaml` (the embedded default), `config/ci.yaml` (the tiny run the tests use), "
             "`config/paper.yaml` (ImageNet, the paper's models) and `config/real_photos.yaml` (six photos and a "
             "pretrained EfficientNet-Lite2). A config names only what it sets on purpose: every key with a default "
             "below (the paper's protocol where the paper has one) may be left out.", "",
             "| key | accepts | default | what it sets |", "|---|---|---|---|"]
    for key, node in schema_keys():
        description = node.get("description", "").replace("|", "\\|").replace("<", "&lt;")
        default = f"`{json.dumps(node['default'], ensure_ascii=False)}`" if "default" in node else ""
        lines.append(f"| `{key}` | {_values(node)} | {default} | {description} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m eea_repro.workflow.config", description=reference_markdown.__doc__)
    parser.add_argument("--write", metavar="PATH", help="write the reference there instead of printing it")
    args = parser.parse_args(argv)
    if args.write:
        Path(args.write).write_text(reference_markdown(), encoding="utf-8")
    else:
        print(reference_markdown(), end="")


if __name__ == "__main__":
    main()
