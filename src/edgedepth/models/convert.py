"""Converters from other projects' checkpoints and our own to our weights format.

A foreign checkpoint's layout is recognised from its keys (:mod:`edgedepth.models.layouts`: the seed's, FastDepth's,
ZipDepth's, MiDaS v2.1 small's, Depth Anything V2's). Each layout is a table of key prefixes (theirs -> ours) onto a
registered network built to compute exactly what the original network computed, so conversion is renaming plus
strict checks: a missing, unexpected or reshaped tensor is an error that names it. A transformers folder
(``save_pretrained``) of Depth Anything V2 converts too. Our own files need no renaming: a training checkpoint
(``checkpoint.pt`` of ``edgedepth train``) names its model in its saved config, and a plain ``state_dict()`` of a
model is converted with the model name given (``--model``); a ``.safetensors`` of ours, card and all, needs no
conversion and is refused with its model's name. Files are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never pickled code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder
from edgedepth.models.checkpoints import (
    describe_keys,
    fitting_models,
    is_own_state_dict,
    load_checkpoint,
    model_hint,
    training_checkpoint,
    unwrap_state_dict,
)
from edgedepth.models.layouts import LAYOUTS, SourceLayout
from edgedepth.models.registry import DepthNetwork, create_model
from edgedepth.models.weights import read_card, save_weights

#: BatchNorm's step counter, absent from checkpoints of PyTorch < 0.4.1 and unused in eval mode.
_OPTIONAL_SUFFIX = "num_batches_tracked"
#: ``converted_from`` of a converted ``checkpoint.pt`` of ``edgedepth train`` and of a plain student state dict.
TRAINING_CHECKPOINT = "edgedepth_training_checkpoint"
OWN_STATE_DICT = "edgedepth_state_dict"
#: ``converted_from`` of a transformers ``save_pretrained`` folder, and the weights file name it is written with.
TRANSFORMERS_FOLDER = "transformers_folder"
_WEIGHTS = "model.safetensors"


def detect_layout(keys: Iterable[str], what: str = "checkpoint") -> SourceLayout:
    """The layout whose signature prefixes all appear among ``keys``."""
    keys = list(keys)
    layout = next((layout for layout in LAYOUTS if layout.matches(keys)), None)
    if layout is not None:
        return layout
    supported = "; ".join(f"{layout.title} ({layout.keys})" for layout in LAYOUTS)
    raise EdgedepthError(
        f"{what}: not a layout edgedepth can convert (found {describe_keys(keys)}); supported: {supported}"
    )


def _swap_prefix(key: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    return next((new + key[len(old) :] for old, new in pairs if key.startswith(old)), None)


def key_mapping(keys: Iterable[str], layout: SourceLayout, what: str = "checkpoint") -> dict[str, str]:
    """``{their key: our key}`` for every key not ignored by ``layout``; a key it does not know is an error."""
    mapping = {}
    card_keys = {key for key, _ in layout.card_tensors}
    for key in keys:
        if key.startswith(layout.ignored) or key in card_keys:
            continue
        ours = _swap_prefix(key, layout.prefixes)
        if ours is None:
            raise EdgedepthError(f"{what}: unexpected key {key!r} for {layout.title}")
        mapping[key] = ours
    return mapping


def _fit(
    model: DepthNetwork, state: Mapping[str, torch.Tensor], layout: SourceLayout, what: str
) -> dict[str, torch.Tensor]:
    """Rename ``state`` to ``model``'s keys and check that it fills the model exactly, shape for shape."""
    mapping = key_mapping(state, layout, what)
    expected = model.state_dict()
    renamed = {ours: state[theirs] for theirs, ours in mapping.items()}
    name = model.card.name
    unknown = sorted(set(renamed) - set(expected))
    if unknown:
        theirs = _swap_prefix(unknown[0], ((new, old) for old, new in layout.prefixes))
        raise EdgedepthError(f"{what}: {len(unknown)} tensors that {layout.title} does not have (e.g. {theirs})")
    missing = [key for key in expected if key not in renamed and not key.endswith(_OPTIONAL_SUFFIX)]
    if missing:
        theirs = _swap_prefix(missing[0], ((new, old) for old, new in layout.prefixes))
        raise EdgedepthError(f"{what}: {len(missing)} tensors of {layout.title} are missing (e.g. {theirs})")
    for theirs, ours in mapping.items():
        if renamed[ours].shape != expected[ours].shape:
            raise EdgedepthError(
                f"{what}: {theirs} has shape {tuple(renamed[ours].shape)}, but {layout.title} ({name}) has "
                f"{tuple(expected[ours].shape)} there (only the unmodified network converts, not a pruned one)"
            )
    return {key: renamed.get(key, value) for key, value in expected.items()}


