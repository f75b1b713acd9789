"""Every dataset environment loads, validates, builds its networks and its data path on an official-layout
fixture (no training), so a typo in a paper-sized config fails CI."""

import copy
import json
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from sstkd.catalog.datasets import SegmentationSourceDataset
from sstkd.config import (
    EvaluationParams,
    IngestionParams,
    MethodParams,
    ParameterError,
    PreprocessingParams,
    StudentParams,
    StudyParams,
    TeacherParams,
    TrainingConfig,
    check_parameter_groups,
    check_parameters,
    merged,
    validate,
)
from sstkd.data.cache import build_cache
from sstkd.data.manifest import build_manifest
from sstkd.distill.losses import build_criterion
from sstkd.models.segmenter import build_network
from sstkd.pipeline_registry import configured_methods, methods_to_run
from sstkd.settings import CONFIG_LOADER_ARGS
from sstkd.training.recipe import split_dataset, transform_config

from ..data.layouts import make_ade20k, make_camvid, make_cityscapes, make_voc

ROOT = Path(__file__).resolve().parents[2]
# Every dataset env: the SSTKD paper's protocol (`<dataset>`) and CIRKD's (`<dataset>_cirkd`).
FIXTURES = {"cityscapes": make_cityscapes, "voc": make_voc, "ade20k": make_ade20k,
            "cityscapes_cirkd": make_cityscapes, "voc_cirkd": make_voc, "ade20k_cirkd": make_ade20k,
            "camvid_cirkd": make_camvid}


@pytest.mark.parametrize("env", sorted(FIXTURES))
def test_environment_builds_networks_and_data_path(env, tmp_path):
    loader = OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    parameters = loader["parameters"]
    catalog = loader["catalog"]["raw_dataset"]
    ingestion = validate(IngestionParams, parameters["data"], "data")
    preprocessing = validate(PreprocessingParams, parameters["preprocessing"], "preprocessing")
    teacher = validate(TeacherParams, parameters["teacher"], "teacher")
    student = validate(StudentParams, parameters["distillation"]["student"], "distillation.student")
    evaluation = validate(EvaluationParams, parameters["evaluation"], "evaluation")
    assert evaluation.split in ingestion.required_splits
    teacher_training = validate(TrainingConfig, merged(parameters["training"], teacher.training), "teacher.training")
    # a paper-sized env's teacher follows the env's schedule, not conf/base's CPU teacher recipe
    assert (teacher_training.epochs, list(teacher_training.crop_size)) == (
        parameters["training"]["epochs"], list(parameters["training"]["crop_size"]))

    FIXTURES[env](tmp_path)
    options = dict(catalog.get("options", {}))
    if options.get("use_sbd_aug"):
        options["use_sbd_aug"] = False  # the fixture has no SBD folder; the option itself is checked by type
    source = SegmentationSourceDataset(str(tmp_path), layout=catalog["layout"], options=options).load()
    manifest = build_manifest(source, ingestion.required_splits, workers=2)
    cache = build_cache(source.root, manifest, source.label_lut, preprocessing.cache_size, workers=2)
    statistics = {"mean": [0.5] * 3, "std": [0.25] * 3}
    transforms = transform_config(teacher_training, statistics)
    # the published loaders' scale grid: CIRKD's 0.5 + randint(0, 15) / 10, SKD's (SSTKD's lineage) randint(0, 16)
    assert (transforms.scale_step, transforms.scale_range) == (0.1, (0.5, 2.0 if env.endswith("_cirkd") else 2.1))
    train = split_dataset(cache, "train", transforms, train=True, seed=0)
    image, mask = train[0]
    assert tuple(image.shape[-2:]) == tuple(teacher_training.crop_size) == tuple(mask.shape)

    # Architecture only: the paper envs' `imagenet` weights are not in this machine's torch hub cache (their
    # loading is tested in tests/models/test_converters.py).
    teacher_net = build_network(teacher.network.model_dump() | {"backbone_weights": None}, source.num_classes)
    student_net = build_network(student.network.model_dump() | {"backbone_weights": None}, source.num_classes)
    for method in configured_methods(ROOT / "conf", env=env):
        spec = validate(MethodParams, parameters["distillation"]["methods"][method], f"distillation.methods.{method}")
        validate(TrainingConfig, merged(merged(parameters["training"], student.training), spec.training), method)
        build_criterion({k: dict(v or {}) for k, v in spec.losses.items()}, source.num_classes,
                        student_net.low_level_channels, teacher_net.low_level_channels, where=method,
                        student_head_channels=student_net.head_channels,
                        teacher_head_channels=teacher_net.head_channels)


