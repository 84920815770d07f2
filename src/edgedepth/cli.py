"""The ``edgedepth`` command line: each subcommand parses its arguments and calls one function of its module.

Errors meant for users (:class:`EdgedepthError`) become one line on stderr and exit status 2; anything
unexpected becomes one line and status 1. ``EDGEDEPTH_DEBUG=1`` shows the traceback of either, with the exception a
user error was raised from.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.extras import EXTRA_OF, missing
from edgedepth.core.logs import configure_logging
from edgedepth.core.version import __version__

if TYPE_CHECKING:
    from edgedepth.robot.metric_scale import MetricConfig

C = TypeVar("C")


#: Each command's one-line help: the top-level --help lists them without importing the commands' modules.
COMMAND_HELP = {
    "predict": "predict inverse depth for images, a folder, a glob or a video",
    "convert": "convert a PyTorch checkpoint (.pth, .pt) to edgedepth .safetensors",
    "eval": "score models: eval nyu (NYU Depth v2's .mat files, the seed's protocol) or eval zeroshot (NYUv2, "
        "KITTI, ETH3D, ScanNet, DIODE)",
    "train": "distil a teacher's inverse depth into a student (resumable; torchrun for DDP)",
    "synth": "render synthetic indoor scenes with exact depth (JPEG + 16-bit depth PNG)",
    "demo": "the whole pipeline on synthetic scenes, end to end in minutes on a CPU",
    "export": "export a student to ONNX, OpenVINO IR or TorchScript (FP32 or INT8)",
    "bench": "latency, FPS and memory of students and peers over runtimes, side by side",
    "label": "label images with a teacher's inverse depth into tar shards (resumable; torchrun)",
    "serve": "serve a model over HTTP: POST an image, get its inverse depth",
    "models": "list every registered network: size, cost, default input, where its weights are",
    "prune": "NetAdapt: prune fastdepth_v3 or a fastdepth_<timm encoder> to a latency measured on a runtime (resumable)",
}


#: What each command cannot start without beyond the runtime's own packages (``pip install edgedepth``): its
#: extra is named when it is missing (:mod:`edgedepth.core.extras`). predict, serve and models need none.
COMMAND_NEEDS = {"convert": "torch", "eval": "torch", "train": "torch", "synth": "h5py", "demo": "torch",
                 "export": "torch", "bench": "torch", "label": "torch", "prune": "torch"}


def _size(text: str) -> tuple[int, int]:
    """``--size WxH``: positive sides; which sides a network takes is its card's rule (checked when it loads)."""
    from edgedepth.core.sizes import parse_size

    try:
        return parse_size(text)
    except EdgedepthError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _size_or_default(text: str) -> tuple[int, int] | str:
    """``bench --size``: ``WxH``, or ``default`` for each network's own input."""
    return text if text == "default" else _size(text)


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls``: the one source of a command's defaults."""
    declared = {f.name: f for f in dataclasses.fields(cls)}[name]
    if declared.default_factory is not dataclasses.MISSING:
        return declared.default_factory()
    return declared.default


def _shown(value: Any) -> str:
    """A default as the user would type it."""
    from edgedepth.core.sizes import format_size

    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(side, int) for side in value):
        return format_size(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def _option(p: argparse.ArgumentParser | Any, cls: type, name: str, *flags: str, help: str, **kwargs: Any) -> None:
    """A flag for field ``name`` of ``cls``: not given is ``None`` (the dataclass's default then applies), and the
    help ends with that default, so the two cannot drift apart."""
    shown = kwargs.pop("shown", None) or _shown(_default(cls, name))
    if "choices" not in kwargs:
        kwargs.setdefault("metavar", flags[0].lstrip("-").upper().replace("-", "_"))
    p.add_argument(*flags, dest=name, default=None, help=f"{help} (default: {shown})", **kwargs)


def _from_args(cls: type[C], args: argparse.Namespace, **values: Any) -> C:
    """``cls`` from the flags the user gave (attributes named as its fields; ``None``: not given) and ``values``."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
             if f.init and getattr(args, f.name, None) is not None}
    return cls(**{**given, **values})


def _pixel_limit(text: str) -> int:
    """``--max-image-pixels``: a whole number of pixels, 0 for no limit."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of pixels (width x height), 0 for no limit")
    return value


def _add_pixel_limit(p: argparse.ArgumentParser) -> None:
    from edgedepth.core.imageio import DEFAULT_MAX_IMAGE_PIXELS

    p.add_argument("--max-image-pixels", type=_pixel_limit, default=DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
                   help="refuse images with more pixels (width x height), a guard against decompression bombs; "
                   f"0: no limit (default: {DEFAULT_MAX_IMAGE_PIXELS}, Pillow's)")


def _metric_config(args: argparse.Namespace) -> MetricConfig:
    """``predict``'s metric flags as one config, checked (a missing flag is named before any model loads)."""
    from edgedepth.robot.geometry import parse_intrinsics
    from edgedepth.robot.metric_scale import MetricConfig, check_config

    cfg = _from_args(MetricConfig, args,
                     intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None)
    check_config(cfg, live=args.video is not None or args.camera is not None)
    return cfg


