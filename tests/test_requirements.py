"""The dependency bounds: never below the releases that fixed known holes, or that the app's code needs."""

import re

from tests.conftest import ROOT

# package -> the lowest release requirements.txt may allow, and why
MINIMUM = {
    "pillow": ((13, 0), "13.0.0 fixed a critical JPEG decoder overflow; 12.1.1/12.2.0 PSD out-of-bounds writes"),
    "streamlit": ((1, 67), "widgets bound to query parameters and kept across pages"),
    "torch": ((2, 10), "weights_only loading by default and the fused CPU SGD this app uses"),
    "torchvision": ((0, 25), "the release that pairs with torch 2.10"),
    "plotly": ((6, 0), "the plotly.js whose public API the live charts use"),
    "pandas": ((2, 0), "the Styler and pivot API of the Speed page"),
}


def bounds() -> dict[str, tuple[int, ...]]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", line)
        if match:
            found[match[1].lower()] = tuple(int(p) for p in match[2].split("."))
    return found


def test_every_dependency_has_a_lower_bound_at_or_above_the_known_fixes():
    found = bounds()
    for package, (minimum, why) in MINIMUM.items():
        assert package in found, f"{package} has no lower bound in requirements.txt"
        assert found[package] >= minimum, f"{package}>={'.'.join(map(str, found[package]))} allows releases " \
                                          f"below {'.'.join(map(str, minimum))}: {why}"
