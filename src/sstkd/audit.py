"""The ``sstkd`` command: audit what produced a model (not ``cli.py``: Kedro reserves that name for project commands).

    sstkd runs                      recent MLflow runs of the study (id, name, role, mIoU)
    sstkd lineage RUN_ID            data version, code commit, parameters, teacher and metrics of one run
    sstkd lineage --model PATH      the same, for a model file written by the pipeline (data/06_models/...)

The tracking store is the one in ``conf/base/mlflow.yml`` (``--tracking-uri`` overrides it).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import yaml

LINEAGE_TAGS = ("git.commit", "git.dirty", "data.fingerprint", "data.layout", "data.root", "kedro.pipeline",
                "kedro.env", "sstkd.role", "sstkd.fingerprint", "sstkd.teacher_run_id")


def default_tracking_uri(project: Path = Path(".")) -> str:
    config = project / "conf" / "base" / "mlflow.yml"
    if config.exists():
        uri = (yaml.safe_load(config.read_text()) or {}).get("server", {}).get("mlflow_tracking_uri")
        if uri:
            return uri
    return "sqlite:///mlflow.db"


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


def list_runs(client, out=sys.stdout, limit: int = 30) -> None:
    experiment = client.get_experiment_by_name("sstkd")
    if experiment is None:
        raise SystemExit("no 'sstkd' experiment in this store yet: run `kedro run` first")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    print(f"{'run id':34s} {'name':24s} {'role':8s} {'test mIoU':>9s}  commit", file=out)
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        miou = metrics.get("test_miou")
        print(f"{run.info.run_id:34s} {tags.get('mlflow.runName', '')[:24]:24s} {tags.get('sstkd.role', 'pipeline'):8s} "
              f"{'' if miou is None else f'{100 * miou:9.2f}'}  {tags.get('git.commit', '')[:10]}", file=out)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `sstkd lineage ... | head` ends quietly
    parser = argparse.ArgumentParser(prog="sstkd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: conf/base/mlflow.yml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runs", help="list recent runs")
    lineage = commands.add_parser("lineage", help="print the lineage of one run or model file")
    lineage.add_argument("run_id", nargs="?")
    lineage.add_argument("--model", type=Path, help="a model file written by the pipeline")
    args = parser.parse_args(argv)
    client = _client(args.tracking_uri or default_tracking_uri())
    if args.command == "runs":
        list_runs(client)
        return
    run_id = args.run_id
    if args.model is not None:
        from sstkd.training.checkpoint import load_checkpoint

        run_id = load_checkpoint(args.model).get("mlflow_run_id")
        if not run_id:
            raise SystemExit(f"{args.model} records no MLflow run (was it trained with tracking on?)")
    if not run_id:
        parser.error("give a RUN_ID or --model PATH")
    describe_run(client, run_id)


if __name__ == "__main__":
    main()