def _cmd_predict(args: argparse.Namespace) -> int:
    from edgedepth.core.imageio import is_bag
    from edgedepth.predict import images as predict

    if args.weights is None:
        raise EdgedepthError(predict.MISSING_WEIGHTS_HINT)
    bags = [source for source in args.sources if is_bag(source)]
    if bags and len(args.sources) > 1:
        raise EdgedepthError(f"{bags[0]}: a ROS 2 bag is predicted on its own; give it as the only input")
    if bags:
        return _predict_bag(args)
    bag_flags = [flag for flag, value in (("--topic", args.topic), ("--depth-mm", args.depth_mm),
                                          ("--sync-tolerance", args.sync_tolerance)) if value]
    if bag_flags:
        raise EdgedepthError(f"{bag_flags[0]} is for ROS 2 bags: give a .mcap or .db3 file or a bag folder as the input")
    metric = _metric_config(args)
    if args.video is not None or args.camera is not None:
        return _predict_video(args)
    if not args.sources:
        raise EdgedepthError("nothing to predict: pass an image, folder, glob or video, or --video FILE / --camera N")
    cfg = _from_args(predict.PredictConfig, args, sources=tuple(args.sources), metric=metric)
    summary = predict.run(cfg)
    skipped = f", skipped {summary.skipped} (see warnings)" if summary.skipped else ""
    print(
        f"predicted {summary.processed} image(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s; model loaded in {summary.load_seconds:.1f} s) "
        f"-> {cfg.out}{skipped}"
    )
    return 0


def _predict_bag(args: argparse.Namespace) -> int:
    """``predict BAG``: :func:`edgedepth.predict.bags.run` (needs the [ros] extra: rosbags)."""
    from edgedepth.core.extras import require
    from edgedepth.robot.geometry import parse_intrinsics
    from edgedepth.robot.metric_scale import MetricConfig

    require("rosbags", "reading ROS 2 bags")
    from edgedepth.predict import bags

    if args.video is not None or args.camera is not None:
        raise EdgedepthError("pass one source: a bag as the input, or --video FILE / --camera N")
    metric = _from_args(MetricConfig, args,
                        intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None)
    cfg = _from_args(bags.BagConfig, args, source=Path(args.sources[0]), metric=metric, millimetres=args.depth_mm)
    summary = bags.run(cfg)
    written = ", ".join(f"{topic} ({count})" for topic, count in summary.topics.items())
    unfitted = f"; {summary.without_metric} frame(s) without metric depth (see warnings)" if summary.without_metric else ""
    print(f"bag: {summary.frames} frame(s) in {summary.seconds:.1f} s, {summary.fps:.1f} FPS (network on "
          f"{summary.threads} thread(s)); wrote {written}{unfitted} -> {summary.out}")
    return 0


def _predict_video(args: argparse.Namespace) -> int:
    """``predict --video FILE | --camera N``: :func:`edgedepth.predict.video.run`."""
    from edgedepth.predict import video

    if args.sources or (args.video is not None and args.camera is not None):
        raise EdgedepthError("pass one source: an input argument, --video FILE or --camera N")
    cfg = _from_args(video.VideoConfig, args, source=args.video if args.video is not None else args.camera)
    summary = video.run(cfg)
    per_frame = 1e3 / summary.frames
    stabilized = f" (stabilise {summary.stabilize_seconds * per_frame:.2f} ms of it)" if cfg.stabilize else ""
    print(
        f"video: {summary.frames} frame(s) in {summary.seconds:.1f} s, {summary.fps:.1f} FPS end to end; per frame: "
        f"network {summary.model_seconds * per_frame:.1f} ms, read + pre-process {summary.read_seconds * per_frame:.1f} "
        f"ms and upsample + colour + output {summary.post_seconds * per_frame:.1f} ms{stabilized} in their own threads; "
        f"the loop adds {summary.overhead:.0%} to the network's time (network on {summary.threads} thread(s))"
        + (f" -> {cfg.out}" if cfg.out else "")
    )
    return 0


def _add_weights(p: argparse.ArgumentParser, *, required: bool, runtime: bool = False, many: bool = False,
                 what: str = "student weights (.safetensors) or an export (.onnx, .xml, .pt)", each: str = "") -> None:
    """``--weights FILE`` or ``--model NAME`` (released weights by name, from the cache), and with ``runtime``
    ``--runtime`` for a named model; :func:`_resolve_named_weights` turns a name into the file."""
    from edgedepth.core.releases import RELEASES
    from edgedepth.runtime.runtimes import RUNTIMES

    nargs = "+" if many else None
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--weights", type=Path, nargs=nargs, metavar="FILE", help=what + (f", {each}" if each else ""))
    group.add_argument("--model", nargs=nargs, metavar="NAME", choices=list(RELEASES),
                       help=f"released weights by name ({', '.join(RELEASES)}): downloaded, verified and converted "
                       "once into the cache ($EDGEDEPTH_CACHE, else ~/.cache/edgedepth)" + (f", {each}" if each else ""))
    if runtime:
        p.add_argument("--runtime", choices=list(RUNTIMES),
                       help="with --model: the runtime to run it on (default: torch); its export is built once into "
                       "the cache (INT8 calibrated on scenes the package renders, or --calib)")
        p.add_argument("--calib", type=Path, metavar="SOURCE", help="with --model and an INT8 --runtime: calibration "
                       "images (a folder, a list file or shards) instead of the package's rendered scenes")
    p.set_defaults(named_weights="with-runtime" if runtime else "file")


