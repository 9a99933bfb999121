"""The server's memory after uploads of the largest run zip it accepts (issue: "under 1.5 GB after 10 uploads").

    python -m benchmarks.bench_uploads [--uploads 10] [--width 1280]

Starts a real dashboard (Shapes cached, no other runs), then, in Chromium, ten times: uploads the zip on the
Runs page, opens Results and Network on it (both load its checkpoint and predictions) and the Runs page's
one-run section (its history). After each round it prints the server's resident memory (VmRSS of the
Streamlit process; the spare training worker is a process of its own and not counted).

The zip is the largest the import takes: a checkpoint of the widest network the caps allow (conv widths
1024/1024 at 64x64 pixels, 1000 classes), predictions at their cap, and a history at its point cap, all
zeros, so the zip itself is small.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def largest_run_zip() -> bytes:
    """A run zip at every cap of core.runs.archive, zeros inside."""
    import torch

    from core.config import TrainConfig
    from core.model import ModelArgs, Net
    from core.runs import MAX_EVENTS, MAX_PREDICTION_BYTES, MODEL_BOUNDS
    from core.runs.archive import FILES

    high = {name: bound[1] for name, bound in MODEL_BOUNDS.items()}
    net = Net(ModelArgs(**high))
    state = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    checkpoint = io.BytesIO()
    torch.save({"model_args": high, "state_dict": state, "epoch": 1}, checkpoint)
    rows = (MAX_PREDICTION_BYTES - 4096) // (2 * high["num_classes"])  # half precision, as the loop saves them
    predictions = io.BytesIO()
    torch.save({"epoch": 1, "probs": torch.zeros(rows, high["num_classes"], dtype=torch.half)}, predictions)
    config = TrainConfig(dataset="shapes", conv_width=high["conv_width"], conv2_width=high["conv2_width"])
    loss = {"type": "loss", "epoch": 1, "step": 1, "images_seen": 4, "train_seconds": 0.0, "running_loss": 2.3,
            "images_per_second": 100.0}
    lines = [json.dumps({"type": "start", "classes": [f"class {i}" for i in range(10)]})]
    lines += [json.dumps({**loss, "step": i, "images_seen": 4 * i}) for i in range(1, MAX_EVENTS - 1)]
    history = "\n".join(lines) + "\n"
    assert len(history) <= FILES["metrics.jsonl"], "the history's byte cap is below its point cap"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(config.to_dict()))
        zf.writestr("checkpoint.pt", checkpoint.getvalue())
        zf.writestr("predictions.pt", predictions.getvalue())
        zf.writestr("metrics.jsonl", history)
        zf.writestr("summary.json", json.dumps({"type": "end", "status": "finished", "test_accuracy": 0.1}))
    sizes = {m.filename: m.file_size for m in zipfile.ZipFile(io.BytesIO(out.getvalue())).infolist()}
    print(f"zip: {len(out.getvalue()) / 2**20:.1f} MB, unpacked {sum(sizes.values()) / 2**20:.0f} MB "
          f"({', '.join(f'{k} {v / 2**20:.1f} MB' for k, v in sizes.items())})", flush=True)
    return out.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def upload_and_view(page, url: str, archive: Path, pages=("results", "network")) -> str:
    """Upload `archive` on the Runs page, as a user does (the expander, the file chooser), then open each of
    `pages` on it (they show the newest run) until drawn; the line the Runs page said."""
    page.goto(f"{url}/runs")
    summary = page.locator("summary", has_text="Upload a run")
    summary.wait_for()
    page.wait_for_timeout(1000)
    if not page.locator('[data-testid="stFileUploaderDropzone"]').is_visible():
        summary.click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(archive))
    said = page.get_by_text("is now run").or_(page.get_by_text("was not taken in")).first
    said.wait_for()
    verdict = said.inner_text()
    for where in pages:
        page.goto(f"{url}/{where}")
        page.locator('[data-testid="stMain"]').get_by_role("heading").first.wait_for()
        page.wait_for_timeout(3000)
        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--settle", type=float, default=0,
                        help="then wait this long (Streamlit keeps a closed tab's session 2 minutes) and measure")
    parser.add_argument("--pages", default="results,network", help="the pages opened after each upload")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, start_server

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        archive = home / "largest-run.zip"
        archive.write_bytes(largest_run_zip())
        proc, url = start_server(home)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": args.width, "height": 720})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/runs")
                page.locator("summary", has_text="Upload a run").wait_for()
                page.wait_for_timeout(3000)
                print(f"start: server {rss_mb(proc.pid):.0f} MB", flush=True)
                for i in range(1, args.uploads + 1):
                    started = time.perf_counter()
                    verdict = upload_and_view(page, url, archive, filter(None, args.pages.split(",")))
                    print(f"upload {i}: server {rss_mb(proc.pid):.0f} MB, {time.perf_counter() - started:.0f} s "
                          f"({verdict[:80]})", flush=True)
                if args.settle:
                    page.close()
                    time.sleep(args.settle)
                    print(f"{args.settle:.0f} s later, no tab open: server {rss_mb(proc.pid):.0f} MB", flush=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
