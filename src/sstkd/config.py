"""Parameter schemas: every parameter group is validated once, where it enters a node, with errors that name
the key (``distillation.methods.sstkd.losses.structural.levels: ...``)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sstkd.errors import UserError
from sstkd.evaluation.sanity import SanityConfig
from sstkd.evaluation.texture_transfer import TextureTransferConfig
from sstkd.models.segmenter import NetworkConfig
from sstkd.study import parse_method_list, parse_seeds
from sstkd.training.loop import TrainingConfig
from sstkd.training.pretraining import PretrainingConfig

Schema = TypeVar("Schema", bound=BaseModel)


class ParameterError(UserError, ValueError):
    """Invalid parameters; ``problems`` holds one line per bad key (``training.epochs: ... (got 'x')``)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        UserError.__init__(self, message)
        self.problems = problems if problems is not None else [message]


def _error(problems: list[str]) -> ParameterError:
    return ParameterError("invalid parameters:\n  " + "\n  ".join(problems), problems)


def validate(schema: type[Schema], values: Any, where: str) -> Schema:
    """``schema.model_validate(values)``, re-raised as :class:`ParameterError` naming each bad key."""
    try:
        return schema.model_validate(values if values is not None else {})
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            key = ".".join([where, *(str(part) for part in problem["loc"])])
            # a whole-group check (no loc) names its keys itself: repeating the group's mapping would bury it
            got = f" (got {problem['input']!r})" if problem["type"] != "missing" and problem["loc"] else ""
            lines.append(f"{key}: {problem['msg'].removeprefix('Value error, ')}{got}")
        raise _error(lines) from None


def merged(base: dict | None, override: dict | None) -> dict:
    """``base`` updated by ``override`` one level deep (used for per-stage training overrides)."""
    return {**(base or {}), **(override or {})}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticParams(_Strict):
    seed: int = 0
    image_size: int = Field(128, ge=16)
    splits: dict[str, int] = {"train": 256, "val": 64, "test": 64}
    min_regions: int = Field(3, ge=1)
    max_regions: int = Field(7, ge=1)
    boundary_warp: float = Field(10.0, ge=0)
    sensor_noise: float = Field(0.02, ge=0)
    family: Literal["mosaics", "dead_leaves", "layered"] = "mosaics"


class IngestionParams(_Strict):
    required_splits: list[str] = ["train", "val", "test"]
    workers: int = Field(4, ge=1)


class PreprocessingParams(_Strict):
    cache_size: tuple[int, int] | None = None
    workers: int = Field(4, ge=1)


class TeacherParams(_Strict):
    network: NetworkConfig
    checkpoint: str | None = None
    # Another project's teacher file, converted into `network` (models/converters.py): `torchvision` (e.g.
    # deeplabv3_resnet101 COCO-with-VOC-labels) or `cirkd` (CIRKD's DeepLabV3); `sstkd`: this project's own.
    checkpoint_format: Literal["sstkd", "torchvision", "cirkd"] = "sstkd"
    losses: dict[str, dict[str, Any] | None] = {"cross_entropy": {"aux_weight": 0.4}}
    training: dict[str, Any] = {}


class CorpusParams(_Strict):
    """``pretraining.corpus``: the generated texture-classification corpus (``sstkd.data.texture_corpus``)."""

    seed: int = 0
    image_size: int = Field(64, ge=16)
    train_per_class: int = Field(160, ge=1)
    val_per_class: int = Field(20, ge=1)


class PretrainingParams(_Strict):
    """``pretraining``: which backbones the ``pretraining`` stage trains on the texture corpus. A network whose
    ``backbone_weights`` is ``pretrained`` starts from this stage's weights for its backbone."""

    backbones: list[str] = []
    corpus: CorpusParams = CorpusParams()
    training: PretrainingConfig = PretrainingConfig()
    checkpoint_root: str | None = None

    @field_validator("backbones")
    @classmethod
    def _backbones(cls, value):
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"names {repeated} more than once")
        return value