def _card_facts(state: Mapping[str, torch.Tensor], layout: SourceLayout, what: str) -> dict[str, Any]:
    """The card fields a layout keeps in tensors (ZipDepth's normalisation buffers), three values each."""
    facts: dict[str, Any] = {}
    for key, field in layout.card_tensors:
        if key not in state:
            raise EdgedepthError(f"{what}: 1 tensors of {layout.title} are missing (e.g. {key})")
        if state[key].numel() != 3:
            raise EdgedepthError(f"{what}: {key} has shape {tuple(state[key].shape)}, but {layout.title} has (1, 3, 1, 1)")
        # The buffers hold decimals such as 0.485 in float32; 7 significant digits give the decimals back.
        facts[field] = tuple(float(f"{float(v):.7g}") for v in state[key].flatten())
    return facts


def convert_layout(state: Mapping[str, torch.Tensor], layout: SourceLayout, what: str,
                   model_name: str | None = None) -> DepthNetwork:
    """The registered network a checkpoint of ``layout`` becomes, with its weights (eval mode).

    ``model_name`` (``--model``), when given, must be the network the layout resolves to.
    """
    name, args = layout.resolution(state, what)
    if model_name is not None and model_name != name:
        raise EdgedepthError(
            f"{what}: holds {layout.title}, which converts to {name}, not --model {model_name}; "
            f"drop --model: edgedepth convert {what} OUT.safetensors"
        )
    facts = _card_facts(state, layout, what)
    source = layout.split(state) if layout.split is not None else state
    if layout.through_transformers:
        renamed = {ours: source[theirs] for theirs, ours in key_mapping(source, layout, what).items()}
        return _through_transformers(renamed, name, what)
    model = create_model(name, card=facts, **args)
    model.load_state_dict(_fit(model, source, layout, what))
    return model.eval()


def _through_transformers(state: Mapping[str, torch.Tensor], name: str, what: str) -> DepthNetwork:
    """Tensors named as transformers publishes them, loaded by transformers' own loader into ``name``'s network.

    They are written with the network's config as a ``save_pretrained`` folder, which
    :func:`convert_transformers_folder` reads strictly.
    """
    from safetensors.torch import save_file

    from edgedepth.models.depth_anything import DepthAnythingV2

    with tempfile.TemporaryDirectory(prefix="edgedepth-convert-") as folder:
        network = create_model(name)
        assert isinstance(network, DepthAnythingV2)  # the layouts loaded through transformers are Depth Anything's
        network.network.config.save_pretrained(folder)
        save_file({key: tensor.clone().contiguous() for key, tensor in state.items()}, str(Path(folder) / _WEIGHTS))
        return convert_transformers_folder(folder, name, what)


