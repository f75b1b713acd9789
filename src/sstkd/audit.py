"""The ``sstkd`` command: audit what produced a model (not ``cli.py``: Kedro reserves that name for project commands).

    sstkd runs                      recent MLflow runs (id, name, role, model, status, start, duration, mIoU)
    sstkd lineage RUN_ID            data version, code commit, parameters, teacher and metrics of one run
    sstkd lineage --model PATH      the lineage record inside a model file (commit, data, parameters, teacher, run),
                                    plus what this store has of its run; works on a pulled file without the store
    sstkd repro [DVC ARGS]          `dvc repro` with the stages' MLflow runs nested under one study run

The tracking store is the one in ``conf/base/mlflow.yml`` (``--tracking-uri`` overrides it).
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
from pathlib import Path

from sstkd.store import default_tracking_uri

LINEAGE_TAGS = ("git.commit", "git.dirty", "data.fingerprint", "data.layout", "data.root", "kedro.pipeline",
                "kedro.env", "sstkd.role", "sstkd.fingerprint", "sstkd.teacher_run_id")


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def describe_run(client, run_id: str, depth: int = 0, out=sys.stdout) -> dict:
    """Print one run's lineage (and, for a student, its teacher's) and return it as a dict."""
    from mlflow.exceptions import MlflowException

    pad = "  " * depth
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise SystemExit(f"no MLflow run {run_id!r} in this store ({error.message.splitlines()[0]})") from None
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    print(f"{pad}run {run_id}  ({tags.get('mlflow.runName', '')}, {run.info.status})", file=out)
    parent = tags.get("mlflow.parentRunId")
    if parent:
        print(f"{pad}  pipeline run: {parent}", file=out)
    print(f"{pad}  lineage:", file=out)
    for key in LINEAGE_TAGS:
        if key in tags:
            print(f"{pad}    {key:24s} {tags[key]}", file=out)
    for key in sorted(k for k in tags if k.startswith("dvc.")):
        print(f"{pad}    {key:24s} {tags[key]}", file=out)
    if params:
        print(f"{pad}  parameters:", file=out)
        for key in sorted(params):
            print(f"{pad}    {key} = {params[key]}", file=out)
    if metrics:
        print(f"{pad}  metrics (last value):", file=out)
        for key in sorted(metrics):
            print(f"{pad}    {key:28s} {metrics[key]:.4f}", file=out)
    result = {"run_id": run_id, "tags": dict(tags), "params": dict(params), "metrics": dict(metrics)}
    teacher = tags.get("sstkd.teacher_run_id")
    if teacher and depth == 0:
        print(f"{pad}  teacher:", file=out)
        result["teacher"] = describe_run(client, teacher, depth + 2, out)
    return result


def describe_model(client, path: Path, out=sys.stdout) -> dict:
    """Print the lineage record stored in a model file (no store needed), then what this store has of its run."""
    from sstkd import tracking
    from sstkd.training.checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    record = payload.get("lineage")
    if not record:
        raise SystemExit(f"{path} carries no lineage record (written before sstkd recorded one: retrain it)")
    print(f"model {path}  ({record.get('model')}, {record.get('role')})", file=out)
    print("  lineage (from the model file):", file=out)
    for key in ("git_commit", "git_dirty", "kedro_env", "data_fingerprint", "data_layout", "fingerprint",
                "mlflow_run_id", "best_val_miou", "trained_at"):
        print(f"    {key:24s} {record.get(key)}", file=out)
    print("  parameters:", file=out)
    for key, value in sorted(tracking.flat_keys(record.get("parameters") or {}).items()):
        print(f"    {key} = {value}", file=out)
    compute = record.get("compute")
    print("  compute (what decides the float results: same facts, same digits):", file=out)
    if compute:
        for key, value in compute.items():
            print(f"    {key:24s} {value}", file=out)
    else:
        print("    not recorded (a model trained before sstkd recorded it)", file=out)
    teacher = record.get("teacher")
    if teacher:
        print("  teacher:", file=out)
        for key, value in teacher.items():
            print(f"    {key:24s} {value}", file=out)
    run_id = record.get("mlflow_run_id")
    result = {"record": record}
    if tracking.run_exists(run_id, client):
        print("  in this MLflow store:", file=out)
        result["run"] = describe_run(client, run_id, depth=2, out=out)
    else:
        print(f"  MLflow run {run_id or '(none)'} is not in this store (trained elsewhere): the record above is "
              "the model file's own", file=out)
    return result


def list_runs(client, out=sys.stdout, limit: int = 30) -> None:
    experiment = client.get_experiment_by_name("sstkd")
    if experiment is None:
        raise SystemExit("no 'sstkd' experiment in this store yet: run `kedro run` first")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    print(f"{'run id':34s} {'name':20s} {'role':8s} {'model':20s} {'status':9s} {'started (UTC)':16s} "
          f"{'duration':>8s} {'mIoU (split)':>14s}  commit", file=out)
    for run in runs:
        tags, metrics, info = run.data.tags, run.data.metrics, run.info
        evaluated = evaluated_miou(metrics)
        started = datetime.datetime.fromtimestamp(info.start_time / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M")
        duration = f"{(info.end_time - info.start_time) / 1000:7.0f}s" if info.end_time else "running"
        status = info.status if info.status != "FAILED" else "FAILED !"
        print(f"{info.run_id:34s} {tags.get('mlflow.runName', '')[:20]:20s} {tags.get('sstkd.role', 'pipeline'):8s} "
              f"{tags.get('sstkd.model', '')[:20]:20s} {status:9s} {started:16s} {duration:>8s} "
              f"{'' if evaluated is None else f'{evaluated[0]:7.2f} {evaluated[1]:>6s}':>14s}  "
              f"{tags.get('git.commit', '')[:10]}", file=out)


def evaluated_miou(metrics: dict[str, float]) -> tuple[float, str] | None:
    """A model run's evaluation mIoU and its split: ``test_miou``, else ``eval_<split>_miou`` (a study evaluated on
    another split, see ``evaluation.split``); ``None`` for a run that was not evaluated."""
    if "test_miou" in metrics:
        return metrics["test_miou"], "test"
    for key, value in sorted(metrics.items()):
        if key.startswith("eval_") and key.endswith("_miou") and "." not in key:
            return value, key[len("eval_"):-len("_miou")]
    return None

def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `sstkd lineage ... | head` ends quietly
    parser = argparse.ArgumentParser(prog="sstkd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: conf/base/mlflow.yml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runs", help="list recent runs")
    lineage = commands.add_parser("lineage", help="print the lineage of one run or model file")
    lineage.add_argument("run_id", nargs="?")
    lineage.add_argument("--model", type=Path, help="a model file written by the pipeline")
    commands.add_parser("repro", help="dvc repro (all arguments passed on), its stages' MLflow runs under one "
                                      "parent run in the project's own store")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = 2 if argv[:1] == ["--tracking-uri"] else 1 if argv[:1] and argv[0].startswith("--tracking-uri=") else 0
    dvc_arguments: list[str] = []
    if argv[command:command + 1] == ["repro"]:  # all after it is DVC's, options too (`sstkd repro --force teacher`)
        argv, dvc_arguments = argv[:command + 1], argv[command + 1:]
    args = parser.parse_args(argv)
    if args.command == "repro":
        from sstkd.reproduce import reproduce

        if args.tracking_uri:
            parser.error("repro logs to the store the stages use (conf/base/mlflow.yml): no --tracking-uri")
        raise SystemExit(reproduce(dvc_arguments))
    client = _client(args.tracking_uri or default_tracking_uri())
    if args.command == "runs":
        list_runs(client)
        return
    if args.model is not None:
        describe_model(client, args.model)
        return
    if not args.run_id:
        parser.error("give a RUN_ID or --model PATH")
    describe_run(client, args.run_id)


if __name__ == "__main__":
    main()
