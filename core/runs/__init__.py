"""Run directories: the one source of truth on disk for finished and running work.

    core/runs/folder.py      a run folder: written as training goes, read, listed, closed, deleted
    core/runs/checkpoint.py  its network and predictions, loaded and checked
    core/runs/names.py       a run in a few words
    core/runs/compare.py     runs side by side
    core/runs/archive.py     a run shared as a zip, and one taken in (hostile until checked)
    core/runs/export.py      a run for TensorBoard, ONNX and MLflow (optional packages: requirements-export.txt)
    core/runs/cache.py       what the pages keep in memory of them

The command line: `python -m core.runs --help` (core/runs/__main__.py). What other modules use is named here.
"""

from core.runs.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    MAX_PREDICTION_BYTES,
    MODEL_BOUNDS,
    load_model,
    load_predictions,
    load_weights,
    model_args,
)
from core.runs.folder import (
    DEFAULT_ROOT,
    END_STATUSES,
    MAX_EVENTS,
    RUNNING,
    RunError,
    RunInfo,
    RunWriteError,
    RunWriter,
    add_meta,
    atomic_write_bytes,
    atomic_write_json,
    delete_run,
    list_runs,
    load_run,
    mark_interrupted,
    read_events,
    run_name,
    run_path,
    write_meta,
    writer_alive,
)
from core.runs.names import KNOB_TEXT, knob_text, run_line

__all__ = [
    "DEFAULT_ROOT", "END_STATUSES", "KNOB_TEXT", "MAX_CHECKPOINT_BYTES", "MAX_EVENTS", "MAX_PREDICTION_BYTES",
    "MODEL_BOUNDS", "RUNNING", "RunError", "RunInfo", "RunWriteError", "RunWriter", "add_meta", "atomic_write_bytes",
    "atomic_write_json", "delete_run", "knob_text", "list_runs", "load_model", "load_predictions", "load_run",
    "load_weights", "mark_interrupted", "model_args", "read_events", "run_line", "run_name", "run_path", "write_meta",
    "writer_alive",
]