class StudentParams(_Strict):
    network: NetworkConfig
    training: dict[str, Any] = {}


class MethodParams(_Strict):
    description: str = ""
    losses: dict[str, dict[str, Any] | None]
    training: dict[str, Any] = {}


class EvaluationParams(_Strict):
    split: str = "test"
    sliding_window: tuple[int, int] | None = None
    window_overlap: float = Field(1 / 3, ge=0, lt=1)
    flip: bool = False
    scales: list[float] = [1.0]
    boundary_radius: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    latency_runs: int = Field(20, ge=1)
    qualitative_samples: int = Field(4, ge=1)
    device: str = "auto"
    texture_transfer: TextureTransferConfig = TextureTransferConfig()


class StudyParams(_Strict):
    """The study's seeds (every method is trained once per seed) and how its report compares methods."""

    seeds: list[int] = [0]
    confidence: float = Field(0.95, gt=0, lt=1)
    references: list[str] = ["baseline", "pixel_kd"]  # paired differences of every method to each of these
    # "<protocol>:<student>" of evaluation/published_results.yml: the report places those numbers beside ours.
    published: str | None = None
    # `required` (the paper environments): a network trained here must start from pretrained backbone weights
    # (`imagenet` or a file); `backbone_weights: random` says "from scratch" on purpose, null is refused.
    pretrained_backbones: Literal["optional", "required"] = "optional"
    # The checks the report shows before any verdict (sstkd.evaluation.sanity): convergence, teacher margin and
    # stage-1 probe, pixel KD not worse than the baseline.
    sanity: SanityConfig = SanityConfig()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value):
        return parse_seeds(value)

    @field_validator("references", mode="before")
    @classmethod
    def _references(cls, value):
        if value is not None and not isinstance(value, str | list | tuple):
            raise ValueError(f"a list of method names, got {value!r}")
        names = parse_method_list(value)  # `+` joins names on the command line, as in distillation.run
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names {repeated} more than once; each reference is compared with once")
        return names

    @field_validator("published")
    @classmethod
    def _published(cls, value):
        if value is not None:
            from sstkd.evaluation.published import parse_published

            parse_published(value)
        return value


# Every top-level parameter group and the schema its node validates it with (None: validated piecewise, e.g.
# ``distillation`` by StudentParams / MethodParams per method). A new group is one more entry here.
PARAMETER_GROUPS: dict[str, type[BaseModel] | None] = {
    "synthetic": SyntheticParams,
    "data": IngestionParams,
    "preprocessing": PreprocessingParams,
    "training": TrainingConfig,
    "teacher": TeacherParams,
    "distillation": None,
    "evaluation": EvaluationParams,
    "study": StudyParams,
    "pretraining": PretrainingParams,
    "dataset_root": None,  # a dataset env's folder (`--params dataset_root=...`), read by its catalog entry
    "use_sbd_aug": None,  # the voc env: train on SBD's VOC aug (default) or VOC's own train split
    "data_root": None,  # where this run's study lives (`--params data_root=...`; default: conf/<env>/globals.yml)
}