def _resolve_named_weights(args: argparse.Namespace) -> None:
    """``--model NAME [--runtime R]`` becomes ``--weights`` the cached file (built first if missing); an export's
    ``--size`` is the size it is built at, so the file is then run at its own."""
    from edgedepth.pretrained.resolve import model_file

    with_runtime = args.named_weights == "with-runtime"
    runtime, calib = (args.runtime, args.calib) if with_runtime else (None, None)
    if args.model is None:
        if runtime is not None or calib is not None:
            raise EdgedepthError(f"{'--runtime' if runtime is not None else '--calib'} goes with --model NAME; a "
                                 "--weights file runs on the runtime its suffix names")
        return
    names = args.model if isinstance(args.model, list) else [args.model]
    size = getattr(args, "size", None)
    files = [model_file(name, runtime, size, calib) for name in names]
    args.weights = files if isinstance(args.model, list) else files[0]
    if runtime is not None and runtime != "torch" and size is not None:
        args.size = None


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from edgedepth.core.sizes import DEFAULT_INPUT_SIZE
    from edgedepth.predict.images import PredictConfig
    from edgedepth.robot.metric_scale import MetricConfig

    p = sub.add_parser("predict", help=COMMAND_HELP["predict"])
    p.add_argument("sources", nargs="*", metavar="input",
                   help="images, folders (searched recursively) and quoted globs, or one video file or ROS 2 bag; "
                   "outputs are named by each image's path in its folder (a_jpg, a_png where names clash; the same "
                   "name from two folders is an error: predict those apart with different --out)")
    p.add_argument("--video", help="real-time loop over a video file (colour-mapped depth, FPS overlay)")
    p.add_argument("--camera", type=int, metavar="N", help="real-time loop over camera N (e.g. 0)")
    p.add_argument("--show", action="store_true", help="with --video/--camera: show the loop in a window (q quits)")
    p.add_argument("--limit", type=int, help="with --video/--camera: stop after N frames")
    p.add_argument("--threads", type=int, help="threads for the network, any runtime (default: every core this "
                   "process may use; in the video loop its idle threads sleep, so the loop's stages get the cores)")
    _add_weights(p, required=False, runtime=True)
    _option(p, PredictConfig, "out", "--out", type=Path,
            help="output folder; with --video/--camera, the .mp4 file to write (there: none unless given)")
    _option(p, PredictConfig, "size", "--size", type=_size, help="network input WIDTHxHEIGHT",
            shown=f"the model's, e.g. {_shown(DEFAULT_INPUT_SIZE)}")
    _option(p, PredictConfig, "device", "--device", help="cpu or cuda")
    p.add_argument("--npy", dest="save_npy", action="store_true", help="also write the raw float32 prediction as .npy")
    bags = p.add_argument_group("ROS 2 bags (an .mcap or .db3 file or a bag folder as the input; needs edgedepth[ros])")
    bags.add_argument("--topic", help="the image topic to read (Image or CompressedImage; default: the bag's only "
                      "one); depth goes to <its namespace>/depth/...")
    bags.add_argument("--depth-mm", action="store_true",
                      help="with --metric: metric depth as 16UC1 millimetres (0 = none) instead of 32FC1 metres (NaN)")
    bags.add_argument("--sync-tolerance", type=float, metavar="S",
                      help="with --metric /depth/topic: seconds between an image's stamp and its depth's (default: "
                      "0.05)")
    p.add_argument("--stabilize", action="store_true",
                   help="videos: align each frame to a running estimate and blend it in, so depth does not flicker")
    metric = p.add_argument_group("metric depth and point clouds")
    metric.add_argument("--metric", metavar="FROM",
                        help="fit each frame's scale and shift to metres from points.json (pixels with known depth), "
                        "a sparse depth map (.npy in m, 16-bit .png in mm, 0 = missing) or ground (the floor under a "
                        "camera at --camera-height); writes NAME.metric.png (mm), .npy (m) and .json (the fit); for a "
                        "bag, also a depth topic of it (/lidar/depth: 32FC1 m or 16UC1 mm), matched by stamp")
    metric.add_argument("--camera-height", type=float, metavar="H", help="--metric ground: metres from floor to camera")
    _option(metric, MetricConfig, "pitch_deg", "--pitch", type=float, metavar="DEG",
            help="--metric ground: degrees the camera looks below the horizontal")
    _option(metric, MetricConfig, "roll_deg", "--roll", type=float, metavar="DEG",
            help="--metric ground: degrees the image's right side dips")
    metric.add_argument("--intrinsics", metavar="FX,FY,CX,CY", help="the camera's pinhole intrinsics in pixels, at the "
                        "image's resolution")
    metric.add_argument("--fov", type=float, metavar="DEG",
                        help="instead of --intrinsics: horizontal field of view (square pixels, centred)")
    metric.add_argument("--pointcloud", action="store_true",
                        help="also write NAME.ply: coloured points in metres, camera frame (needs --metric and a "
                        "camera)")
    _option(metric, MetricConfig, "max_depth", "--max-depth", type=float, metavar="M",
            help="metric depth beyond this is no depth: 0 in the maps, no point")
    _add_pixel_limit(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_convert(args: argparse.Namespace) -> int:
    from edgedepth.models import convert

    card = convert.convert_checkpoint(args.input, args.output, args.model)
    print(f"converted {args.input} ({card.name}) -> {args.output}")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help=COMMAND_HELP["convert"])
    p.add_argument("input", type=Path, help="a state dict or training checkpoint of the seed or FastDepth, a "
                   "checkpoint.pt of edgedepth train, or a state_dict() of an edgedepth student (with --model)")
    p.add_argument("output", type=Path, help="where to write the .safetensors weights")
    p.add_argument("--model", metavar="NAME",
                   help="the student a plain state_dict() was saved from, e.g. fastdepth_v3 (not recorded in it)")
    p.set_defaults(func=_cmd_convert)


#: The benchmarks ``edgedepth eval`` scores on, each its own command.
EVAL_BENCHMARKS = {
    "nyu": "a model on NYU Depth v2's official .mat files, the seed's protocol by default (or a variant)",
    "zeroshot": "models on the zero-shot benchmark: NYUv2, KITTI, ETH3D, ScanNet and DIODE from Marigold's tars",
}


def _cmd_eval_nyu(args: argparse.Namespace) -> int:
    """``eval nyu``: :func:`edgedepth.eval.nyu.run`."""
    from edgedepth.eval import nyu
    from edgedepth.eval.config import EvalConfig, make_protocol

    models = [*(args.weights or []), *(args.teacher or []), *([args.baseline] if args.baseline else [])]
    if len(models) > 1:
        raise EdgedepthError("--weights, --teacher and --baseline name the one model eval nyu scores; pass one "
                             "(eval zeroshot takes several)")
    protocol = make_protocol(args.protocol or "seed", ground_truth=args.gt, alignment=args.align, crop=args.crop)
    cfg = _from_args(EvalConfig, args, weights=args.weights[0] if args.weights else None,
                     teacher=args.teacher[0] if args.teacher else None, protocol=protocol)
    summary = nyu.run(cfg)
    print(summary.table, end="")
    skipped = f", skipped {summary.skipped} (see warnings)" if summary.skipped else ""
    print(
        f"evaluated {summary.evaluated} image(s) in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s){skipped} -> {cfg.out}"
    )
    return 0


