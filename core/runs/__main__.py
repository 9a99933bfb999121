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
from core.runs import RunError, delete_run, list_runs, load_run
from core.runs.archive import ArchiveError, export_run, import_run

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
    export = sub.add_parser("export", help="one run as a zip")
    export.add_argument("run")
    export.add_argument("-o", "--output", required=True, help="the zip to write")
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
    info = load_run(root / name) if name and Path(name).name == name and (root / name).is_dir() else None
    if info is None:
        raise RunError(f"there is no run {name!r} in {root}")
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
        print(export_run(root, args.run, args.output), file=sys.stderr)
    elif args.command == "import":
        print(import_run(root, args.file))
    elif args.command == "delete":
        if not args.yes:
            raise RunError(f"add --yes to delete {args.run} for good")
        delete_run(root, args.run)


if __name__ == "__main__":
    raise SystemExit(main())
