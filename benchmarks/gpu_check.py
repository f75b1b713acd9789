"""The first thing to run on a machine with a CUDA GPU: one command, about 8 minutes, everything it measured
written under ``benchmarks/results/gpu/`` (``--out``). ``--dry-run`` runs the same code paths at tiny sizes on the
CPU in a minute or two (CI runs it), so the real run is not the first time this code runs.

    bash benchmarks/gpu_check.sh                 # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run --out /tmp/gpu-dry-run [--project <a clone>]   # a clone: its own lock, store

Steps, each timed, each result in its own file and one line in ``summary.md``:

1. ``facts.json``: the compute facts every model records (torch, CUDA, cuDNN, GPU, CPU ISA, threads) and
   ``nvidia-smi`` when present;
2. ``tests.txt``: the CUDA-only tests (skipped on a CPU) and the texture modules' tests;
3. ``step_<preset>[_compile].json``: ``distillation_step.py`` for the paper presets (512x1024, bf16, channels_last):
   ms/step, peak memory, FLOPs and % of the GPU's bf16 peak measured in the same run, for pixel KD, SSTKD with and
   without ``recompute`` and CIRKD; ``torch.compile`` off and on; and for ``--env converged``'s networks at its
   96-px crops, with what a student's schedule there (120 epochs, 2400 steps) costs (issue 19's study, ~20 h a dataset on an AVX2 CPU);
4. ``cityscapes_sstkd.json``: the SSTKD method through the real ``kedro run --env cityscapes`` on generated
   full-size Cityscapes-layout images, 300 iterations (loss falls, no non-finite value, images/s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """A console script beside this python3 or, where packages were installed with ``--target``, on PATH."""
    return shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}") or name


def _run(command: list[str], log: Path, timeout: float, env: dict | None = None,
         cwd: Path = ROOT) -> tuple[int, float]:
    started = time.perf_counter()
    with log.open("w") as stream:
        try:
            code = subprocess.run(command, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout,
                                  env=dict(os.environ, **(env or {}))).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - started


def facts(out: Path) -> str:
    import torch

    from sstkd.tracking import compute_facts

    record = compute_facts() | {"cuda_available": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        record |= {"gpu_memory_gib": f"{properties.total_memory / 2**30:.1f}",
                   "compute_capability": f"{properties.major}.{properties.minor}"}
    (out / "facts.json").write_text(json.dumps(record, indent=1))
    if shutil.which("nvidia-smi"):
        (out / "nvidia-smi.txt").write_text(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
    return ", ".join(f"{k} {v}" for k, v in record.items())


def tests(out: Path, dry_run: bool) -> str:
    selection = ["tests/distill/test_contourlet.py", "-k", "cuda"] if dry_run else ["tests/distill"]
    code, seconds = _run([_tool("pytest"), "-q", "-rs", "-p", "no:cacheprovider", *selection],
                         out / "tests.txt", timeout=300)
    last = (out / "tests.txt").read_text().strip().splitlines()[-1:] or ["(no output)"]
    return f"exit {code} in {seconds:.0f} s: {last[0]}"


def steps(out: Path, dry_run: bool) -> list[str]:
    lines = []
    if dry_run:
        runs = [("cpu", ["--height", "48", "--width", "48", "--batch", "2", "--steps", "1", "--warmup", "1",
                         "--methods", "pixel_kd", "sstkd"], False)]
    else:
        methods = ["--methods", "pixel_kd", "sstkd", "sstkd_recompute", "cirkd"]
        runs = [("paper", ["--height", "512", "--width", "1024", "--batch", "8", *methods], False),
                ("paper", ["--height", "512", "--width", "1024", "--batch", "8", *methods], True),
                ("cirkd", ["--height", "512", "--width", "1024", "--batch", "16", *methods], False),
                # issue 19's converged study, ~20 h a dataset on an AVX2 CPU: what a GPU makes of it
                ("converged", ["--methods", "student_only", "pixel_kd", "cwd", "sstkd"], False)]
    for preset, options, compiled in runs:
        name = f"step_{preset}{'_compile' if compiled else ''}"
        command = [sys.executable, "benchmarks/distillation_step.py", "--preset", preset, *options, "--flops",
                   "--json", str(out / f"{name}.json"), *(["--compile"] if compiled else [])]
        code, seconds = _run(command, out / f"{name}.txt", timeout=240)
        if code != 0:
            lines.append(f"{name}: exit {code} after {seconds:.0f} s (see {name}.txt)")
            continue
        report = json.loads((out / f"{name}.json").read_text())
        cells = [f"{method} {values['ms']:.0f} ms, {values['memory_mib']:.0f} MiB"
                 + (f", {values['percent_of_peak']:.0f}% of peak" if "percent_of_peak" in values else "")
                 for method, values in report["methods"].items()]
        lines.append(f"{name} ({report['precision']}, peak {report.get('peak_gflop_per_s', 0):.0f} GFLOP/s): "
                     + "; ".join(cells))
        if preset == "converged":  # the teacher's forward is in every KD step, as without the teacher cache
            epochs, steps = converged_student_schedule()
            lines.append(f"{name}, a {epochs}-epoch student's {steps} steps: " + "; ".join(
                f"{method} {steps * values['ms'] / 1000:.0f} s" for method, values in report["methods"].items()))
    return lines


def converged_student_schedule() -> tuple[int, int]:
    """A baseline student's epochs and SGD steps under ``conf/converged``, as committed."""
    from sstkd.config import student_settings
    from sstkd.config_loading import project_config_loader
    from sstkd.training.loop import optimizer_steps_per_epoch

    params = project_config_loader(ROOT / "conf", "converged")["parameters"]
    distillation = params["distillation"]
    config = student_settings(params["training"], distillation.get("student"),
                              (distillation.get("methods") or {}).get("baseline"), "baseline", 0)[2]
    return config.epochs, config.epochs * optimizer_steps_per_epoch(params["synthetic"]["splits"]["train"], config)


