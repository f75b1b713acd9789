"""Pretrain each backbone of ``pretraining.backbones`` on the texture corpus, each in its own MLflow run.

A backbone whose finished weights already exist for the same fingerprint (corpus, recipe, backbone) is up to date:
restored with the record of the run that trained it, nothing retrained or logged again.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from sstkd import tracking
from sstkd.config import PretrainingParams, validate
from sstkd.data.texture_corpus import CORPUS_CLASSES, CORPUS_VERSION, texture_corpus
from sstkd.training.checkpoint import atomic_save, load_checkpoint
from sstkd.training.pretraining import pretrain_backbone
from sstkd.training.recipe import fingerprint_of

log = logging.getLogger(__name__)

VAL_OFFSET = 10_000_000  # the validation images' first index: disjoint from any training split's


def pretrain_backbones(pretraining: dict) -> dict:
    params = validate(PretrainingParams, pretraining, "pretraining")
    corpus_params = params.corpus.model_dump()
    corpus_params |= {"version": CORPUS_VERSION}  # in every fingerprint: a changed generator retrains
    result = {"corpus": corpus_params | {"classes": list(CORPUS_CLASSES)}, "backbones": {}}
    corpus = None
    git = tracking.git_state()  # one lookup per run, for every backbone's tags and record
    for backbone in params.backbones:
        name = f"pretraining.{backbone}"
        fingerprint = fingerprint_of(name, corpus_params, params.training.model_dump(exclude={"progress"}))
        finished_file = Path(params.checkpoint_root) / name / "finished.pt" if params.checkpoint_root else None
        if finished_file is not None and finished_file.is_file():
            finished = load_checkpoint(finished_file)
            if finished.get("fingerprint") == fingerprint:
                log.info("%s is up to date (trained in run %s)", name, finished["record"]["mlflow_run_id"] or "-")
                result["backbones"][backbone] = finished["record"] | {"state_dict": finished["state_dict"]}
                continue
        if corpus is None:
            log.info("generating the texture corpus: %d classes x %d + %d images of %d px", len(CORPUS_CLASSES),
                     params.corpus.train_per_class, params.corpus.val_per_class, params.corpus.image_size)
            corpus = {"train": texture_corpus(params.corpus.seed, params.corpus.train_per_class,
                                              params.corpus.image_size),
                      "val": texture_corpus(params.corpus.seed, params.corpus.val_per_class, params.corpus.image_size,
                                            offset=VAL_OFFSET)}
        compute = tracking.compute_facts()
        tags = {"sstkd.role": "pretraining", "sstkd.model": name, **git, **tracking.dvc_hashes(),
                **{f"compute.{k}": v for k, v in compute.items()}}
        with tracking.nested_run(name, tags) as run_id:
            tracking.log_params({"backbone": backbone, "corpus": corpus_params,
                                 "training": params.training.model_dump()})
            state, history = pretrain_backbone(backbone, corpus, params.training, name=name,
                                               callbacks=[tracking.epoch_logger()])
            tracking.log_metrics({"final_val_accuracy": history[-1]["val_accuracy"]})
        record = {"backbone": backbone, "fingerprint": fingerprint, "mlflow_run_id": run_id or "",
                  "val_accuracy": history[-1]["val_accuracy"], "epochs": len(history), "history": history,
                  "git_commit": git["git.commit"], "git_dirty": git["git.dirty"], "compute": compute,
                  "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        if finished_file is not None:
            atomic_save({"fingerprint": fingerprint, "state_dict": state, "record": record}, finished_file)
        result["backbones"][backbone] = record | {"state_dict": state}
    return result
