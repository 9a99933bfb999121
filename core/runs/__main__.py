"""`python -m core.runs`: list, show, export, import and delete training runs, with the Runs page's checks.

Exit codes: 0 done, 2 bad input (one line on stderr: no such run, a file that is not a run, a run still
training), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import ArgParser, exit_code
from core.runs import RunError, delete_run, list_runs, load_run, run_path
from core.runs.archive import ArchiveError, export_run, import_run

FORMATS = ("zip", "tensorboard", "onnx", "mlflow")
SUMMARY = ("status", "test_accuracy", "images_per_second", "train_seconds", "epochs_completed", "device")


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="python -m core.runs", description="Training runs: list, show, export, import, delete.")
    p.add_argument("--runs-dir", default="runs", help="the runs folder (default: runs)")
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="every run, newest first")
    listing.add_argument("--json", action="store_true", help="one JSON object per run")
    show = sub.add_parser("show", help="one run's settings and results")
    show.add_argument("run", help="a run folder's name")
    show.add_argument("--json", action="store_true")
    export = sub.add_parser("export", help="a run as a zip, or for TensorBoard, ONNX or MLflow",
                            description="Export runs. zip and onnx: one run, -o FILE. tensorboard: -o DIR (several "
                                        "runs, or --all: a folder each in DIR, for `tensorboard --logdir DIR`). "
                                        "mlflow: --tracking-uri DIR (an SQLite store in DIR, or any MLflow URI). "
                                        "Export only: TensorBoard and MLflow runs are not read back.")
    export.add_argument("run", nargs="*", help="run folder names (python -m core.runs list)")
    export.add_argument("--all", action="store_true", help="every run")
    export.add_argument("--format", choices=FORMATS, default="zip",
                        help="zip (this app's own, the default), tensorboard, onnx (the trained network) or mlflow")
    export.add_argument("-o", "--output", help="the zip or .onnx file, or the TensorBoard folder, to write")
    export.add_argument("--tracking-uri", help="mlflow: a folder (an SQLite store is made in it) or an MLflow URI")
    export.add_argument("--force", action="store_true", help="replace an output that exists")
    take = sub.add_parser("import", help="a run zip (or a bare checkpoint.pt) as a new run")
    take.add_argument("file")
    delete = sub.add_parser("delete", help="delete a run (never one still training)")
    delete.add_argument("run")
    delete.add_argument("--yes", action="store_true", help="really delete it")
    return p


def row(info) -> dict:
    summary = info.summary or {}
    return {"run": info.name, "title": info.title, "status": info.status, "dataset": getattr(info.config, "dataset",
            None), **{k: summary.get(k) for k in SUMMARY if k != "status"}, "note": info.meta.get("note", "")}


def show(root: Path, name: str, as_json: bool) -> None:
    info = load_run(run_path(root, name))
    if info.error:
        raise RunError(f"{name} is damaged: {info.error}")
    data = {**row(info), "config": info.config.to_dict(), "epochs": [
        {k: e.get(k) for k in ("epoch", "test_accuracy", "train_accuracy")} for e in info.history.epochs]}
    if as_json:
        print(json.dumps(data))
        return
    print(f"{info.title}\n{name}: {info.status}")
    for epoch in data["epochs"]:
        print(f"  epoch {epoch['epoch']}: test accuracy {epoch['test_accuracy']:.1%}")
    for key, value in info.config.to_dict().items():
        print(f"  {key} = {value}")


def export(args: argparse.Namespace, root: Path) -> None:
    """`export`: the runs named (or --all) in the format asked; what was left out of a damaged run, a line each."""
    from core.runs import export as formats

    names = [r.name for r in list_runs(root)] if args.all else list(dict.fromkeys(args.run))
    if not names:
        raise RunError("name a run to export, or --all (python -m core.runs list shows them)" if not args.all else
                       f"there is no run in {root}")
    if args.format == "mlflow" and not args.tracking_uri:
        raise RunError("--format mlflow needs --tracking-uri DIR (the MLflow store to log into)")
    if args.format != "mlflow" and not args.output:
        raise RunError(f"--format {args.format} needs -o {'DIR' if args.format == 'tensorboard' else 'FILE'}")
    if args.format in ("zip", "onnx") and len(names) > 1:
        raise RunError(f"--format {args.format} writes one run to one file: name one run")
    if args.format != "zip":
        formats.need(args.format)  # before any run is read: the one line naming the pip command
    if args.format == "zip":
        print(export_run(root, names[0], args.output), file=sys.stderr)
        return
    if args.format in ("tensorboard", "onnx") and Path(args.output).exists() and not args.force:
        raise RunError(f"{args.output} exists: add --force to " + ("write into it (its event files of the same runs "
                       "are replaced)" if args.format == "tensorboard" else "replace it"))
    show, done = "", 0
    for name in names:
        try:
            run = formats.read_export(root, name)
            if args.format == "onnx":
                print(formats.write_file(args.output, formats.run_onnx(run), args.force), file=sys.stderr)
            elif args.format == "tensorboard":
                folder = Path(args.output) if len(names) == 1 else Path(args.output) / name
                if folder.is_dir():
                    formats.clear_events(folder)
                print(formats.export_tensorboard(run, folder), file=sys.stderr)
            else:
                run_id, show = formats.export_mlflow(run, args.tracking_uri, args.force)
                print(f"{name} -> MLflow run {run_id}", file=sys.stderr)
        except RunError as exc:
            if len(names) == 1:
                raise
            print(f"skipped {name}: {exc}", file=sys.stderr)  # --all: the other runs go on
            continue
        done += 1
        if line := run.left_out_line():
            print(line, file=sys.stderr)
    if not done:
        raise RunError(f"none of the {len(names)} runs could be exported")
    if args.format == "tensorboard":
        print(f"see it with: tensorboard --logdir {args.output}", file=sys.stderr)
    elif args.format == "mlflow":
        print(f"see it with: {show}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code(lambda: run(args, Path(args.runs_dir)), (RunError, ArchiveError))


def run(args: argparse.Namespace, root: Path) -> None:
    if args.command == "list":
        for info in list_runs(root):
            r = row(info)
            acc = f"{r['test_accuracy']:.1%}" if isinstance(r["test_accuracy"], float) else "–"
            print(json.dumps(r) if args.json else f"{info.name}  {info.status:<10s} {acc:>6s}  {info.title}")
    elif args.command == "show":
        show(root, args.run, args.json)
    elif args.command == "export":
        export(args, root)
    elif args.command == "import":
        print(import_run(root, args.file))
    elif args.command == "delete":
        if not args.yes:
            raise RunError(f"add --yes to delete {args.run} for good")
        delete_run(root, args.run)


if __name__ == "__main__":
    raise SystemExit(main())
