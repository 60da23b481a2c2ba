"""The README's promises to a newcomer, checked: its colcon dependency line hands pip exactly the
non-ROS pins, the ROS pins are one file per distro that ROS_DISTRO picks, `make clean` keeps trained models, the demo's checkpoint is the one the README runs, the demo's SUPERVISION choice and report table,
and the repository refers to nothing outside itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RECIPE_MARKER = "<!-- colcon-recipe:"


def _colcon_recipe() -> list[str]:
    """The lines of the fenced bash block right after the README's colcon-recipe marker."""
    text = README.read_text()
    assert RECIPE_MARKER in text, "README.md lost the colcon-recipe marker above its colcon block"
    after = text.split(RECIPE_MARKER, 1)[1]
    m = re.search(r"^```bash\n(.*?)^```", after, flags=re.S | re.M)
    assert m, "no ```bash block after the colcon-recipe marker"
    return m.group(1).splitlines()


def _pip_line() -> str:
    lines = [ln for ln in _colcon_recipe() if ln.startswith("pip install ")]
    assert len(lines) == 1, f"expected one pip install line in the colcon recipe, got {lines}"
    return lines[0]


def _requirements(path: Path) -> set[str]:
    """requirements.txt's requirements, normalised, as pip reads them (full-line comments only)."""
    reqs = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            reqs.add(str(Requirement(line)))
    return reqs


def test_requirements_have_no_inline_comments() -> None:
    for path in [REPO / "requirements.txt", *sorted(REPO.glob("requirements-ros-*.txt"))]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                assert "#" not in line, f"{path.name}:{n} has an inline comment: {line!r}"


def _makefile_distros() -> tuple[list[str], str]:
    """The Makefile's supported ROS distros and its default."""
    text = (REPO / "Makefile").read_text()
    distros = re.search(r"^ROS_DISTROS := (.+)$", text, flags=re.M).group(1).split()
    default = re.search(r"^override ROS_DISTRO := (\S+)$", text, flags=re.M).group(1)
    return distros, default


def test_ros_pins_are_one_file_per_distro() -> None:
    """requirements.txt holds no ROS wheel; requirements-ros-<distro>.txt, one per distro the Makefile
    supports, pins exactly that distro's wheels, the same packages for every distro."""
    distros, default = _makefile_distros()
    assert default == "jazzy" and default in distros and "kilted" in distros
    assert not any(r.startswith("ros-") for r in _requirements(REPO / "requirements.txt"))
    files = sorted(p.name for p in REPO.glob("requirements-ros-*.txt"))
    assert files == sorted(f"requirements-ros-{d}.txt" for d in distros)
    packages = {}
    for d in distros:
        reqs = [Requirement(r) for r in _requirements(REPO / f"requirements-ros-{d}.txt")]
        for r in reqs:
            assert r.name.startswith(f"ros-{d}-"), f"requirements-ros-{d}.txt pins {r}"
            assert len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==", f"{r} is not pinned"
        packages[d] = {(r.name.removeprefix(f"ros-{d}-"), tuple(sorted(r.extras))) for r in reqs}
    assert all(packages[d] == packages[default] for d in distros), packages
    assert ("rclpy", ("fastrtps",)) in packages[default]


