#!/usr/bin/env bash
# Wheels for the lent GPU machine, whose own python3 (torch, numpy, pandas, pytest, ...) lacks kedro, mlflow,
# pydantic and dvc: every pin of requirements.lock that its image does not hold, for CPython 3.12, into .whl/
# (ignored; name it in the device call's `carry`, about 47 MiB of the 64 a call takes). Run here, where pip works:
#   bash benchmarks/device_wheels.sh
# then the device command of benchmarks/README.md, "On a GPU", which installs them first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Some of the packages the image holds (device KINDS.md, 2026-11-17), not to carry; torch and its CUDA libraries never travel.
on_device="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler cython einops execnet
filelock fonttools frozenlist fsspec grpcio h11 h5py httpcore httpx huggingface-hub hypothesis idna imageio
iniconfig jinja2 joblib kiwisolver markdown markdown-it-py markupsafe matplotlib mdurl multidict networkx numpy
packaging pandas pathspec pillow pip pluggy prometheus-client propcache protobuf psutil pyarrow pygments pyparsing
pyproject-hooks pytest pytest-xdist python-dateutil pyyaml regex requests rich scipy setuptools shellingham six
scikit-learn sympy tabulate threadpoolctl torch torchvision tqdm triton typer typing-extensions urllib3 werkzeug wheel wrapt
yarl zipp"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
mkdir -p .whl
failed=()
while read -r pin; do
    name=${pin%%==*}
    grep -qw -- "$name" <<<"$on_device" && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$pin" 2>/dev/null \
        || python3 -m pip wheel -q --no-deps -w .whl "$pin" 2>/dev/null \
        || failed+=("$pin")  # pure-Python sdists (antlr4-python3-runtime 4.9.3) are built into a wheel here
done < <(grep -E '^[A-Za-z0-9._-]+==' requirements.lock | grep -v -E '^(torch|torchvision|triton|ruff|uv|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==')
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/${failed:+; FAILED: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
