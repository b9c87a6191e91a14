"""The locked environment (issue 25): ``requirements/lock.txt`` pins every package of the runtime and the test extra,
``make install`` installs exactly it, and every MLflow run gwpe opens carries its sha256."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import re
from pathlib import Path

from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import gwpe.tracking as tracking
from gwpe.config import parse_config
from gwpe.tracking import environment_tags, stage_run

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
INSTALLERS = {"pip", "gwpe"}  # pip is the installer (not locked); gwpe is installed from the checkout (-e .)
OPTIONAL_EXTRAS = ("bench", "dashboard")  # pyproject extras outside the lock; a developer may have installed them


def locked() -> dict[str, str]:
    """{normalised name: version} of the lock's ``name==version`` lines."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def installed() -> dict[str, metadata.Distribution]:
    """{normalised name: distribution} as imports see them (the first on sys.path wins)."""
    found = {}
    for dist in metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return found


def closure(roots: list[Requirement], dists: dict[str, metadata.Distribution]) -> set[str]:
    """The installed packages ``roots`` pull in (their dependencies' dependencies included)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or name not in dists:
            continue
        seen.add(name)
        for text in dists[name].requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return seen


def differences(pins: dict[str, str], dists: dict[str, metadata.Distribution]) -> list[str]:
    """What keeps the installed environment from being the lock, one line a package."""
    versions = {name: dist.version for name, dist in dists.items()}
    allowed = set(INSTALLERS)
    gwpe_requires = [Requirement(r) for r in (dists["gwpe"].requires or [])] if "gwpe" in dists else []
    allowed |= closure(
        [r for r in gwpe_requires if r.marker and any(r.marker.evaluate({"extra": e}) for e in OPTIONAL_EXTRAS)], dists
    )
    if versions.get("torch") != pins.get("torch"):  # a GPU user's own CUDA torch (Makefile: TORCH_SPEC) and its deps
        allowed |= closure([Requirement("torch")], dists) - set(pins)
        pins = {k: v for k, v in pins.items() if k != "torch"}
    lines = [
        f"{n}: installed {versions.get(n, 'nothing')}, locked {v}" for n, v in pins.items() if versions.get(n) != v
    ]
    lines += [f"{n}: installed {versions[n]}, not in the lock" for n in sorted(set(versions) - set(pins) - allowed)]
    return sorted(lines)


def test_the_installed_environment_is_the_lock():
    diff = differences(locked(), installed())
    assert not diff, "the environment is not requirements/lock.txt (make install):\n" + "\n".join(diff)


def test_the_comparison_names_each_differing_package():
    pins = {"numpy": "2.4.6", "scipy": "1.17.1", "torch": "2.13.0+cpu"}
    fake = {
        name: type("D", (), {"version": version, "requires": []})()
        for name, version in {"numpy": "2.4.5", "torch": "2.13.0+cpu", "leftpad": "1.0"}.items()
    }
    assert differences(pins, fake) == [
        "leftpad: installed 1.0, not in the lock",
        "numpy: installed 2.4.5, locked 2.4.6",
        "scipy: installed nothing, locked 1.17.1",
    ]


def test_the_lock_satisfies_pyproject_and_keeps_torch_on_the_cpu():
    """A dependency edited in pyproject.toml without `make lock` fails here, naming the package; the lock never
    pulls a CUDA torch (nvidia-* packages, triton) and pins the Makefile's TORCH_SPEC."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    stale = []
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(text)
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(Version(version), prereleases=True):
            stale.append(f"{req}: locked {version}")
    assert not stale, "requirements/lock.txt is stale (run make lock):\n" + "\n".join(stale)
    assert not [n for n in pins if n.startswith("nvidia-") or n == "triton"]
    torch_spec = re.search(r"^TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    assert Requirement(torch_spec).specifier.contains(Version(pins["torch"]))
    assert Version(pins["torch"]).local in (None, "cpu")


def test_every_stage_run_carries_the_lock_hash(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # found from the package source, not the working directory
    config = parse_config({"profile": "unit", "tracking": {"experiment": "gwpe-lock"}})
    with stage_run(config, stage="unit-stage") as run:
        run_id = run.info.run_id
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["gwpe.env.lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert tags["gwpe.env.lock_path"] == "requirements/lock.txt"

    monkeypatch.setattr(tracking, "LOCK_FILE", Path("requirements") / "no-such-lock.txt")  # a wheel: no lock
    with stage_run(config, stage="unit-stage") as run:
        run_id = run.info.run_id
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["gwpe.env.lock_sha256"] == "none" and tags["gwpe.env.lock_path"] == "none"


def test_an_installed_wheel_without_a_lock_records_none(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages" / "gwpe"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    assert environment_tags(site / "__init__.py") == {"gwpe.env.lock_sha256": "none", "gwpe.env.lock_path": "none"}
    assert environment_tags(Path("/")) == {"gwpe.env.lock_sha256": "none", "gwpe.env.lock_path": "none"}
