"""Cost of one training step for student-only, pixel KD and SSTKD, measured side by side in one run.

    python benchmarks/distillation_step.py                                   # CPU-sized default networks
    python benchmarks/distillation_step.py --preset paper --height 512 --width 512 --batch 8    # SSTKD's protocol
    python benchmarks/distillation_step.py --preset cirkd --height 512 --width 1024 --batch 16  # CIRKD's (GPU)

Prints forward+backward time (median of --steps after --warmup), the activation memory kept for backward
(CPU: bytes of tensors saved by autograd; CUDA: peak allocated), and ratios to the pixel-KD step; also the
time of each texture loss alone. The teacher's forward pass is part of every KD step.

``--flops`` adds the roofline columns: each step's FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``
(forward + backward, the teacher's forward included; the teacher's forward alone as its own row), the achieved
GFLOP/s, and its share of the machine's peak measured in the same run: the best of a large matmul and a 3x3
convolution in the step's precision (fp32 on CPU, bf16 with ``--bf16`` or on CUDA), which the report names.
``--compile`` runs both networks through ``torch.compile``; ``--json PATH`` writes every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sstkd.distill.losses import build_criterion
from sstkd.models.segmenter import build_network

# The published weights, in every preset: a step costs the same at any weight (conf/converged trains the selected).
METHODS = {
    "student_only": {"cross_entropy": {}},
    "pixel_kd": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}},
    "sstkd": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}, "adversarial": {"weight": 0.1},
              "structural": {"weight": 1.0}, "statistical": {"weight": 1.0}},
    "cirkd": {"cross_entropy": {}, "pixel_kd": {"weight": 1.0}, "cirkd": {"weight": 1.0}},
    "cwd": {"cross_entropy": {}, "channelwise": {"weight": 3.0, "temperature": 4.0}},
    "sstkd_recompute": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}, "adversarial": {"weight": 0.1},
                        "structural": {"weight": 1.0, "recompute": True},
                        "statistical": {"weight": 1.0, "recompute": True}},
}
NETWORKS = {
    "cpu": ({"head": "deeplabv3", "backbone": "resnet18", "output_stride": 16, "head_channels": 128},
            {"head": "pspnet", "backbone": "resnet10", "output_stride": 16, "head_channels": 64}),
    # The networks of `--env converged` (issue 19: a ResNet-50 teacher, the CPU student), at its 96-px crops.
    "converged": ({"head": "deeplabv3", "backbone": "resnet50", "output_stride": 16, "head_channels": 128},
                  {"head": "pspnet", "backbone": "resnet10", "output_stride": 16, "head_channels": 64}),
    # The networks of `--env cityscapes` (SSTKD's protocol) and `--env cityscapes_cirkd` (CIRKD's).
    "paper": ({"head": "pspnet", "backbone": "resnet101_deep", "head_channels": 512, "dilation_scheme": "torchvision"},
              {"head": "pspnet", "backbone": "resnet18_deep", "head_channels": 512, "dilation_scheme": "torchvision"}),
    "cirkd": ({"head": "deeplabv3", "backbone": "resnet101_deep", "head_channels": 256,
               "dilation_scheme": "torchvision"},
              {"head": "deeplabv3", "backbone": "resnet18_deep", "head_channels": 128, "dilation_scheme": "torchvision"}),
}


class SavedActivations:
    """Counts bytes of tensors autograd saves for backward (CPU proxy for activation memory)."""

    def __init__(self):
        self.bytes = 0

    def pack(self, tensor):
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def measure(method, losses, teacher, student, images, masks, args, device):
    criterion = build_criterion(losses, 19, student.low_level_channels, teacher.low_level_channels,
                                student_head_channels=student.head_channels,
                                teacher_head_channels=teacher.head_channels).to(device)
    params = list(student.parameters()) + criterion.student_side_parameters()
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    critic = criterion.adversarial
    critic_optimizer = torch.optim.Adam(critic.discriminator.parameters(), 1e-4) if critic else None
    autocast = _autocast(device, args)
    batch = {"images": images, "masks": masks}
    times, memory, flops = [], 0, None
    for step in range(args.warmup + args.steps):
        counter = FlopCounterMode(display=False) if args.flops and step == 0 else nullcontext()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with counter:
            with SavedActivations() as saved, autocast:
                teacher_out = None
                if criterion.needs_teacher:
                    with torch.no_grad():
                        teacher_out = teacher(images)
                out = student(images)
                total, _ = criterion(out, teacher_out, batch)
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        # the critic's update (WGAN-GP: a double backward, which FlopCounterMode's module hooks cannot follow) is
        # timed with the step but not counted: the count is a lower bound for adversarial rows
        if critic is not None:
            with autocast:
                critic_loss = critic.discriminator_loss(out, teacher_out, batch)
            critic_loss.backward()
            critic_optimizer.step()
            critic_optimizer.zero_grad(set_to_none=True)
        if isinstance(counter, FlopCounterMode):
            flops = counter.get_total_flops()
            continue  # the counting step is slower: it is not timed
        if device.type == "cuda":
            torch.cuda.synchronize()
            memory = torch.cuda.max_memory_allocated()
        else:
            memory = saved.bytes
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times), memory, flops


def _autocast(device, args):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext()


def teacher_forward(teacher, images, args, device):
    """The teacher's forward alone: (median seconds, FLOPs)."""
    autocast = _autocast(device, args)
    with torch.no_grad(), autocast, FlopCounterMode(display=False) as counter:
        teacher(images)
    times = []
    for step in range(args.warmup + args.steps):
        _synchronize(device)
        started = time.perf_counter()
        with torch.no_grad(), autocast:
            teacher(images)
        _synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times), counter.get_total_flops()


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_peak(device, bf16: bool, repeats: int = 5) -> tuple[float, str]:
    """FLOP/s of the best of a large matmul and two 3x3 convolutions (a wide-and-small one as in a network's deep
    stages, a narrow-and-large one as in its stem) in the step's precision, measured now: (FLOP/s, which kernel and
    dtype won). The deep-stage shape matters on CPU: with bf16 a teacher's forward ran at 112% of the stem-shaped
    convolution alone."""
    dtype = torch.bfloat16 if bf16 or device.type == "cuda" else torch.float32
    size = 4096 if device.type == "cuda" else 2048
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    kernels = {f"{size}x{size} matmul": (lambda: a @ b, 2 * size**3)}
    shapes = [(256, 56, 32), (512, 28, 32)] if device.type == "cuda" else [(64, 112, 16), (256, 28, 16)]
    for channels, side, batch in shapes:
        x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
        w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype)
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
        kernels[f"3x3 conv {channels}ch {batch}x{side}x{side}"] = (
            partial(torch.nn.functional.conv2d, x, w, padding=1), 2 * batch * channels * channels * 9 * side * side)
    best, label = 0.0, ""
    for name, (kernel, flops) in kernels.items():
        kernel()
        for _ in range(repeats):
            _synchronize(device)
            started = time.perf_counter()
            kernel()
            _synchronize(device)
            rate = flops / (time.perf_counter() - started)
            if rate > best:
                best, label = rate, f"{name}, {str(dtype).removeprefix('torch.')}"
    return best, label


