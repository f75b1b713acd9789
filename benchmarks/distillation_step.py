"""Cost of one training step for student-only, pixel KD and SSTKD, measured side by side in one run.

    python benchmarks/distillation_step.py                                   # CPU-sized default networks
    python benchmarks/distillation_step.py --preset paper --height 512 --width 512 --batch 8    # SSTKD's protocol
    python benchmarks/distillation_step.py --preset cirkd --height 512 --width 1024 --batch 16  # CIRKD's (GPU)

Prints forward+backward time (median of --steps after --warmup), the activation memory kept for backward
(CPU: bytes of tensors saved by autograd; CUDA: peak allocated), and ratios to the pixel-KD step; also the
time of each texture loss alone. The teacher's forward pass is part of every KD step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from sstkd.distill.losses import build_criterion
from sstkd.models.segmenter import build_network

METHODS = {
    "student_only": {"cross_entropy": {}},
    "pixel_kd": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}},
    "sstkd": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}, "adversarial": {"weight": 0.1},
              "structural": {"weight": 1.0}, "statistical": {"weight": 1.0}},
    "cirkd": {"cross_entropy": {}, "pixel_kd": {"weight": 1.0}, "cirkd": {"weight": 1.0}},
    "sstkd_recompute": {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}, "adversarial": {"weight": 0.1},
                        "structural": {"weight": 1.0, "recompute": True},
                        "statistical": {"weight": 1.0, "recompute": True}},
}
NETWORKS = {
    "cpu": ({"head": "deeplabv3", "backbone": "resnet18", "output_stride": 16, "head_channels": 128},
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
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    batch = {"images": images, "masks": masks}
    times, memory = [], 0
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
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
        if critic is not None:
            with autocast:
                critic_loss = critic.discriminator_loss(out, teacher_out, batch)
            critic_loss.backward()
            critic_optimizer.step()
            critic_optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            memory = torch.cuda.max_memory_allocated()
        else:
            memory = saved.bytes
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times), memory


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
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher_config, student_config = NETWORKS[args.preset]
    teacher = build_network(teacher_config, 19).to(device).eval()
    student = build_network(student_config, 19).to(device).train()
    if device.type == "cuda":
        teacher = teacher.to(memory_format=torch.channels_last)
        student = student.to(memory_format=torch.channels_last)
    images = torch.randn(args.batch, 3, args.height, args.width, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, 19, (args.batch, args.height, args.width), device=device)
    print(f"device {device}, preset {args.preset}, batch {args.batch}, crop {args.height}x{args.width}, "
          f"threads {torch.get_num_threads()}")
    results = {m: measure(m, losses, teacher, student, images, masks, args, device) for m, losses in METHODS.items()}
    base_time, base_memory = results["pixel_kd"]
    memory_label = "peak CUDA MiB" if device.type == "cuda" else "saved-for-backward MiB"
    print(f"{'method':14s} {'step ms':>9s} {'img/s':>8s} {'x pixel_kd':>11s} {memory_label:>24s} {'x pixel_kd':>11s}")
    for method, (seconds, memory) in results.items():
        print(f"{method:14s} {1000 * seconds:9.1f} {args.batch / seconds:8.1f} {seconds / base_time:11.3f} "
              f"{memory / 2**20:24.1f} {memory / max(base_memory, 1):11.3f}")
    print("texture terms alone (forward + backward, ms):",
          ", ".join(f"{k} {1000 * v:.1f}" for k, v in texture_terms(teacher, student, images, masks, args, device).items()))


if __name__ == "__main__":
    main()