def test_every_environment_has_a_user_dataset_not_a_generator():
    for env in [*FIXTURES, "generic"]:
        entry = OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["catalog"]["raw_dataset"]
        # Whole-entry replacement: base's `generated: true` must not leak into a user's dataset entry.
        assert "generated" not in entry and entry["layout"] == env.removesuffix("_cirkd"), entry


@pytest.mark.parametrize("env", ["local", "tiny", "protocol", "converged", "generic", *sorted(FIXTURES)])
def test_every_environment_passes_the_start_of_run_parameter_check(env):
    check_parameters(OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"])


def test_the_start_of_run_check_names_every_bad_key_once():
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="tiny", **CONFIG_LOADER_ARGS)["parameters"]
    parameters["distillation"]["student"]["network"]["backbone"] = "resnet1800"
    parameters["distillation"]["methods"]["pixel_kd"]["losses"]["pixel_kd"]["weight"] = "heavy"
    parameters["teacher"]["losses"]["cross_entropy"]["aux_weigth"] = 0.4
    parameters["study"]["seeds"] = [0, 0]
    with pytest.raises(ParameterError) as error:
        check_parameters(parameters)
    problems = error.value.problems
    assert len(problems) == len(set(problems)) == 4, problems  # the student's error once, not once per method
    assert any(p.startswith("distillation.student.network.backbone:") for p in problems)
    assert "distillation.methods.pixel_kd.losses.pixel_kd.weight must be a number, got 'heavy'" in problems
    assert any(p.startswith("teacher.losses.cross_entropy.aux_weigth: unknown option") for p in problems)
    assert any(p.startswith("study.seeds") and "twice" in p for p in problems), problems


def test_the_converged_env_gives_every_method_with_skds_terms_the_selected_weights():
    base, converged = (OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
                       for env in ("local", "converged"))
    for term, published, selected, expected_carriers in (
            ("pixel_kd", {"weight": 10.0, "temperature": 1.0}, {"weight": 0.3, "temperature": 1.0},
             {"pixel_kd", "pixel_kd_adversarial", "skd", "sstkd", "sstkd_no_adapter"}),
            ("adversarial", {"weight": 0.1, "lr": 0.0004, "gradient_penalty": 10.0},
             {"weight": 0.003, "lr": 0.0004, "gradient_penalty": 10.0},
             {"pixel_kd_adversarial", "skd", "sstkd", "sstkd_structural_only", "sstkd_no_adapter"})):
        carried = {method for method, spec in base["distillation"]["methods"].items()
                   if spec["losses"].get(term) == published}
        assert expected_carriers <= carried, term
        for method in carried:  # a method added to base with SKD's term and forgotten here fails
            assert converged["distillation"]["methods"][method]["losses"][term] == selected, (term, method)
    # CIRKD's rows keep their own scripts' weights (IFVD's holistic term 0.001)
    assert converged["distillation"]["methods"]["ifvd"] == base["distillation"]["methods"]["ifvd"]


# Each ladder of the converged selection: its records' stem, the method and the loss weights it tunes.
SELECTION_LADDERS = {"pixel_kd_l": ("pixel_kd", ["pixel_kd.weight"]),
                     "selection_holistic_": ("pixel_kd_adversarial", ["adversarial.weight"]),
                     "selection_cwd_": ("cwd", ["channelwise.weight"]),
                     "selection_pairwise_": ("skd", ["pairwise.weight"]),
                     "selection_texture_": ("sstkd", ["structural.weight", "statistical.weight"])}