def texture_terms(teacher, student, images, masks, args, device):
    """Time of each texture loss alone (forward + backward), on the networks' real stage-1 features."""
    with torch.no_grad():
        teacher_out = teacher(images)
    results = {}
    for name in ("structural", "statistical", "adversarial"):
        criterion = build_criterion({name: {}}, 19, student.low_level_channels, teacher.low_level_channels).to(device)
        times = []
        for step in range(args.warmup + args.steps):
            out = student(images)
            detached = type(out)(*(t.detach().requires_grad_() if t is not None else None for t in out))
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            total, _ = criterion(detached, teacher_out, {"images": images, "masks": masks})
            total.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - started)
        results[name] = statistics.median(times)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(NETWORKS), default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--bf16", action="store_true", help="CPU: bf16 autocast + channels_last (training.cpu_bf16)")
    parser.add_argument("--flops", action="store_true", help="count FLOPs; achieved GFLOP/s and %% of peak")
    parser.add_argument("--compile", action="store_true", help="both networks through torch.compile")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher_config, student_config = NETWORKS[args.preset]
    teacher = build_network(teacher_config, 19).to(device).eval()
    student = build_network(student_config, 19).to(device).train()
    channels_last = device.type == "cuda" or args.bf16
    if channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
        student = student.to(memory_format=torch.channels_last)
    images = torch.randn(args.batch, 3, args.height, args.width, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if args.compile:
        teacher, student = torch.compile(teacher), torch.compile(student)
    masks = torch.randint(0, 19, (args.batch, args.height, args.width), device=device)
    precision = "bf16" if device.type == "cuda" or args.bf16 else "fp32"
    print(f"device {device}, preset {args.preset}, batch {args.batch}, crop {args.height}x{args.width}, "
          f"threads {torch.get_num_threads()}, {precision}{', channels_last' if channels_last else ''}"
          f"{', torch.compile' if args.compile else ''}")
    results = {m: measure(m, METHODS[m], teacher, student, images, masks, args, device) for m in args.methods}
    if args.flops:
        seconds, flops = teacher_forward(teacher, images, args, device)
        results["teacher_forward"] = (seconds, 0, flops)
    reference = "pixel_kd" if "pixel_kd" in results else next(iter(results))
    base_time, base_memory, _ = results[reference]
    memory_label = "peak CUDA MiB" if device.type == "cuda" else "saved-for-backward MiB"
    peak, peak_kernel = measured_peak(device, args.bf16) if args.flops else (None, "")
    header = f"{'method':16s} {'step ms':>9s} {'img/s':>8s} {'x ' + reference:>11s} {memory_label:>24s}"
    if args.flops:
        header += f" {'GFLOP/step':>11s} {'GFLOP/s':>9s} {'% of peak':>10s}"
    print(header)
    report = {"device": str(device), "preset": args.preset, "batch": args.batch, "crop": [args.height, args.width],
              "threads": torch.get_num_threads(), "precision": precision, "compile": args.compile, "methods": {}}
    for method, (seconds, memory, flops) in results.items():
        line = (f"{method:16s} {1000 * seconds:9.1f} {args.batch / seconds:8.1f} {seconds / base_time:11.3f} "
                f"{memory / 2**20:24.1f}")
        report["methods"][method] = {"ms": 1000 * seconds, "images_per_s": args.batch / seconds,
                                     "memory_mib": memory / 2**20}
        if args.flops and flops:
            line += f" {flops / 1e9:11.2f} {flops / seconds / 1e9:9.1f} {100 * flops / seconds / peak:9.1f}%"
            report["methods"][method] |= {"gflop": flops / 1e9, "gflop_per_s": flops / seconds / 1e9,
                                          "percent_of_peak": 100 * flops / seconds / peak}
        print(line)
    if args.flops:
        print(f"peak: {peak / 1e9:.1f} GFLOP/s, the best of {peak_kernel} (measured in this run)")
        report["peak_gflop_per_s"], report["peak_kernel"] = peak / 1e9, peak_kernel
    terms = texture_terms(teacher, student, images, masks, args, device)
    sstkd = results.get("sstkd", (None,))[0]
    print("texture terms alone (forward + backward, ms):",
          ", ".join(f"{k} {1000 * v:.1f}" + (f" ({100 * v / sstkd:.0f}% of the SSTKD step)" if sstkd else "")
                    for k, v in terms.items()))
    report["texture_terms_ms"] = {k: 1000 * v for k, v in terms.items()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