def _named(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _load_own(model: DepthNetwork, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load a student's own state dict strictly: every missing, unexpected or reshaped tensor is named."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and not key.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in state
        if key in expected and state[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(keys)} {label} ({_named(keys)})"
        for label, keys in (
            ("missing tensors", missing), ("unexpected tensors", unexpected), ("tensors of another shape", wrong)
        )
        if keys
    ]
    if problems:
        name = model.card.name
        raise EdgedepthError(f"{what}: does not fit model {name!r}: {'; '.join(problems)}")
    model.load_state_dict({key: state.get(key, value) for key, value in expected.items()})


def _fromtraining_checkpoint(
    state: Mapping[str, Any], config: Mapping[str, Any], model_name: str | None, what: str
) -> DepthNetwork:
    """The student a training checkpoint trained, with the card its ``final.safetensors`` would have."""
    from edgedepth.core.sizes import SIZE_MULTIPLE, parse_size

    section = config["model"]
    name, args = section.get("name"), section.get("args") or {}
    if not isinstance(name, str) or not isinstance(args, Mapping):
        raise EdgedepthError(f"{what}: its saved config has no usable model.name/model.args (not from edgedepth train?)")
    if model_name is not None and model_name != name:
        raise EdgedepthError(
            f"{what}: a training checkpoint of {name!r} (from its saved config), not of --model {model_name!r}; "
            f"drop --model: edgedepth convert {what} OUT.safetensors"
        )
    size = (config.get("data") or {}).get("input_size")
    try:
        card = {"input_size": parse_size(str(size), SIZE_MULTIPLE)} if size is not None else None
    except EdgedepthError as exc:
        raise EdgedepthError(f"{what}: saved config data.input_size: {exc}") from exc
    model = create_model(name, card=card, **args)
    _load_own(model, unwrap_state_dict(state, what), what)
    return model


def _convert(checkpoint: Any, what: str, model_name: str | None = None) -> tuple[DepthNetwork, str]:
    """The network in ``checkpoint`` (eval mode) and what it was converted from (for the provenance)."""
    training = training_checkpoint(checkpoint)
    if training is not None:
        return _fromtraining_checkpoint(*training, model_name, what).eval(), TRAINING_CHECKPOINT
    state = unwrap_state_dict(checkpoint, what)
    if not is_own_state_dict(state):
        layout = detect_layout(state, what)
        return convert_layout(state, layout, what, model_name), layout.name
    if model_name is None:
        raise EdgedepthError(
            f"{what}: a state dict of an edgedepth model ({describe_keys(state)}), which does not record "
            f"which model it is; name it with --model: {model_hint(state, what)}"
        )
    model = create_model(model_name)
    try:
        _load_own(model, state, what)
    except EdgedepthError as exc:
        fitting = [name for name in fitting_models(state) if name != model_name]
        if not fitting:
            raise
        command = f"edgedepth convert {what} OUT.safetensors --model {fitting[0]}"
        raise EdgedepthError(f"{exc}; its tensors fit {fitting[0]}: {command}") from exc
    return model.eval(), OWN_STATE_DICT


def convert_state_dict(checkpoint: Mapping[str, Any], model: str | None = None) -> DepthNetwork:
    """Build our student from a state dict or training checkpoint in memory; eval mode.

    The seed's and FastDepth's layouts are recognised from their keys; a training checkpoint of
    ``edgedepth train`` names its model; a plain state dict of one of our students needs ``model``.
    """
    return _convert(checkpoint, "state dict", model)[0]


def convert_checkpoint(in_path: str | Path, out_path: str | Path, model: str | None = None,
                       provenance: Mapping[str, Any] | None = None) -> ModelCard:
    """Convert a ``.pth``/``.pt`` file to our ``.safetensors`` weights (written atomically).

    Accepted: the seed's or FastDepth's state dict or training checkpoint, a ``checkpoint.pt`` of
    ``edgedepth train``, and a plain ``state_dict()`` of one of our students when ``model`` names it.
    ``provenance`` adds to what the file records of its source (a release's URL, hash and licence).
    Our own weights are a one-line EdgedepthError: they are used as they are.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    card = _own_weights_card(in_path)
    if card is not None:
        raise EdgedepthError(f"{in_path}: already edgedepth weights of {card.name} (its card is in the file), which "
                             f"need no conversion; use it as it is: --weights {in_path}")
    if out_path.suffix.lower() != ".safetensors":
        raise EdgedepthError(f"{out_path}: the output must be a .safetensors file")
    if out_path.is_dir():
        raise EdgedepthError(f"{out_path}: a folder, not a file; choose another output file name")
    check_output_folder(out_path.parent)
    extra = dict(provenance or {})
    if in_path.is_dir():
        converted = convert_transformers_folder(in_path, model)
        save_weights(converted, out_path, source=in_path.name, converted_from=TRANSFORMERS_FOLDER, **extra)
        return converted.card
    checkpoint = load_checkpoint(in_path)
    converted, source = _convert(checkpoint, str(in_path), model)
    recorded: dict[str, Any] = {"source": in_path.name, "converted_from": source}
    training = training_checkpoint(checkpoint)
    if training is not None:
        recorded.update(_training_provenance(checkpoint, training[1]))
    save_weights(converted, out_path, **recorded, **extra)
    return converted.card


def _own_weights_card(path: Path) -> ModelCard | None:
    """The card of ``path`` where it is already our weights (a ``.safetensors`` carrying our card), else None: any
    other file, a foreign ``.safetensors`` included, goes on to be converted (or refused for what it is)."""
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    try:
        return read_card(path)
    except EdgedepthError:
        return None


def convert_transformers_folder(
    folder: str | Path, model_name: str | None = None, what: str | None = None
) -> DepthNetwork:
    """Depth Anything V2 Small or Base from a transformers ``save_pretrained`` folder, loaded strictly (eval mode).

    transformers reads the folder (its config, its weights in any of its formats, older names mapped by its own
    conversion rules); every tensor must land: a missing, unexpected or reshaped one is an error, where
    ``from_pretrained`` alone would leave random weights. ``what`` names the source in messages (default: the folder).
    """
    from transformers import AutoConfig, DepthAnythingForDepthEstimation

    from edgedepth.models.depth_anything import DepthAnythingV2, variant_of_config
    from edgedepth.models.hub import from_pretrained

    folder = Path(folder)
    what = what or str(folder)
    if not (folder / "config.json").is_file():
        raise EdgedepthError(f"{what}: a folder, not a file; a folder converts only as a transformers model saved "
                             "with save_pretrained, and its config.json is missing")
    config = from_pretrained(AutoConfig, str(folder), "config")
    variant = variant_of_config(config)
    if variant is None:
        raise EdgedepthError(
            f"{folder}: a transformers {config.model_type!r} model, not Depth Anything V2 Small or Base for relative "
            f"depth; other transformers depth models run as teachers: --teacher hf:{folder}"
        )
    name = f"depth_anything_v2_{variant}"
    if model_name is not None and model_name != name:
        raise EdgedepthError(f"{what}: holds {name}, not --model {model_name}; drop --model")
    network, info = from_pretrained(DepthAnythingForDepthEstimation, str(folder), "weights", output_loading_info=True)
    problems = [f"{len(keys)} {label} (e.g. {keys[0] if isinstance(keys[0], str) else keys[0][0]})"
                for label, keys in (("missing tensors", sorted(info["missing_keys"])),
                                    ("unexpected tensors", sorted(info["unexpected_keys"])),
                                    ("tensors of another shape", sorted(info["mismatched_keys"]))) if keys]
    if problems:
        raise EdgedepthError(f"{what}: its weights do not fit {name}: {'; '.join(problems)}")
    model = create_model(name)
    assert isinstance(model, DepthAnythingV2)  # name is depth_anything_v2_<variant>
    model.network.load_state_dict(network.state_dict())
    return model.eval()


def _training_provenance(checkpoint: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``final.safetensors`` of the same run records about its training, as far as the checkpoint knows."""
    position = _section(checkpoint, "position")
    data, optim, run = (_section(config, key) for key in ("data", "optim", "run"))
    return {
        "training_data": data.get("path"),
        "run_dir": run.get("dir"),
        "steps": position.get("step"),
        "epochs_done": position.get("epoch"),
        "loss": optim.get("loss"),
        "config": dict(config),
    }


def _section(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``mapping[key]`` where it is a mapping, else an empty one."""
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}