def check_parameter_groups(params: Mapping[str, Any]) -> None:
    """Fail on a top-level key that is not a known group (``trainig.epochs=1``), naming the closest known one.

    Nested keys are checked by each group's schema when its node starts; a top-level typo would otherwise be
    ignored silently, since no node asks for it.
    """
    lines = []
    for key in sorted(set(params) - set(PARAMETER_GROUPS)):
        close = difflib.get_close_matches(key, PARAMETER_GROUPS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known groups: {', '.join(PARAMETER_GROUPS)}"
        lines.append(f"{key}: unknown parameter group; {hint}")
    if lines:
        raise _error(lines)


def teacher_settings(training: dict | None, teacher: dict | None) -> tuple[TeacherParams, TrainingConfig]:
    params = validate(TeacherParams, teacher, "teacher")
    return params, validate(TrainingConfig, merged(training, params.training), "teacher.training")


def student_settings(training: dict | None, student: dict | None, method: dict | None, method_name: str,
                     seed: int) -> tuple[StudentParams, MethodParams, TrainingConfig]:
    """A student's network, its method and its training: shared keys, the student's, then the method's.

    The study's seed is the student's (``training.seed`` is the teacher's): it pairs the methods seed by seed.
    """
    where = f"distillation.methods.{method_name}"
    student_params = validate(StudentParams, student, "distillation.student")
    method_params = validate(MethodParams, method, where)
    problems = _own_seed_problems(student_params.training, method_params.training, where)
    if problems:
        raise _error(problems)
    config = validate(TrainingConfig, merged(merged(training, student_params.training), method_params.training)
                      | {"seed": seed}, f"{where}.training")
    return student_params, method_params, config


PLACEHOLDER_WIDTHS = (8, 8)
PRETRAINED = "pretrained"  # backbone_weights: the pretraining stage's weights for the network's backbone


def _feature_widths(network: Any) -> tuple[int, int]:
    """The stage-1 and head-feature widths of ``network`` (a config), built on the meta device: no memory, no
    weights read or downloaded."""
    import torch

    from sstkd.models.segmenter import build_network

    try:
        config = (network.model_dump() if isinstance(network, NetworkConfig) else dict(network))
        with torch.device("meta"):
            built = build_network(config | {"backbone_weights": None}, 2)
        return built.low_level_channels, built.head_channels
    except Exception:  # noqa: BLE001 - an invalid network is reported by its own schema check
        return PLACEHOLDER_WIDTHS


def _own_seed_problems(student_training: Mapping, method_training: Mapping, where: str) -> list[str]:
    return [f"{place}.seed: a student's seed is the study's (study.seeds: one training per seed, paired across "
            "methods); remove it here"
            for own, place in ((student_training, "distillation.student.training"),
                               (method_training, f"{where}.training")) if "seed" in own]


def _from_scratch_problems(params: Mapping[str, Any]) -> list[str]:
    """The networks this env would train from scratch without saying so (``backbone_weights`` null)."""
    def network(group: Any, key: str) -> Mapping:
        value = group.get(key) if isinstance(group, Mapping) else None
        return value if isinstance(value, Mapping) else {}

    teacher = params.get("teacher") if isinstance(params.get("teacher"), Mapping) else {}
    places = [("distillation.student.network", network(network(params, "distillation"), "student").get("network"))]
    if not teacher.get("checkpoint"):  # a given teacher is loaded, not trained
        places.insert(0, ("teacher.network", teacher.get("network")))
    return [f"{where}.backbone_weights: this env reproduces a published protocol whose backbones start from "
            "ImageNet weights (study.pretrained_backbones: required); set it to `imagenet` or a local file, or to "
            "`random` to train from scratch on purpose (a from-scratch Cityscapes ResNet-18 is ~10 mIoU below the "
            "published baselines)"
            for where, net in places if isinstance(net, Mapping) and net.get("backbone_weights") in (None, "")]


def _pretrained_problems(params: Mapping[str, Any]) -> list[str]:
    """Networks that start from ``pretrained`` weights of a backbone the pretraining stage does not train."""
    pretraining = params.get("pretraining") if isinstance(params.get("pretraining"), Mapping) else {}
    trained = pretraining.get("backbones") or []
    teacher = params.get("teacher") if isinstance(params.get("teacher"), Mapping) else {}
    distillation = params.get("distillation") if isinstance(params.get("distillation"), Mapping) else {}
    student = distillation.get("student") if isinstance(distillation.get("student"), Mapping) else {}
    problems = []
    for where, network in (("teacher.network", teacher.get("network")),
                           ("distillation.student.network", student.get("network"))):
        if isinstance(network, Mapping) and network.get("backbone_weights") == PRETRAINED:
            backbone = network.get("backbone", "resnet18")
            if backbone not in trained:
                problems.append(f"{where}.backbone_weights: pretrained, but pretraining.backbones ({trained}) does "
                                f"not train {backbone}; add it there")
    return problems


def _published_student_problems(published: str, params: Mapping[str, Any]) -> list[str]:
    """The published rows must be of the student this env trains (``<head>_<backbone>``, deep stem or not)."""
    distillation = params.get("distillation") if isinstance(params.get("distillation"), Mapping) else {}
    student = distillation.get("student") if isinstance(distillation.get("student"), Mapping) else {}
    network = student.get("network") if isinstance(student.get("network"), Mapping) else {}
    trained = f"{network.get('head', '?')}_{str(network.get('backbone', '?')).removesuffix('_deep')}"
    protocol, _, published_student = published.partition(":")
    if published_student == trained:
        return []
    return [f"study.published: {published!r} is the published rows of student {published_student}, but "
            f"distillation.student.network trains {trained}; set study.published to '{protocol}:{trained}' "
            "(if that protocol publishes it) or to null"]


def check_parameters(params: Mapping[str, Any]) -> None:
    """Validate every parameter group before any node runs, and report every bad key at once.

    Nodes validate their own groups again (they are plain functions, callable without this check); doing it
    here first means a typo in the last method's options fails in a second, not after the teacher has trained.
    """
    from sstkd.distill.losses import build_criterion  # torch modules: only once the groups are known

    problems: list[str] = []

    def check(function, *args):
        """``function(*args)``, or None with its problems recorded."""
        try:
            return function(*args)
        except ParameterError as error:
            problems.extend(error.problems)
        except (TypeError, ValueError) as error:  # build_criterion's messages name the key
            problems.append(str(error))
        return None

    def check_losses(losses: dict, where: str, student: tuple[int, int], teacher: tuple[int, int] | None) -> None:
        """Build the criterion as the node will (teacher losses get no teacher), with a placeholder class count;
        ``student``/``teacher``: (stage-1, head-feature) widths."""
        teacher = teacher or (None, None)
        try:
            check(build_criterion, {name: dict(options or {}) for name, options in losses.items()}, 2,
                  student[0], teacher[0], where, student[1], teacher[1])
        except Exception as error:  # e.g. torch refusing a layer size: still one line, naming the method
            problems.append(f"{where}: {type(error).__name__}: {error}")

    def mapping(value: Any, where: str) -> Mapping:
        if value is None or isinstance(value, Mapping):
            return value or {}
        problems.append(f"{where}: a mapping of keys to values, got {value!r}")
        return {}

    def own_training(group: Any) -> dict:
        training = group.get("training") if isinstance(group, Mapping) else None
        return training if isinstance(training, Mapping) else {}

    check(check_parameter_groups, params)
    # Each part on its own, so one bad key does not hide the others. Every training key has a default, so an
    # override (`teacher.training`, a method's `training`) is checked alone and its errors carry its own name.
    for group, schema in PARAMETER_GROUPS.items():
        if schema is not None and group != "teacher" and group in params:
            check(validate, schema, params[group], group)
    study = check(validate, StudyParams, params.get("study"), "study") if "study" in params else None
    if study is not None and study.pretrained_backbones == "required":
        problems.extend(_from_scratch_problems(params))
    problems.extend(_pretrained_problems(params))
    if study is not None and study.published:
        problems.extend(_published_student_problems(study.published, params))
    if "teacher" in params:
        teacher = check(validate, TeacherParams, params["teacher"], "teacher")
        check(validate, TrainingConfig, own_training(params["teacher"]), "teacher.training")
        if teacher is not None and teacher.checkpoint is None:  # a given checkpoint is loaded, not trained
            check_losses(teacher.losses, "teacher.losses", _feature_widths(teacher.network), None)
    if "distillation" in params:
        distillation = mapping(params["distillation"], "distillation")
        student = distillation.get("student")
        student_params = check(validate, StudentParams, student, "distillation.student")
        teacher_network = params["teacher"].get("network") if isinstance(params.get("teacher"), Mapping) else None
        # The real widths, so a loss that needs them equal (`adapter: false`) fails here, not after the teacher
        # has trained; placeholders when a network is itself invalid (reported above).
        widths = (_feature_widths(student_params.network) if student_params else PLACEHOLDER_WIDTHS,
                  _feature_widths(teacher_network) if teacher_network else PLACEHOLDER_WIDTHS)
        check(validate, TrainingConfig, own_training(student), "distillation.student.training")
        # Every method defined, not only those in `distillation.run`: a broken entry is found before it is chosen;
        # those that will train are built with the real stage-1 widths, the others with equal placeholder ones.
        running = set(parse_method_list(distillation.get("run")))
        if "run" in distillation and not running:
            problems.append("distillation.run: empty; name the methods to train, e.g. [baseline, pixel_kd, sstkd] "
                            "(leave the key out for those defaults)")
        for name, method in mapping(distillation.get("methods"), "distillation.methods").items():
            where = f"distillation.methods.{name}"
            method_params = check(validate, MethodParams, method, where)
            if method_params is not None:
                check_losses(method_params.losses, f"{where}.losses",
                             *(widths if name in running else (PLACEHOLDER_WIDTHS, PLACEHOLDER_WIDTHS)))
            check(validate, TrainingConfig, own_training(method), f"{where}.training")
            problems.extend(_own_seed_problems(own_training(student), own_training(method), where))
    unique = list(dict.fromkeys(problems))  # the student's and shared training's errors repeat per method
    if unique:
        raise _error(unique)


__all__ = ["NetworkConfig", "TrainingConfig", "validate", "merged", "ParameterError", "PARAMETER_GROUPS",
           "check_parameter_groups", "check_parameters", "teacher_settings", "student_settings"]


def emulated_cpu_bf16_problems(params: Mapping[str, Any], teacher: bool, methods: list[str]) -> list[str]:
    """One line naming where ``cpu_bf16: true`` is set and how to turn it off, when the teacher (``teacher``: when
    it is trained, not loaded) or a student of ``methods`` would train with bf16 autocast on a CPU that has no bf16
    arithmetic (emulated: an order of magnitude slower than fp32); empty otherwise (such a CPU, CUDA, fp32).

    A fact of the machine, not of the parameters: ``kedro run`` checks it for the models its pipeline trains,
    after :func:`check_parameters` (which gives the same answer on every machine)."""
    import torch

    from sstkd.training.distributed import device_type
    from sstkd.training.loop import CPU_BF16_FIX, native_cpu_bf16

    if native_cpu_bf16():  # nothing to build on the machines that have it: kedro run's start stays as it was
        return []
    distillation = params.get("distillation") or {}
    trained, owners = [], ["training"]
    if teacher:
        teacher_params, config = teacher_settings(params.get("training"), params.get("teacher"))
        if teacher_params.checkpoint is None:
            trained.append(config)
            owners.append("teacher.training")
    for name in methods:
        trained.append(student_settings(params.get("training"), distillation.get("student"),
                                        (distillation.get("methods") or {}).get(name), name, 0)[2])
    if methods:
        owners += ["distillation.student.training", *(f"distillation.methods.{name}.training" for name in methods)]
    if not any(config.cpu_bf16 and device_type(config.device) == "cpu" for config in trained):
        return []

    def own(where: str) -> Mapping:  # the group's own keys, without what it inherits
        value: Any = params
        for key in where.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, Mapping) else {}

    keys = [f"{where}.cpu_bf16" for where in owners if validate(TrainingConfig, own(where), where).cpu_bf16]
    return [f"{', '.join(keys)}: true, but this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 "
            f"arithmetic (AVX512-BF16, AMX or Arm's BF16): autocast would emulate it, ~10x slower than fp32; "
            f"{CPU_BF16_FIX}: --params {','.join(f'{key}=false' for key in keys)}"]