# the published weights (SSTKD.md; SSTKD's own are not published: 0.3 and 1.0 are issue 9's), which each ladder kept
# among its rows; most records (written before 58ce09f) do not store their losses and are rebuilt from conf/base,
# so base must still hold these for the rebuild to mean anything
PUBLISHED = {"pixel_kd.weight": 10.0, "adversarial.weight": 0.1, "channelwise.weight": 3.0, "pairwise.weight": 0.5,
             "structural.weight": 0.3, "statistical.weight": 1.0}


def test_the_converged_env_carries_the_weights_its_committed_selection_records_chose():
    """conf/converged against benchmarks/: for every ladder whose four records are committed, the row best on
    validation is what the env runs, in its method and in every method carrying the same published weight, so a
    weight copied wrongly or forgotten in an ablation, or a record added later that wins, fails here."""
    base, converged = (OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
                       for env in ("local", "converged"))
    records = ROOT / "benchmarks" / "results" / "kd_diagnosis"
    unfinished = []
    for stem, (method, tuned) in SELECTION_LADDERS.items():
        rows = [json.loads(line) for path in sorted(records.glob(f"converged_{stem}*_r10_120_epochs_layered.jsonl"))
                for line in path.read_text().splitlines() if line.strip()]
        assert len(rows) <= 4, f"{stem}: the budget is four weights, found {[r['row'] for r in rows]}"
        if len(rows) < 4:  # a ladder still running: nothing is selected from part of it
            unfinished.append(f"{records.relative_to(ROOT)}/converged_{stem}*: {len(rows)} of 4 records")
            continue
        assert {(r["method"], r["seed"], r["epochs"]) for r in rows} == {(method, 0, 120)}, stem
        tuned_overrides = [{k: v for k, v in r["overrides"] if k.removeprefix("losses.") in tuned} for r in rows]
        assert sum(not overrides for overrides in tuned_overrides) == 1, f"{stem}: one row at the published weight"
        assert len({frozenset(overrides.items()) for overrides in tuned_overrides}) == 4, f"{stem}: four distinct weights"
        shared = {frozenset((k, v) for k, v in r["overrides"] if k.removeprefix("losses.") not in tuned) for r in rows}
        assert len(shared) == 1, f"{stem}: the rows differ in more than their tuned weight: {shared}"
        best = max(rows, key=lambda row: row["val_miou"])
        if "losses" in best:  # what the row trained, as recorded since
            expected = best["losses"]
        else:  # older records: the method as published (conf/base), with the row's overrides
            expected = copy.deepcopy(base["distillation"]["methods"][method]["losses"])
            for key, value in best["overrides"]:
                _, term, name = key.split(".")
                expected[term][name] = value
        methods = converged["distillation"]["methods"]
        for key in tuned + [key.removeprefix("losses.") for key, _ in best["overrides"]]:
            term, name = key.split(".")
            assert methods[method]["losses"][term][name] == pytest.approx(expected[term][name]), (best["row"], key)
        for key in tuned:  # and every method that carries the published weight, e.g. each SSTKD ablation
            term, name = key.split(".")
            published = base["distillation"]["methods"][method]["losses"][term][name]
            assert published == PUBLISHED[key], (stem, key)  # what the older records are rebuilt from
            carriers = [other for other, spec in base["distillation"]["methods"].items()
                        if (spec["losses"].get(term) or {}).get(name) == published]
            for other in carriers:
                assert methods[other]["losses"][term][name] == pytest.approx(expected[term][name]), (other, key)
    # the comparison (benchmarks/comparison_issue19.sh) starts only when this passes: every ladder finished
    assert not unfinished, "the selection is not finished: " + "; ".join(unfinished)