def _named_paths(values: list[str] | None, flag: str, datasets: tuple[str, ...]) -> dict[str, Path]:
    """``NAME=PATH`` values of ``flag`` (``PATH`` alone when one set is evaluated) as ``{name: path}``."""
    from edgedepth.data.marigold import EVAL_SETS

    named: dict[str, Path] = {}
    for value in values or []:
        name, separator, path = value.partition("=")
        if not (separator and name in EVAL_SETS):
            if len(datasets) != 1:
                raise EdgedepthError(f"{flag} {value}: say which set it is for, e.g. {flag} nyu={value}")
            name, path = datasets[0], value
        if name in named:
            raise EdgedepthError(f"{flag}: {name} given twice")
        named[name] = Path(path).expanduser()
    return named


def _cmd_eval_zeroshot(args: argparse.Namespace) -> int:
    """``eval zeroshot``: :func:`edgedepth.eval.zeroshot.run`."""
    from edgedepth.data.marigold import EVAL_SETS
    from edgedepth.eval import zeroshot
    from edgedepth.eval.config import ZeroShotConfig

    datasets = tuple(name.strip() for name in args.datasets.split(",")) if args.datasets else tuple(EVAL_SETS)
    cfg = _from_args(
        ZeroShotConfig, args, archives=_named_paths(args.tar, "--tar", datasets),
        split_files=_named_paths(args.split_file, "--split-file", datasets), datasets=datasets,
        weights=tuple(args.weights or ()), teachers=tuple(args.teacher or ()),
        baselines=(args.baseline,) if args.baseline else (), predictions=tuple(args.predictions or ()),
        nyu_mat=args.data, nyu_splits=args.splits,
    )
    summary = zeroshot.run(cfg)
    print(summary.table, end="")
    skipped = f", skipped {summary.skipped} (see warnings)" if summary.skipped else ""
    saved = f"; predictions in {cfg.save_predictions}" if cfg.save_predictions else ""
    print(f"zero-shot suite: {summary.scored} sample score(s) in {summary.seconds:.1f} s{skipped} -> {cfg.out}{saved}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=COMMAND_HELP["eval"], description="Score models on a benchmark: "
                       + "; ".join(f"eval {name}: {what}" for name, what in EVAL_BENCHMARKS.items()) + ".")
    benchmarks = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    _add_eval_nyu(benchmarks)
    _add_eval_zeroshot(benchmarks)


