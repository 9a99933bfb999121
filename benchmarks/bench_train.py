"""The tutorial's own training loop against ours, side by side in one run, on the real CIFAR-10.

    python benchmarks/bench_train.py [--work /tmp/cifar10-bench] [--skip-tutorial-loop] [--device cuda]

On a GPU (--device cuda) the tutorial's loop is its "Training on GPU" section: the net moved to the
device once, each batch moved with `.to(device)` inside the loop.

Measures:
1. the tutorial's loop exactly as written (ImageFolder + per-sample ToTensor/Normalize,
   DataLoader(batch_size=4, shuffle=True, num_workers=2), SGD lr 0.001 momentum 0.9, 2 epochs);
2. `python -m core.train --preset tutorial` (same settings, our loop);
3. `python -m core.train --preset fast --target-accuracy 0.55`, whole command wall-clock.
The dataset cache is built before any timing (a user pays that once).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cifar10_folder, run_cli  # noqa: E402


def tutorial_loop(folder: Path, epochs: int = 2, device: str = "cpu") -> dict:
    """The tutorial's code, changed only to read the image folder instead of downloading the binary set."""
    import torch
    import torch.nn as nn
    import torch.optim as optim
    import torchvision
    import torchvision.transforms as transforms

    from core.model import Net  # the tutorial's Net (same layers; checked to have 62,006 parameters)

    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    trainset = torchvision.datasets.ImageFolder(str(folder / "train"), transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=4, shuffle=True, num_workers=2)
    testset = torchvision.datasets.ImageFolder(str(folder / "test"), transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=4, shuffle=False, num_workers=2)
    net = Net().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    started = time.perf_counter()
    images = 0
    for epoch in range(epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data[0].to(device), data[1].to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            images += len(labels)
            if i % 2000 == 1999:
                print(f"  tutorial [{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}", file=sys.stderr)
                running_loss = 0.0
    if device == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    correct = total = 0
    with torch.no_grad():
        for images_, labels in testloader:
            correct += (net(images_.to(device)).argmax(1).cpu() == labels).sum().item()
            total += len(labels)
    return dict(train_seconds=train_seconds, images_per_second=images / train_seconds,
                test_accuracy=correct / total, wall=time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/cifar10-bench", help="where to unpack CIFAR-10 and write runs")
    parser.add_argument("--skip-tutorial-loop", action="store_true", help="use --tutorial-seconds instead")
    parser.add_argument("--tutorial-seconds", type=float, default=190.0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="where both loops train")
    args = parser.parse_args()
    work = Path(args.work)
    folder = cifar10_folder(work)
    dataset = f"folder:{folder}"
    common = ["--dataset", dataset, "--device", args.device,
              "--data-dir", str(work / "data"), "--runs-dir", str(work / "runs")]
    print("building the dataset cache (once) ...", file=sys.stderr)
    run_cli(*common, "--max-steps", "1")

    results = {}
    if not args.skip_tutorial_loop:
        print("1/3 the tutorial's loop, 2 epochs ...", file=sys.stderr)
        results["tutorial_loop"] = tutorial_loop(folder, device=args.device)
    else:
        results["tutorial_loop"] = dict(wall=args.tutorial_seconds, train_seconds=args.tutorial_seconds,
                                        images_per_second=100000 / args.tutorial_seconds, test_accuracy=None)
    print("2/3 core.train --preset tutorial ...", file=sys.stderr)
    ours, wall = run_cli(*common, "--preset", "tutorial")
    results["ours_tutorial"] = dict(ours, wall=wall)
    print("3/3 core.train --preset fast --target-accuracy 0.55 ...", file=sys.stderr)
    fast, wall = run_cli(*common, "--preset", "fast", "--target-accuracy", "0.55")
    results["ours_fast"] = dict(fast, wall=wall)

    tut, mine, quick = results["tutorial_loop"], results["ours_tutorial"], results["ours_fast"]
    speedup = mine["images_per_second"] / tut["images_per_second"]
    sooner = tut["train_seconds"] / quick["wall"]
    print()
    print(f"{'':34s}{'images/s':>10s}{'test acc':>10s}{'seconds':>10s}")
    for name, r, seconds in (("tutorial loop (2 epochs)", tut, tut["train_seconds"]),
                             ("core.train --preset tutorial", mine, mine["wall"]),
                             ("core.train --preset fast (to 55%)", quick, quick["wall"])):
        acc = f"{r['test_accuracy']:.1%}" if r.get("test_accuracy") is not None else "-"
        print(f"{name:34s}{r['images_per_second']:10,.0f}{acc:>10s}{seconds:10.1f}")
    print()
    print(f"training-loop speed at the tutorial's settings: {speedup:.2f}x the tutorial's loop (target >= 3x)")
    print(f"fast preset reaches {quick['test_accuracy']:.1%} {sooner:.1f}x sooner than the tutorial's 2 epochs "
          f"(target >= 8x, whole command incl. start-up)")
    print(f"tutorial preset accuracy after 2 epochs: {mine['test_accuracy']:.1%} (target 53-57%)")
    print(json.dumps({"speedup_images_per_second": speedup, "fast_sooner": sooner, **results}, default=str))


if __name__ == "__main__":
    main()