def test_a_schedule_shortened_below_its_warm_up_fails_at_the_start():
    # what `kedro run --env converged --params training.epochs=2` gives: the recipe's 5-epoch warm-up is kept
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="converged", **CONFIG_LOADER_ARGS)["parameters"]
    parameters["training"]["epochs"] = 2
    parameters["pretraining"]["training"]["epochs"] = 1
    parameters["pretraining"]["training"]["warmup_epochs"] = 1.5
    with pytest.raises(ParameterError) as error:
        check_parameters(parameters)
    problems = error.value.problems
    assert any(p.startswith("training") and "warmup_epochs 5 is longer than epochs 2" in p for p in problems), problems
    assert any(p.startswith("pretraining.training") and "warmup_epochs 1.5 is longer than epochs 1" in p
               for p in problems), problems
    parameters["training"]["warmup_epochs"] = 2  # as long as the schedule: the peak at its last step, allowed
    parameters["pretraining"]["training"]["warmup_epochs"] = 1
    check_parameters(parameters)


def test_an_empty_run_list_and_repeated_references_fail_at_the_start_not_after_training():
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="tiny", **CONFIG_LOADER_ARGS)["parameters"]
    parameters["distillation"]["run"] = []  # it used to train the three default methods instead
    parameters["study"]["references"] = ["baseline", "baseline"]  # it used to fail in the report, after training
    with pytest.raises(ParameterError) as error:
        check_parameters(parameters)
    problems = error.value.problems
    assert any(p.startswith("distillation.run: empty") for p in problems), problems
    assert any(p.startswith("study.references") and "['baseline'] more than once" in p for p in problems), problems
    with pytest.raises(ValueError, match="distillation.run is empty"):
        methods_to_run(parameters)
    parameters["study"]["references"] = ["baseline+cwd"]  # what --params "study.references=[baseline+cwd]" gives
    assert validate(StudyParams, parameters["study"], "study").references == ["baseline", "cwd"]


def test_an_unknown_parameter_group_names_the_key_and_the_closest_group():
    with pytest.raises(ParameterError, match="trainig: unknown parameter group; did you mean 'training'") as error:
        check_parameter_groups({"training": {}, "trainig": {"epochs": 1}, "zzz": 1})
    assert "zzz: unknown parameter group; known groups: synthetic, data," in str(error.value)


def test_the_start_of_run_check_agrees_with_what_the_nodes_build():
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="tiny", **CONFIG_LOADER_ARGS)["parameters"]
    loaded = parameters | {"teacher": parameters["teacher"] | {"checkpoint": "teacher.pt", "losses": {}}}
    check_parameters(loaded)  # a given teacher is loaded, not trained: its losses are never built
    wrong = parameters | {"trainig": {"epochs": 1},
                          "teacher": parameters["teacher"] | {"losses": {"structural": {"weight": 1.0}}}}
    wrong["distillation"]["methods"]["skd"]["losses"]["adversarial"]["channels"] = -1
    with pytest.raises(ParameterError) as error:
        check_parameters(wrong)
    problems = error.value.problems
    assert problems[0].startswith("trainig: unknown parameter group")  # and the other keys are still checked
    assert "teacher.losses.structural needs a teacher: set teacher channels" in problems  # as the teacher node says
    assert any(p.startswith("distillation.methods.skd.losses: RuntimeError") for p in problems), problems


def test_a_method_that_cannot_run_on_the_envs_networks_fails_at_the_start_only_when_chosen():
    """sstkd_no_adapter needs equal stage-1 widths: the paper's R101 teacher (256) and R18 student (64) differ."""
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="cityscapes", **CONFIG_LOADER_ARGS)["parameters"]
    check_parameters(parameters)  # defined but not in distillation.run
    parameters["distillation"]["run"] = ["baseline+sstkd_no_adapter"]
    with pytest.raises(ParameterError, match="distillation.methods.sstkd_no_adapter.losses.structural: adapter: "
                                             "false needs as many student as teacher stage-1 channels, got 64 "
                                             "and 256"):
        check_parameters(parameters)


@pytest.mark.parametrize("env", sorted(FIXTURES))
def test_a_paper_env_refuses_a_from_scratch_backbone_unless_asked_for(env):
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    assert parameters["study"]["pretrained_backbones"] == "required"
    parameters["distillation"]["student"]["network"]["backbone_weights"] = None
    with pytest.raises(ParameterError) as error:
        check_parameters(parameters)
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith("distillation.student.network.backbone_weights: this env reproduces")
    parameters["distillation"]["student"]["network"]["backbone_weights"] = "random"  # on purpose
    check_parameters(parameters)
    parameters["teacher"]["network"]["backbone_weights"] = None
    parameters["teacher"]["checkpoint"] = "teacher.pt"  # a given teacher is not trained: its backbone is moot
    check_parameters(parameters)