def _add_eval_nyu(benchmarks: argparse._SubParsersAction) -> None:
    from edgedepth.core.sizes import DEFAULT_INPUT_SIZE
    from edgedepth.data.nyu import NYU_CROPS
    from edgedepth.eval.config import EvalConfig
    from edgedepth.eval.metrics import ALIGNMENTS

    p = benchmarks.add_parser("nyu", help=EVAL_BENCHMARKS["nyu"])
    p.add_argument("--data", type=Path, help="nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    p.add_argument("--splits", type=Path, help="splits.mat with trainNdxs / testNdxs")
    _add_weights(p, required=False, runtime=True, many=True)
    p.add_argument("--teacher", metavar="SPEC", nargs="+", help="a teacher instead: hf:, midas:, onnx: or an alias")
    p.add_argument("--baseline", choices=["ramp", "constant"],
                   help="a model-free baseline: ramp = inverse depth rising towards the bottom row (the positional "
                   "prior a model must beat), constant = the ground truth's median (oracle)")
    p.add_argument("--config", dest="config_file", type=Path, help="the seed's config.yaml (nyu_data_path, "
                   "nyu_split_path, best_model, height, width); command-line flags win over it")
    _option(p, EvalConfig, "size", "--size", type=_size, help="network input WIDTHxHEIGHT",
            shown=f"the model's, e.g. {_shown(DEFAULT_INPUT_SIZE)}")
    p.add_argument("--protocol", help="named protocol: seed (default), adjusted by --gt, --align, --crop")
    p.add_argument("--gt", choices=["rawDepths", "depths"], help="ground truth (seed: rawDepths)")
    p.add_argument("--align", choices=ALIGNMENTS, help="alignment of the prediction (seed: lsq-disparity)")
    p.add_argument("--crop", choices=list(NYU_CROPS), help="evaluation crop (seed: seed = rows 45:471, cols 41:601)")
    _option(p, EvalConfig, "split", "--split", choices=["test", "train"], help="which split")
    p.add_argument("--limit", type=int, help="score only the first N frames of the split")
    _option(p, EvalConfig, "batch_size", "--batch-size", type=int, help="frames per forward pass")
    p.add_argument("--training-data", help="text for the table's training-data column (default: from the weights)")
    _option(p, EvalConfig, "out", "--out", type=Path, help="output folder")
    _option(p, EvalConfig, "device", "--device", help="cpu or cuda")
    p.set_defaults(func=_cmd_eval_nyu)


def _add_eval_zeroshot(benchmarks: argparse._SubParsersAction) -> None:
    from edgedepth.eval.config import ZeroShotConfig

    p = benchmarks.add_parser("zeroshot", help=EVAL_BENCHMARKS["zeroshot"])
    p.add_argument("--data-root", type=Path, metavar="DIR", help="Marigold's base data folder: nyuv2/"
                   "nyu_labeled_extracted.tar, kitti/kitti_eigen_split_test.tar, eth3d/eth3d.tar, scannet/"
                   "scannet_val_sampled_800_1.tar, diode/diode_val.tar (or each unpacked into a folder of that name "
                   "without .tar)")
    p.add_argument("--tar", action="append", metavar="NAME=PATH",
                   help="one set's tar or unpacked folder, instead of the one under --data-root (repeatable)")
    p.add_argument("--datasets", metavar="LIST", help="comma-separated sets (default: nyu,kitti,eth3d,scannet,diode)")
    p.add_argument("--split-file", action="append", metavar="NAME=PATH",
                   help="one set's sample list in Marigold's format, instead of the shipped one (repeatable)")
    _add_weights(p, required=False, runtime=True, many=True, each="one row each")
    p.add_argument("--teacher", metavar="SPEC", nargs="+", help="teachers: hf:, midas:, onnx: or an alias, one row each")
    p.add_argument("--baseline", choices=["ramp"],
                   help="the model-free baseline: inverse depth rising towards the bottom row")
    p.add_argument("--predictions", type=Path, nargs="+", metavar="DIR",
                   help="folders of saved predictions in Marigold's layout (<set>/<path>/pred_<id>.npy), one row each")
    p.add_argument("--prediction-kind", choices=["depth", "disparity"],
                   help="what --predictions hold: depth (affine-invariant, e.g. Marigold's; aligned in depth) or "
                        "disparity (inverse depth; aligned in disparity) (default: their edgedepth_predictions.json)")
    p.add_argument("--save-predictions", type=Path, metavar="DIR",
                   help="write each model's raw predictions as DIR/<model>/<set>/<path>/pred_<id>.npy, which "
                        "Marigold's script/depth/eval.py scores")
    _option(p, ZeroShotConfig, "protocol", "--protocol",
            help="whose evaluator to follow where they differ: marigold or zipdepth")
    p.add_argument("--alignment-max-res", type=int, metavar="N",
                   help="fit scale and shift on a nearest-neighbour subsample at most N wide, as Marigold's "
                        "--alignment_max_res (default: the protocol's, 1024 on ETH3D for marigold; 0: full size)")
    p.add_argument("--data", type=Path, help="nyu_depth_v2_labeled.mat: adds the seed's NYU .mat column (with --splits)")
    p.add_argument("--splits", type=Path, help="splits.mat with trainNdxs / testNdxs, for that column")
    _option(p, ZeroShotConfig, "size", "--size", type=_size, help="network input WIDTHxHEIGHT", shown="each model's")
    p.add_argument("--limit", type=int, help="score only the first N samples of each set")
    _option(p, ZeroShotConfig, "out", "--out", type=Path, help="output folder")
    _option(p, ZeroShotConfig, "device", "--device", help="cpu or cuda")
    p.set_defaults(func=_cmd_eval_zeroshot)


def _old_eval_spelling(argv: Sequence[str]) -> str | None:
    """The ``eval`` command as it was spelled before its benchmarks became commands (``eval --data ...``, ``eval
    --suite zero-shot ...``), rewritten: the line that tells the user; None for any other command line."""
    words = list(argv)
    if _command(words) != "eval":
        return None
    rest = words[words.index("eval") + 1:]
    if not rest or rest[0] in (*EVAL_BENCHMARKS, "-h", "--help"):
        return None
    suite_only = ("--suite", "--data-root", "--tar", "--datasets", "--split-file", "--predictions",
                  "--prediction-kind", "--save-predictions", "--alignment-max-res")
    zeroshot = any(word.split("=")[0] in suite_only for word in rest)
    kept: list[str] = []
    skip = False
    for word in rest:
        if skip:
            skip = False
        elif word == "--suite":
            skip = True
        elif not word.startswith("--suite="):
            kept.append(word)
    new = " ".join(["edgedepth eval", "zeroshot" if zeroshot else "nyu", *kept])
    return f"edgedepth eval takes the benchmark first: {new}"


def _cmd_train(args: argparse.Namespace) -> int:
    from edgedepth.core.config import load_config
    from edgedepth.train import loop as train
    from edgedepth.train.config import TrainConfig

    overrides = [*args.overrides, *(["run.resume=true"] if args.resume else [])]
    result = train.run(load_config(TrainConfig, args.config, overrides))
    if result.weights is not None:  # rank 0 only under torchrun
        state = "finished" if result.complete else "stopped (schedule.max_steps); rerun to continue"
        print(f"trained {result.steps} step(s), {state} ({result.images_per_second:.1f} images/s) -> {result.weights}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=COMMAND_HELP["train"])
    p.add_argument("--config", type=Path, help="YAML training config (default: the seed's recipe)")
    p.add_argument("--resume", action="store_true", help="insist on resuming: fail if run.dir has no checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=3e-4 data.path=DIR")
    p.set_defaults(func=_cmd_train)


def _cmd_synth(args: argparse.Namespace) -> int:
    from edgedepth.data import synthetic

    if args.sequence is not None:
        for flag, given in (("--nyu-mat", args.nyu_mat), ("--nyu-tar", args.nyu_tar)):
            if given:
                raise EdgedepthError(f"{flag} writes scenes, not a sequence: drop it or use --count N")
        done = synthetic.write_sequence(args.out, args.sequence, args.size, args.seed)
        state = f"rendered in {done.seconds:.1f} s" if done.rendered else "already there"
        print(f"synth: sequence of {done.frames} frame(s) {state} -> {args.out} ({synthetic.SEQUENCE_VIDEO}, "
              f"{synthetic.SEQUENCE_DEPTH}/, {synthetic.CAMERAS_NAME})")
        return 0
    summary = synthetic.write_folder(args.out, args.count, args.size, args.seed, nyu_mat=args.nyu_mat,
                                     nyu_tar=args.nyu_tar)
    mat = f", NYU .mat pair with {summary.nyu_mat[0]} train / {summary.nyu_mat[1]} test" if summary.nyu_mat else ""
    if summary.nyu_tar is not None:
        mat += (f", Marigold's NYU tar {summary.nyu_tar} (score it with eval --suite zero-shot --data-root {args.out} "
                f"--datasets nyu --limit {args.count})")
    print(
        f"synth: {summary.rendered} scene(s) rendered in {summary.seconds:.1f} s "
        f"({summary.scenes_per_second:.1f} scenes/s), {summary.written} written, {summary.skipped} already there"
        f"{mat} -> {args.out}"
    )
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help=COMMAND_HELP["synth"])
    p.add_argument("out", type=Path, help="output folder: <key>.jpg beside <key>.png (depth in mm), index.json")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--count", type=int, help="number of scenes (a rerun skips those already written)")
    amount.add_argument("--sequence", type=int, metavar="N",
                        help="instead: N frames of a camera moving through one room, as video.mp4 with each frame's "
                        "exact depth (depth/<frame>.png, mm) and camera (cameras.json)")
    p.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT of the scenes (default: 640x480, NYU's)")
    p.add_argument("--seed", type=int, default=0, help="scene k of seed S is the same whatever --count (default: 0)")
    p.add_argument("--nyu-mat", action="store_true",
                   help="also write nyu_depth_v2_labeled.mat + splits.mat in the official layouts (640x480 only)")
    p.add_argument("--nyu-tar", action="store_true",
                   help="also write nyuv2/nyu_labeled_extracted.tar in Marigold's layout, scene k under the k-th name "
                        "of its NYU test list (640x480 only, at most 654 scenes)")
    p.set_defaults(func=_cmd_synth)


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgedepth.demo.config import DemoConfig
    from edgedepth.demo.run import run

    run(_from_args(DemoConfig, args))  # it prints its timings, metrics table and verdict at the end
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from edgedepth.demo.config import DemoConfig

    p = sub.add_parser("demo", help=COMMAND_HELP["demo"])
    _option(p, DemoConfig, "out", "--out", type=Path, help="output folder")
    _option(p, DemoConfig, "train_scenes", "--train-scenes", type=int,
            help="training scenes to render (the default is sized for ~10 minutes)")
    _option(p, DemoConfig, "test_scenes", "--test-scenes", type=int, help="scenes of the NYU-layout test set to render")
    _option(p, DemoConfig, "epochs", "--epochs", type=int, help="training epochs over the scenes")
    p.set_defaults(func=_cmd_demo)


def _cmd_export(args: argparse.Namespace) -> int:
    from edgedepth.export import job as export
    from edgedepth.export.config import ExportConfig

    cfg = _from_args(ExportConfig, args)
    result = export.run(cfg)
    info = result.metadata.info
    check = (f"correlation with FP32 {result.correlation:.4f}, max |diff| {result.max_abs_diff:.3g}"
             if info.precision == "int8" else f"max |diff| vs PyTorch {result.max_abs_diff:.3g}")
    quantizer = (f" by {info.quantizer} on {info.calibration_images} image(s), {info.weight_bits}-bit weights"
                 if info.quantizer else "")
    if info.quantizer_latency_ms:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in info.quantizer_latency_ms.items())
        quantizer += f", the faster here ({timings}; 1 thread)"
    print(f"exported {args.weights} -> {result.path} ({cfg.fmt}, {info.precision}{quantizer}; {check})")
    if info.float_layers:
        layers = ", ".join(f"{name} ({db:.1f} dB)" for name, db in info.float_layers.items())
        print(f"kept in floating point, as full INT8 fell below the correlation bar: {len(info.float_layers)} "
              f"layer(s) INT8 hurt most, by the signal-to-noise ratio of what they read quantised: {layers}")
    if info.int8_latency_ms is not None and info.fp32_latency_ms is not None:
        ratio = info.fp32_latency_ms / info.int8_latency_ms
        print(f"INT8 runs in {info.int8_latency_ms:.2f} ms here, FP32 in {info.fp32_latency_ms:.2f} ms (1 thread): "
              f"{ratio:.2f}x the speed of FP32")
        if ratio < 1.0:
            logging.getLogger("edgedepth.export").warning(
                "this INT8 file is slower than FP32 on this CPU; export FP32 (drop --int8) for speed here, or try "
                "the other --quantizer")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from edgedepth.export.config import ExportConfig
    from edgedepth.runtime.runtimes import EXPORT_FORMATS, FORMAT_QUANTIZERS, QUANTIZERS, SUFFIXES

    p = sub.add_parser("export", help=COMMAND_HELP["export"])
    _add_weights(p, required=True, what="student weights (.safetensors)")
    p.add_argument("--format", dest="fmt", required=True, help=", ".join(
        f"{fmt} ({SUFFIXES[fmt]}{' + .bin' if fmt == 'openvino' else ''})" for fmt in EXPORT_FORMATS))
    p.add_argument("--out", type=Path, required=True, help="output file, with the format's suffix")
    _option(p, ExportConfig, "size", "--size", type=_size, help="fixed network input WIDTHxHEIGHT", shown="the model's")
    p.add_argument("--int8", action="store_true", help="post-training static INT8; needs --calib")
    p.add_argument("--calib", type=Path, metavar="SOURCE",
                   help="calibration images: a folder (searched recursively), a list file, .tar shards or the label "
                   "shards of `edgedepth label`")
    _option(p, ExportConfig, "quantizer", "--quantizer", choices=("auto", *QUANTIZERS),
            help="INT8 tool (" + "; ".join(f"{fmt}: {' or '.join(names)}" for fmt, names in FORMAT_QUANTIZERS.items())
            + "); auto builds each of the format's and keeps the faster of those that pass the check against FP32")
    p.add_argument("--weight-bits", type=int, choices=(7, 8), help="INT8 weight precision: 7 runs on any CPU, 8 only "
                   "where INT8 dot products do not saturate (x86 VNNI or AMX, ARM dot product) (default: 8 if this CPU "
                   "has them, else 7; LiteRT: always 8; the file's metadata records it)")
    _option(p, ExportConfig, "calib_limit", "--calib-limit", type=int, help="calibration images used at most")
    p.set_defaults(func=_cmd_export)


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgedepth.bench.config import BenchConfig
    from edgedepth.bench.run import run
    from edgedepth.core.files import check_output_folder

    check_output_folder(args.out or BenchConfig.out)  # now, not after minutes of timing
    if args.files and (args.models or args.runtimes or args.size or args.weights):
        raise EdgedepthError("bench --files times each file as it was exported (its model, runtime and size): "
                             "drop --models, --weights, --runtimes and --size")
    if args.weights and args.models:
        raise EdgedepthError("bench --weights times your trained networks, --models the registry's with random "
                             "weights: give one of them")
    size = {} if args.size is None else {"size": None if args.size == "default" else args.size}
    cfg = _from_args(BenchConfig, args, files=tuple(args.files or ()), weights=tuple(args.weights or ()), **size)
    result = run(cfg)
    print(result.table, end="")
    print(f"wrote {cfg.out / 'bench.md'} and {cfg.out / 'bench.json'}")
    return 0


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list, e.g. ``--models a,b``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive whole numbers, e.g. ``--threads 1,2``."""
    try:
        counts = tuple(int(item) for item in _names(text))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers separated by commas, e.g. 1,2")
    return counts


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from edgedepth.bench.config import BenchConfig

    p = sub.add_parser("bench", help=COMMAND_HELP["bench"])
    _option(p, BenchConfig, "models", "--models", type=_names,
            help="comma-separated registry names (edgedepth models lists them)")
    _option(p, BenchConfig, "runtimes", "--runtimes", type=_names, help="comma-separated runtimes", shown="all of "
            + _shown(_default(BenchConfig, "runtimes")))
    _option(p, BenchConfig, "threads", "--threads", type=_counts, help="comma-separated thread counts",
            shown="1,2, at most the cores this process may use")
    p.add_argument("--size", type=_size_or_default,
                   help="input WIDTHxHEIGHT as each network takes it (Depth Anything: nearest multiples of 14), or "
                   f"'default' for each network's own default input (default: {_shown(_default(BenchConfig, 'size'))})")
    p.add_argument("--weights", type=Path, nargs="+", metavar="W", help="time these trained .safetensors instead of "
                   "registry networks: each runtime's file is built with the export's checks (INT8 against FP32, with "
                   "its floating-point fallback), and the table shows each INT8 file's correlation with FP32")
    p.add_argument("--files", type=Path, nargs="+", metavar="F", help="time these exported files (.onnx, .xml) "
                   "instead of registry networks, each on the runtime its metadata names; needs no PyTorch")
    _option(p, BenchConfig, "runs", "--runs", type=int, help="timed runs per cell")
    _option(p, BenchConfig, "warmup", "--warmup", type=int, help="untimed runs first")
    _option(p, BenchConfig, "out", "--out", type=Path, help="folder for bench.md, bench.json (and .png)")
    p.add_argument("--chart", action="store_true", help="also draw bench.png (bar chart of median latency)")
    p.set_defaults(func=_cmd_bench)


def _cmd_prune(args: argparse.Namespace) -> int:
    from edgedepth.prune import netadapt as prune
    from edgedepth.prune.config import PruneConfig

    result = prune.run(_from_args(PruneConfig, args))
    print(f"{result.message}; wrote {result.weights} and {result.out / prune.TRAJECTORY}")
    return 0 if result.target_met else 1


def _add_prune(sub: argparse._SubParsersAction) -> None:
    from edgedepth.prune.config import PruneConfig
    from edgedepth.runtime.runtimes import RUNTIMES

    p = sub.add_parser("prune", help=COMMAND_HELP["prune"])
    p.add_argument("--weights", type=Path, required=True,
                   help="student weights (.safetensors): fastdepth_v3 or a fastdepth_<timm encoder>")
    p.add_argument("--data", type=Path, required=True, help="label shards (edgedepth label); the last are held out")
    p.add_argument("--runtime", required=True, choices=list(RUNTIMES), help="the runtime the latency is measured on")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-ms", type=float, help="latency to reach, in ms")
    target.add_argument("--target-ratio", type=float, help="latency to reach, as a share of the start (0.5: 2x faster)")
    p.add_argument("--out", type=Path, required=True, help="folder: checkpoints, trajectory.json/.png, "
                   "pruned.safetensors; rerun into it to resume")
    _option(p, PruneConfig, "threads", "--threads", type=int, help="threads the network runs on when timed")
    _option(p, PruneConfig, "size", "--size", type=_size, help="input WIDTHxHEIGHT timed", shown="the model's")
    _option(p, PruneConfig, "step_share", "--step", type=float,
            help="latency cut per iteration, a share of the start latency")
    _option(p, PruneConfig, "short_steps", "--short-steps", type=int, help="fine-tune steps per proposal")
    _option(p, PruneConfig, "long_steps", "--long-steps", type=int, help="fine-tune steps once the target is met")
    p.set_defaults(func=_cmd_prune)


def _cmd_label(args: argparse.Namespace) -> int:
    from edgedepth.label import job as label
    from edgedepth.label.config import LabelConfig
    from edgedepth.label.recipe import Recipe

    cfg = _from_args(LabelConfig, args, recipe=_from_args(Recipe, args))
    summary = label.run(cfg)
    if summary.main:  # rank 0 only under torchrun
        print(
            f"labelled {summary.processed} image(s), skipped {summary.skipped} (see {label.SKIPPED_NAME}) in "
            f"{summary.seconds:.1f} s ({summary.images_per_second:.1f} images/s); {summary.shards_written} shard(s) "
            f"written, {summary.shards_already_done} already done; {summary.total} samples -> {cfg.out}"
        )
    return 0


def _add_label(sub: argparse._SubParsersAction) -> None:
    from edgedepth.label.config import LabelConfig
    from edgedepth.label.recipe import Recipe

    p = sub.add_parser("label", help=COMMAND_HELP["label"])
    p.add_argument("source", help="a folder of images (recursive), a text file of paths, or .tar shards (file, folder, glob)")
    p.add_argument("out", type=Path, help="output folder: shard-NNNNNN.tar, index.json, skipped.jsonl")
    p.add_argument("--teacher", required=True, metavar="SPEC", help="hf:<repo or dir>, midas:..., onnx:..., oracle, or an alias")
    _option(p, Recipe, "crop", "--crop", type=_size, help="WIDTHxHEIGHT of the random crop the teacher sees")
    _option(p, Recipe, "size", "--size", type=_size, help="WIDTHxHEIGHT of the stored image and label")
    _option(p, LabelConfig, "batch_size", "--batch", type=int, help="images per teacher call")
    _option(p, LabelConfig, "shard_size", "--shard-size", type=int, help="inputs per shard")
    _option(p, Recipe, "seed", "--seed", type=int, help="seed of the per-image random crops")
    _option(p, LabelConfig, "workers", "--workers", type=int,
            help="decoding processes, 0 = decode in the main process, at most one fewer than the cores this process "
            "may use")
    _option(p, LabelConfig, "device", "--device", help="cpu or cuda; under torchrun cuda means cuda:LOCAL_RANK")
    p.set_defaults(func=_cmd_label)


def _cmd_models(args: argparse.Namespace) -> int:
    from edgedepth.core import catalog

    entries = catalog.catalog(args.pattern)
    if not entries:
        raise EdgedepthError(f"no registered model matches {args.pattern!r}; `edgedepth models` lists them all")
    print(catalog.catalog_json(entries) if args.json else catalog.format_catalog(entries), end="\n" if args.json else "")
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=COMMAND_HELP["models"])
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern of names, e.g. 'zipdepth_*' (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_models)


def _cmd_serve(args: argparse.Namespace) -> int:
    from edgedepth.runtime.predictor import load_predictor
    from edgedepth.serve import make_server

    if not args.timeout > 0:
        raise EdgedepthError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    predictor = load_predictor(args.weights, args.size, args.device, threads=args.threads)
    server = make_server(predictor, args.host, args.port, quiet=args.quiet, timeout=args.timeout,
                         max_image_pixels=args.max_image_pixels)
    print(f"serving {predictor.name} ({predictor.runtime}) on {server.url}: open it in a browser, POST an image to "
          "/predict (?format=npy|png16|color), GET /health; Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("edgedepth serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help=COMMAND_HELP["serve"])
    _add_weights(p, required=True, runtime=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.add_argument("--size", type=_size, help="network input WIDTHxHEIGHT (default: the model's)")
    p.add_argument("--threads", type=int, help="threads for the network, any runtime (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu or cuda, for .safetensors (default: cpu)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a client that stalls this long (per read or write; for the whole body once the headers "
                   "are in) gets a 408 and is disconnected (default: 30)")
    _add_pixel_limit(p)
    p.add_argument("--quiet", action="store_true", help="no log line per successful request (failures still log one)")
    p.set_defaults(func=_cmd_serve)


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "predict": _add_predict, "convert": _add_convert, "eval": _add_eval, "train": _add_train, "synth": _add_synth,
    "demo": _add_demo, "export": _add_export, "bench": _add_bench, "label": _add_label, "serve": _add_serve,
    "models": _add_models, "prune": _add_prune,
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``edgedepth predict: error: ... (see edgedepth predict --help)``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``command`` only that command's options (the others by name and help):
    each command's options import its module for their defaults, which ``edgedepth --help`` need not wait for."""
    parser = _Parser(prog="edgedepth", description="Real-time monocular depth for embedded CPUs.")
    parser.add_argument("--version", action="version", version=f"edgedepth {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more messages on stderr (debug); before the command, e.g. edgedepth -v predict ...")
    parser.add_argument("-q", "--quiet", dest="quiet_logs", action="store_true",
                        help="warnings and errors only on stderr (progress bars stay)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in SUBCOMMANDS.items():
        if command is None or command == name:
            add(sub)
        else:
            sub.add_parser(name, help=COMMAND_HELP[name])
    return parser


def _command(argv: Sequence[str]) -> str:
    """The command ``argv`` names: its first word that is not an option ("" when there is none)."""
    return next((word for word in argv if not word.startswith("-")), "")


def _times_files(command: str, argv: Sequence[str]) -> bool:
    """``bench --files``: exported files timed on their runtimes, which needs no training framework."""
    return command == "bench" and any(arg == "--files" or arg.startswith("--files=") for arg in argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    renamed = _old_eval_spelling(argv)
    if renamed is not None:
        print(f"edgedepth: error: {renamed}", file=sys.stderr)
        return 2
    command = _command(argv)
    if command in COMMAND_NEEDS and missing(COMMAND_NEEDS[command]) and not _times_files(command, argv):
        # before its options import its modules; bench --files times exported files with their runtimes alone
        package = COMMAND_NEEDS[command]
        print(f"edgedepth: error: edgedepth {command} needs {package}, which is not installed: pip install "
              f"'edgedepth[{EXTRA_OF[package]}]'", file=sys.stderr)
        return 2
    args = build_parser(command).parse_args(argv)
    configure_logging(-1 if args.quiet_logs else args.verbose)
    try:
        if getattr(args, "named_weights", False):
            _resolve_named_weights(args)
        return int(args.func(args) or 0)
    except EdgedepthError as exc:
        if os.environ.get("EDGEDEPTH_DEBUG"):  # with its cause: the library's exception it was raised from
            raise
        print(f"edgedepth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgedepth: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen input: one line unless debugging
        if os.environ.get("EDGEDEPTH_DEBUG"):
            raise
        print(f"edgedepth: internal error: {type(exc).__name__}: {exc} (EDGEDEPTH_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