def write_cityscapes_layout(root: Path, size: tuple[int, int], train: int, val: int) -> None:
    """Texture-mosaic scenes saved in Cityscapes' official layout (labelIds PNGs, 19 evaluated classes)."""
    import numpy as np
    from PIL import Image

    from sstkd.data.sources import CITYSCAPES_LABEL_TO_TRAIN
    from sstkd.data.synthetic import MosaicSpec, render_mosaic

    height, width = size
    spec = MosaicSpec(seed=11, image_size=height)  # square scenes side by side: a 1:2 frame, rendered fast
    to_label_id = np.zeros(256, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        to_label_id[train_id] = label_id
    for split, count, city in (("train", train, "aachen"), ("val", val, "frankfurt")):
        for index in range(count):
            first = 2 * index + (0 if split == "train" else 100_000)
            halves = [render_mosaic(spec, first + half) for half in range(-(-width // height))]
            image = np.concatenate([h[0] for h in halves], axis=1)[:, :width]
            mask = np.concatenate([h[1] for h in halves], axis=1)[:, :width]
            stem = f"{city}_{index:06d}_000019"
            for folder, array in (("leftImg8bit", image), ("gtFine", to_label_id[mask])):
                suffix = "leftImg8bit" if folder == "leftImg8bit" else "gtFine_labelIds"
                path = root / folder / split / city / f"{stem}_{suffix}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)


def cityscapes_run(out: Path, dry_run: bool, project: Path) -> str:
    size, train, val = ((64, 128), 8, 2) if dry_run else ((1024, 2048), 24, 4)
    data = out / "cityscapes_layout"
    shutil.rmtree(data, ignore_errors=True)
    write_cityscapes_layout(data, size, train, val)
    iterations, batch = (8, 2) if dry_run else (300, 8)  # the dry run: two epochs, so a loss can fall
    steps_per_epoch = max(1, train // batch)
    epochs = math.ceil(iterations / steps_per_epoch)
    study = out / "cityscapes_study"
    shutil.rmtree(study, ignore_errors=True)
    training = {"epochs": epochs, "batch_size": batch, "validate_every": max(1, epochs // 4)}
    params = {"dataset_root": str(data), "data_root": str(study), "study": {"seeds": [0]},
              "teacher": {"network": {"backbone_weights": "random"}, "training": {"epochs": 1}},
              "distillation": {"run": ["sstkd"], "student": {"network": {"backbone_weights": "random"}}},
              "training": training}
    if dry_run:
        training |= {"crop_size": [32, 32], "num_workers": 0}
        params["teacher"]["training"] |= {"crop_size": [32, 32]}  # the env's teacher has its own 512x512
        params |= {"data": {"workers": 2}, "preprocessing": {"workers": 2}}
    # a run config file (`kedro run --config`): --params cannot carry a list with commas
    run_config = out / "cityscapes_run.yml"
    run_config.write_text(json.dumps({"run": {"env": "cityscapes", "pipelines": "data,teacher,distillation",
                                              "params": params}}, indent=1))  # JSON is YAML
    code, seconds = _run([_tool("kedro"), "run", "--config", str(run_config)], out / "cityscapes_sstkd.txt",
                         timeout=420, env={"TQDM_DISABLE": "1"}, cwd=project)
    history_file = study / "07_model_output" / "histories" / "sstkd" / "seed_0.json"
    if code != 0 or not history_file.is_file():
        return f"exit {code} after {seconds:.0f} s (see cityscapes_sstkd.txt)"
    history = json.loads(history_file.read_text())
    losses = [epoch["loss"] for epoch in history]
    result = {"iterations": epochs * steps_per_epoch, "image_size": list(size), "seconds": seconds,
              "first_loss": losses[0], "last_loss": losses[-1], "all_finite": all(map(math.isfinite, losses)),
              "images_per_second": sum(e["images_per_second"] for e in history) / len(history)}
    (out / "cityscapes_sstkd.json").write_text(json.dumps(result, indent=1))
    falls = "loss falls" if losses[-1] < losses[0] else "LOSS DOES NOT FALL"
    return (f"{result['iterations']} iterations on {size[0]}x{size[1]} images in {seconds:.0f} s: loss "
            f"{losses[0]:.3f} -> {losses[-1]:.3f} ({falls}), {'all finite' if result['all_finite'] else 'NON-FINITE'}, "
            f"{result['images_per_second']:.1f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the same code paths in minutes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    parser.add_argument("--project", type=Path, default=ROOT,
                        help="the Kedro project the cityscapes run uses (its run lock and MLflow store)")
    args = parser.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("Error: no CUDA GPU here (torch.cuda.is_available() is False): run it on the GPU machine, "
                         "or with --dry-run to try the code paths on this CPU")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = [f"# GPU check {'(dry run, CPU)' if args.dry_run else ''} {time.strftime('%Y-%m-%d %H:%M')}", ""]
    started = time.perf_counter()
    for title, step in (("facts", lambda: facts(out)), ("tests", lambda: tests(out, args.dry_run)),
                        ("step benchmark", lambda: steps(out, args.dry_run)),
                        ("kedro run --env cityscapes, SSTKD",
                         lambda: cityscapes_run(out, args.dry_run, args.project.resolve()))):
        begun = time.perf_counter()
        try:
            result = step()
        except Exception as error:  # noqa: BLE001 - one failed step must not hide the others' numbers
            result = f"FAILED: {type(error).__name__}: {error}"
        lines = result if isinstance(result, list) else [result]
        summary += [f"- **{title}** ({time.perf_counter() - begun:.0f} s): {lines[0]}", *[f"  - {x}" for x in lines[1:]]]
        print(summary[-1 - len(lines[1:])], *[f"  - {x}" for x in lines[1:]], sep="\n", flush=True)
    summary += ["", f"total {time.perf_counter() - started:.0f} s"]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print(f"total {time.perf_counter() - started:.0f} s; everything is in {out}")
    if any("FAILED" in line or "exit " in line and "exit 0" not in line for line in summary):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
