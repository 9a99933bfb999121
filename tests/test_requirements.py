"""The dependency bounds: requirements.txt refuses the releases with known holes, and accepts the releases this suite
runs on (so what CI tests is what the bounds promise)."""

import re
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

# releases requirements.txt must refuse, and why (the advisories; not the bounds themselves)
KNOWN_BAD = {
    "pillow": (["12.2.0", "12.1.1", "11.3.0"], "PSD out-of-bounds writes (12.1.1, 12.2.0); a critical JPEG decoder "
                                                "overflow fixed only in 13.0.0"),
    "torch": (["2.5.1", "2.2.0"], "torch.load(weights_only=True) could still run code before 2.6.0 (CVE-2025-32434)"),
    "streamlit": (["1.66.0", "1.40.0"], "no widgets bound to the URL (bind='query-params') or kept across pages"),
    "plotly": (["5.24.1"], "the live charts are written against plotly.js 3, which plotly 6 bundles"),
}


def requirements() -> dict[str, Requirement]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[req.name.lower()] = req
    return found


def test_every_dependency_has_a_lower_bound():
    for name, req in requirements().items():
        assert any(spec.operator in (">=", "==", "~=") for spec in req.specifier), f"{name} has no lower bound"


def test_the_releases_with_known_holes_are_refused():
    found = requirements()
    for package, (releases, why) in KNOWN_BAD.items():
        allowed = [r for r in releases if found[package].specifier.contains(r)]
        assert not allowed, f"requirements.txt allows {package} {', '.join(allowed)}: {why}"


def test_the_releases_this_suite_runs_on_are_allowed():
    for name, req in requirements().items():
        installed = re.match(r"[\d.]+", version(name))[0]
        assert req.specifier.contains(Version(installed)), f"{name} {installed} is installed, but {req} refuses it"
