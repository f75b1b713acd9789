"""The study's design: which seeds every method is trained with, and the name each (method, seed) model goes by.

Seeds are a dimension of the study, not a setting of one training: every distillation method is trained once per
seed of ``study.seeds``, and the same seed gives every method the same data order, augmentation and student
initialisation, so that methods can be compared seed by seed (paired). The teacher is trained once per study.
"""

from __future__ import annotations

import re

SEED_SEPARATOR = ".seed_"
_MODEL_NAME = re.compile(r"^(?P<method>.+)\.seed_(?P<seed>\d+)$")


def model_name(method: str, seed: int) -> str:
    """``sstkd.seed_3``: the Kedro namespace, checkpoint folder and MLflow run name of one trained student."""
    return f"{method}{SEED_SEPARATOR}{seed}"


def split_model_name(name: str) -> tuple[str, int | None]:
    """``("sstkd", 3)`` for ``sstkd.seed_3``; ``(name, None)`` for a model trained once per study (the teacher)."""
    match = _MODEL_NAME.match(name)
    return (match["method"], int(match["seed"])) if match else (name, None)


def parse_seeds(value, where: str = "study.seeds") -> list[int]:
    """The seeds of ``value``: a list of non-negative integers, distinct, at least one.

    Entries may join several seeds with ``+`` (``--params "study.seeds=[0+1+2]"``), since Kedro splits ``--params``
    at commas. A bare number is refused: ``3`` reads as "three seeds" as easily as "seed 3".
    """
    text = str(value).strip()
    if not isinstance(value, list | tuple) and not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"{where}: give a list of seeds, not {value!r}: [{text}] for seed {text} alone, "
                         f"[0, 1, 2] for three seeds (on the command line: --params \"study.seeds=[0+1+2]\")")
    entries = value if isinstance(value, list | tuple) else [text]
    seeds = []
    for entry in entries:
        for part in str(entry).strip("[] ").split("+"):
            part = part.strip()
            if not part:
                continue
            if not re.fullmatch("[0-9]+", part):
                raise ValueError(f"{where}: {part!r} is not a seed; give non-negative integers, e.g. [0, 1, 2] "
                                 f"(on the command line: --params \"study.seeds=[0+1+2]\")")
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"{where}: no seed given; a study needs at least one (e.g. [0])")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where} names a seed twice: {seeds}")
    return seeds


METHOD_NAME = re.compile(r"[A-Za-z0-9_-]+")
RESERVED_NAMES = ("teacher",)


def check_method_name(name: str, where: str = "distillation.methods") -> None:
    """A method's name is a namespace and a folder: letters, digits, ``_`` and ``-`` only, and not ``teacher``.

    A dot would nest namespaces (``sstkd.v2`` would run with ``--namespaces sstkd``) and make ``a.seed_1.seed_0``
    ambiguous between the catalog and the report.
    """
    if not METHOD_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ValueError(f"{where}: method name {name!r} is not allowed; use letters, digits, '_' and '-' only "
                         f"(not {', '.join(RESERVED_NAMES)})")


def parse_method_list(value) -> list[str]:
    """``distillation.run`` as a list of names. An entry may join several with ``+``
    (``--params "distillation.run=[baseline+cwd]"``): Kedro splits ``--params`` at commas."""
    entries = [value] if isinstance(value, str) else list(value or [])
    return [name.strip() for entry in entries for name in str(entry).split("+") if name.strip()]
