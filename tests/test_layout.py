"""The project's shape that ../shared/DESIGN.md and issue #16 ask for: an engine without Streamlit, no import circles
in it, functions a newcomer can read, no JavaScript or CSS hidden in Python strings, and an architecture document
that names only files that exist."""

import ast
import re

from tests.conftest import ROOT

CORE = sorted((ROOT / "core").rglob("*.py"))


def module(path) -> str:
    """core/runs/archive.py -> runs.archive; core/runs/__init__.py -> runs."""
    parts = path.relative_to(ROOT / "core").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_engine_never_imports_streamlit():
    for path in CORE:
        assert not any(n.split(".")[0] == "streamlit" for n in imports(path)), path.name


def test_no_import_circles_in_the_engine():
    graph = {module(p): {n[len("core."):] for n in imports(p) if n.startswith("core.")} for p in CORE}

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = [m for m in graph if reaches(m, m, set())]
    assert circles == [], f"modules on an import circle: {circles}"


def test_no_function_in_the_engine_is_longer_than_about_60_lines():
    long = []
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 62:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_no_javascript_or_css_in_python_strings():
    for path in [*CORE, *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "dashboard.py"]:
        text = path.read_text()
        assert not re.search(r"export default function|document\.querySelector|addEventListener", text), path
        assert not re.search(r"^\s*\.[\w-]+\s*\{[^}]*:", text, re.M), path  # a CSS rule


def test_every_file_the_architecture_document_names_exists():
    """docs/architecture.md names modules by path (`core/runs/cache.py`) or, inside a section on one package, by
    file name (`archive.py`): each must be in the tree, so the document cannot drift from the code unseen."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([A-Za-z0-9_.][A-Za-z0-9_./-]*(?:/|\.py|\.md|\.toml|\.js|\.css|\.txt))`", text))
    named |= set(re.findall(r"\(((?:core|ui|pages|tests|benchmarks|docs)/[A-Za-z0-9_./-]*)\)", text))
    files = {p.name for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    made_by_the_app = ("api/", "runs/")  # a route of the app's server; the folder its runs are written to
    missing = [name for name in sorted(named) if not name.startswith(made_by_the_app)
               and not ((ROOT / name).exists() if "/" in name.rstrip("/") or name.endswith("/") else name in files)]
    assert len(named) > 30 and not missing, missing


def test_the_poll_intervals_the_architecture_document_gives_are_the_codes():
    """Every "every X s until the first loss point, then every Y s" in docs/architecture.md is ui/live.py's."""
    from ui.live import FIRST_POLL_MS, POLL_MS

    text = " ".join((ROOT / "docs" / "architecture.md").read_text().split())
    said = re.findall(r"every ([\d.]+) s until the first loss point, then every ([\d.]+) s", text)
    assert said, "the document no longer says how often the live view asks"
    assert set(said) == {(f"{FIRST_POLL_MS / 1000:g}", f"{POLL_MS / 1000:g}")}, said


def sentences(path) -> list[str]:
    return re.split(r"(?<=[.;:])\s+(?=[A-Z`(])", " ".join(path.read_text().split()))


def test_every_flag_the_docs_give_core_train_is_one_of_its_flags():
    """A sentence of the README or docs/command-line.md that names `core.train` (and no other command) names only
    flags its parser has: `--tensorboard` once said an existing output "needs `--force`", which core.train lacks."""
    from core.train import build_parser

    flags = {s for action in build_parser()._actions for s in action.option_strings}
    others = ("torchrun", "torch.distributed", "core.runs", "core.speed", "core.datasets", "streamlit", "pip",
              "tensorboard --logdir", "mlflow", "ray ")
    wrong = []
    for path in (ROOT / "README.md", ROOT / "docs" / "command-line.md"):
        for sentence in sentences(path):
            if "core.train" in sentence and not any(o in sentence for o in others):
                wrong += [(path.name, f, sentence[:80]) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", sentence)
                          if f not in flags]
    assert wrong == []


def test_every_readme_section_the_code_cites_is_a_readme_heading():
    headings = {line.lstrip("#").strip() for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("#")}
    cited = []
    for path in [*CORE, *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        cited += [(path.name, name) for name in re.findall(r'README(?:\'s|:) "([^"]+)"', path.read_text())]
    missing = [(file, name) for file, name in cited if not any(h.startswith(name) for h in headings)]
    assert cited and not missing, missing