def test_the_published_rows_must_be_of_the_student_the_env_trains():
    parameters = OmegaConfigLoader(str(ROOT / "conf"), env="cityscapes_cirkd", **CONFIG_LOADER_ARGS)["parameters"]
    parameters["distillation"]["student"]["network"] |= {"backbone": "mobilenetv2", "backbone_weights": "imagenet",
                                                          "aux_head": False}
    with pytest.raises(ParameterError, match="study.published: 'cirkd_cityscapes:deeplabv3_resnet18' is the published "
                                             "rows of student deeplabv3_resnet18, but distillation.student.network "
                                             "trains deeplabv3_mobilenetv2"):
        check_parameters(parameters)
    parameters["study"]["published"] = "cirkd_cityscapes:deeplabv3_mobilenetv2"  # the README's hint
    check_parameters(parameters)


def test_bf16_autocast_is_refused_where_the_cpu_would_emulate_it_naming_where_it_is_set(monkeypatch):
    """`kedro run`'s machine check for the models its pipeline trains: conf/converged turns cpu_bf16 on for every
    model, which an AVX2 CPU runs ~10x slower than fp32."""
    from sstkd.config import emulated_cpu_bf16_problems
    from sstkd.training import loop

    converged = OmegaConfigLoader(str(ROOT / "conf"), env="converged", **CONFIG_LOADER_ARGS)["parameters"]
    methods = methods_to_run(converged)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(loop, "native_cpu_bf16", lambda: True)
    assert emulated_cpu_bf16_problems(converged, True, methods) == []
    monkeypatch.setattr(loop, "native_cpu_bf16", lambda: False)
    [problem] = emulated_cpu_bf16_problems(converged, True, methods)
    assert problem.startswith("training.cpu_bf16: true, but this CPU")
    assert problem.endswith("--params training.cpu_bf16=false")
    assert emulated_cpu_bf16_problems(converged, False, []) == []  # a run that trains nothing
    kept_off = copy.deepcopy(converged)  # on in the base, off for every model this run trains
    kept_off["teacher"]["training"]["cpu_bf16"] = False
    kept_off["distillation"]["student"]["training"] = {"cpu_bf16": False}
    assert emulated_cpu_bf16_problems(kept_off, True, methods) == []
    loaded = copy.deepcopy(converged)
    loaded["teacher"]["checkpoint"] = "teacher.pt"  # a given teacher is loaded, not trained
    assert emulated_cpu_bf16_problems(loaded, True, []) == []
    off = copy.deepcopy(converged)
    off["training"]["cpu_bf16"] = False
    assert emulated_cpu_bf16_problems(off, True, methods) == []
    off["distillation"]["methods"]["cwd"]["training"] = {"cpu_bf16": True}  # one method's own override
    [problem] = emulated_cpu_bf16_problems(off, True, methods)
    assert problem.startswith("distillation.methods.cwd.training.cpu_bf16: true")
    assert problem.endswith("--params distillation.methods.cwd.training.cpu_bf16=false")
    assert emulated_cpu_bf16_problems(off, True, ["baseline"]) == []  # cwd is not trained by this run
    off["distillation"]["methods"]["cwd"]["training"]["device"] = "cpu:0"
    assert emulated_cpu_bf16_problems(off, True, methods) != []
    off["distillation"]["methods"]["cwd"]["training"]["device"] = "cuda"  # not a CPU run: nothing emulated
    assert emulated_cpu_bf16_problems(off, True, methods) == []
    tiny = OmegaConfigLoader(str(ROOT / "conf"), env="tiny", **CONFIG_LOADER_ARGS)["parameters"]
    assert emulated_cpu_bf16_problems(tiny, True, methods_to_run(tiny)) == []  # the default keeps fp32
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # "auto" trains on the GPU there
    assert emulated_cpu_bf16_problems(converged, True, methods) == []