def _make_dry(target: str, env_distro: str | None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`make -n -B target` (print every command, run none) with ROS_DISTRO as given, or unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_DISTRO", "MAKEFLAGS", "MFLAGS")}
    if env_distro is not None:
        env["ROS_DISTRO"] = env_distro
    return subprocess.run(["make", "--no-print-directory", "-n", "-B", target, "PYTHON=false"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_ros_distro_picks_the_venv_and_its_pins() -> None:
    unset = _make_dry("venv", None)
    assert unset.returncode == 0, unset.stderr
    assert "-r requirements.txt -r requirements-ros-jazzy.txt" in unset.stdout
    assert ".venv-kilted" not in unset.stdout
    assert _make_dry("venv", "").stdout == unset.stdout
    kilted = _make_dry("venv", "kilted")
    assert kilted.returncode == 0, kilted.stderr
    assert "requirements-ros-kilted.txt" in kilted.stdout and "python3 -m venv" not in kilted.stdout
    assert "false -m venv --without-pip .venv-kilted" in kilted.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
@pytest.mark.parametrize("distro", ["humble", "rolling"])
def test_ros_distro_without_wheels_stops_with_one_sentence(distro: str) -> None:
    for target in ("venv", "test", "demo"):
        r = _make_dry(target, distro)
        assert r.returncode != 0 and r.stdout == ""
        assert re.search(rf"\*\*\* ROS_DISTRO={distro} [^.]*\bjazzy\b[^.]*\bkilted\b[^.]*\.  Stop\.$", r.stderr.strip()), r.stderr
    assert _make_dry("clean", distro).returncode == 0, "cleaning needs no ROS distro"


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_a_venv_holding_another_distros_wheels_is_rebuilt(tmp_path: Path) -> None:
    """A .venv/ made when Kilted was the only distro must not get Jazzy's wheels on top."""
    for name in ["Makefile", "requirements.txt", *(p.name for p in REPO.glob("requirements-ros-*.txt")),
                 "setup.py", "setup.cfg", "package.xml", "pyproject.toml"]:
        shutil.copy(REPO / name, tmp_path / name)
    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "ros_kilted_rclpy-9.1.2.dist-info").mkdir(parents=True)
    (tmp_path / ".venv" / ".installed").write_text("kilted\n")  # newer than every pin file
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_DISTRO", "MAKEFLAGS", "MFLAGS")}
    r = subprocess.run(["make", "--no-print-directory", "-n", "venv", "PYTHON=false"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ros_kilted_rclpy-9.1.2.dist-info" in r.stdout and "rm -rf .venv;" in r.stdout
    assert "-r requirements-ros-jazzy.txt" in r.stdout


def test_colcon_recipe_pips_inside_a_venv_colcon_ignores() -> None:
    """ROS 2's recommended way: a --system-site-packages venv marked COLCON_IGNORE, pip only inside
    it, and colcon run by that venv's python (Ubuntu 24.04 refuses pip outside a venv)."""
    recipe = [ln.strip() for ln in _colcon_recipe()]

    def index(prefix: str) -> int:
        found = [i for i, ln in enumerate(recipe) if ln.startswith(prefix)]
        assert found, f"the colcon recipe has no line starting with {prefix!r}"
        return found[0]

    venv = index("python3 -m venv --system-site-packages ")
    venv_dir = recipe[venv].split()[-1]
    ignore = index(f"touch {venv_dir}/COLCON_IGNORE")
    activate = index(f"source {venv_dir}/bin/activate")
    pip = index("pip install ")
    build = index("python -m colcon build")
    assert venv < ignore < pip and venv < activate < pip < build
    assert not any(ln.startswith(("sudo pip", "pip3 install")) for ln in recipe)


def test_readme_dependency_command_hands_pip_the_non_ros_pins(tmp_path: Path) -> None:
    """Runs the README's own $(...) with bash, word splitting included, on requirements.txt laid out
    where the recipe expects it, and checks each word pip would get."""
    line = _pip_line()
    m = re.fullmatch(r"pip install (\$\((.*)\))", line)
    assert m, f"the pip line is not `pip install $(...)`: {line!r}"
    substitution, inner = m.group(1), m.group(2)
    paths = re.findall(r"\S*requirements\.txt", inner)
    assert len(paths) == 1, inner
    ws = tmp_path / "ws"  # the recipe's `cd ~/ws`
    target = ws / paths[0]
    target.parent.mkdir(parents=True)
    shutil.copy(REPO / "requirements.txt", target)

    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {substitution}"], cwd=ws, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    words = out.split("\n")[:-1]
    assert words, "the dependency command produced no package"
    parsed = []
    for word in words:
        assert not word.startswith("#"), f"pip would be handed {word!r}"
        parsed.append(str(Requirement(word)))  # raises InvalidRequirement on anything pip refuses
    assert len(parsed) == len(set(parsed)), "a requirement is handed to pip twice"
    expected = {r for r in _requirements(REPO / "requirements.txt") if not r.startswith("ros-")}
    assert set(parsed) == expected
    assert not any(p.startswith("ros-") for p in parsed)


@pytest.fixture
def makefile_copy(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "best.pt").write_bytes(b"trained")
    (tmp_path / "demo-output" / "report").mkdir(parents=True)
    (tmp_path / "demo-output" / "report" / "report.md").write_text("# report\n")
    for d in ("build/moadepth_ros", "install", "log", "pkg/__pycache__", ".pytest_cache"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "bench-results.json").write_text("{}\n")
    return tmp_path


def _make(where: Path, target: str) -> subprocess.CompletedProcess:
    # PYTHON=false: any attempt to build the venv would fail the command.
    return subprocess.run(["make", "--no-print-directory", target, "PYTHON=false"], cwd=where,
                          capture_output=True, text=True, timeout=60)


def test_make_clean_keeps_trained_models(makefile_copy: Path) -> None:
    r = _make(makefile_copy, "clean")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (makefile_copy / "runs" / "x" / "best.pt").read_bytes() == b"trained"
    assert (makefile_copy / "demo-output" / "report" / "report.md").is_file()
    assert (makefile_copy / "bench-results.json").is_file()
    for gone in ("build", "install", "log", "pkg/__pycache__", ".pytest_cache"):
        assert not (makefile_copy / gone).exists(), f"make clean left {gone}"
    assert not (makefile_copy / ".venv").exists(), "make clean created the venv"


def test_make_clean_outputs_says_what_it_removes(makefile_copy: Path) -> None:
    r = _make(makefile_copy, "clean-outputs")
    assert r.returncode == 0, r.stdout + r.stderr
    listed = r.stdout.split("rm -rf")[0]
    for name in ("runs", "demo-output", "bench-results.json"):
        assert name in listed, f"clean-outputs did not name {name} before removing it:\n{r.stdout}"
        assert not (makefile_copy / name).exists()
    assert (makefile_copy / "build").is_dir(), "clean-outputs is not clean"


def test_readme_runs_the_checkpoint_the_demo_trains() -> None:
    readme = README.read_text()
    m = re.search(r"checkpoint:=(\S+)", readme)
    assert m, "the README never shows the node a checkpoint"
    first = m.group(1)
    demo = (REPO / "scripts" / "demo.sh").read_text()
    out = re.search(r"^OUT=\$\{DEMO_OUT:-([^}]+)\}", demo, flags=re.M).group(1)
    ckpt = re.search(r"^\s*CKPT=\$OUT/(\S+)$", demo, flags=re.M).group(1)
    assert first == f"{out}/{ckpt}", "the README's first node command does not run the demo's checkpoint"
    from moadepth_core.training.run_files import BEST_CHECKPOINT

    assert Path(ckpt).name == BEST_CHECKPOINT, "the demo hands the node another file than the best checkpoint"
    trainer = (REPO / "moadepth_core" / "training" / "trainer.py").read_text()
    assert "self.save(BEST_CHECKPOINT, metrics, with_state=False)" in trainer, \
        "the trainer writes the best checkpoint with optimiser state"


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                               timeout=30).stdout.decode().split("\0")
        files = [REPO / n for n in names if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "install", "log"}
        files = [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]
    out = []
    for p in files:
        if p.is_file() and p.suffix not in {".png", ".pt", ".onnx", ".mcap", ".db3"}:
            out.append(p)
    return out


def test_repository_refers_to_nothing_outside_itself() -> None:
    outside = ["../" + "shared", "shared/" + "ENVIRONMENT.md", "shared/" + "PAPER.md"]
    hits = []
    for p in _tracked_text_files():
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{p.relative_to(REPO)}: {s}" for s in outside if s in text]
    assert not hits


def test_docs_the_readme_names_exist() -> None:
    docs = set(re.findall(r"docs/[A-Za-z_]+\.md", README.read_text()))
    assert {"docs/PAPER.md", "docs/INSTALL.md", "docs/ROS.md"} <= docs
    assert all((REPO / d).is_file() for d in docs), sorted(d for d in docs if not (REPO / d).is_file())


def test_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def _demo_refuses(r: subprocess.CompletedProcess, out: Path) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(lines) == 1 and "SUPERVISION=bogus" in lines[0] and "photometric" in lines[0], r.stderr
    assert "Traceback" not in r.stdout + r.stderr and not out.exists(), "the demo did work before refusing"


def test_demo_refuses_an_unknown_supervision_in_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "SUPERVISION": "bogus", "DEMO_OUT": str(out), "MOADEPTH_VENV": str(tmp_path / "no-venv")}
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                       timeout=30)
    _demo_refuses(r, out)


def test_make_demo_hands_supervision_to_the_script(makefile_copy: Path) -> None:
    """`make demo SUPERVISION=...` reaches scripts/demo.sh's environment (GNU make exports command-line
    variables to recipes): a venv stamp newer than its prerequisites, so make only runs the recipe."""
    import time

    earlier = time.time() - 3600
    for name in ("requirements.txt", "requirements-ros-jazzy.txt", "setup.py", "setup.cfg", "package.xml",
                 "pyproject.toml"):
        (makefile_copy / name).write_text("")
        os.utime(makefile_copy / name, (earlier, earlier))
    stamp = makefile_copy / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.write_text("jazzy\n")
    (makefile_copy / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "demo.sh", makefile_copy / "scripts" / "demo.sh")
    out = makefile_copy / "demo"
    r = subprocess.run(["make", "--no-print-directory", "-s", "demo", "SUPERVISION=bogus", f"DEMO_OUT={out}",
                        "PYTHON=false"], cwd=makefile_copy, capture_output=True, text=True, timeout=60)
    # make's own "recipe failed" line (make[N] when this suite itself runs under make test)
    r.stderr = "\n".join(ln for ln in r.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", ln))
    _demo_refuses(r, out)


def test_photometric_report_puts_the_depth_demo_beside_it(tmp_path: Path) -> None:
    """scripts/demo.py's comparison block: one table row per demo, or one line saying to run `make demo`."""
    import argparse
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)

    def metrics(abs_rel: float) -> dict:
        return {"abs_rel": abs_rel, "delta1": 0.5, "rmse": 0.7, "costmap": {
            "iou": 0.0, "precision": None, "recall": 0.0, "unfiltered": {"iou": 0.25, "precision": 0.5, "recall": 0.4}}}

    for name, m in (("photo", metrics(0.3)), ("depth", metrics(0.2))):
        (tmp_path / name / "eval").mkdir(parents=True)
        (tmp_path / name / "eval" / "metrics.json").write_text(json.dumps(m))
    args = argparse.Namespace(eval=str(tmp_path / "photo" / "eval"), recording=str(tmp_path / "photo" / "none"),
                              image_topic="/i", depth_topic="/d", prediction_topic="/depth/image",
                              beside=f"depth-supervised={tmp_path / 'missing'}")
    alone = demo.beside_block(args, metrics(0.3))
    assert "run `make demo`" in alone and alone.count("| photometric") == 1 and "| depth-supervised" not in alone
    args.beside = f"depth-supervised={tmp_path / 'depth'}"
    both = demo.beside_block(args, metrics(0.3))
    rows = [ln for ln in both.splitlines() if ln.startswith("| ") and "AbsRel" not in ln]
    assert len(rows) == 2 and "make demo" not in both
    assert rows[0].startswith("| photometric") and "| 0.300 |" in rows[0]
    assert rows[1].startswith("| depth-supervised | 0.200 | 0.500 | 0.700 | undefined | 0.250 | 0.500 | 0.400 |")
