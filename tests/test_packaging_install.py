"""The container images' install, replayed without a Docker engine: build the wheel with the Dockerfiles' own
command from the files the build context would hold, install it into a fresh venv per image the way the builder
stage does (the dependencies from the Dockerfile's own requirements script, then the wheel with `--no-deps`), and
run the image's command from that venv with the runtime stage's environment: the wheel holds both packages and no
tests, the command runs without writing, the Kubernetes client is only in the producer, and no dev tool is installed.

The Dockerfiles' rules: tests/test_packaging_dockerfiles.py; what both share: tests/docker_images.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docker_images import (
    DEV_TOOLS,
    IMAGES,
    PROJECT,
    REPO,
    WHEEL_BUILD,
    Image,
    context_files,
    copy_paths,
    dependency_script,
    flags,
    key_values,
    parse_dockerfile,
    requirement_name,
    run,
)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `docker build` would see of the paths the Dockerfiles COPY, in the repository's layout."""
    root = tmp_path_factory.mktemp("context")
    sources = {
        source
        for image in IMAGES
        for stage in parse_dockerfile(image.dockerfile)
        for instruction in stage
        if instruction.keyword == "COPY" and "from" not in flags(instruction)
        for source in copy_paths(instruction)[0]
    }
    for source in sorted(sources):
        for path in context_files(source.rstrip("/")):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, root / path)
    return root


@pytest.fixture(scope="module")
def wheel_dir(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once with the builder stages' own command."""
    out = tmp_path_factory.mktemp("wheels")
    command = [str(out) if word == "/wheels" else word for word in WHEEL_BUILD.split()]
    run([sys.executable, "-m", *command], cwd=context)
    return out


@dataclass(frozen=True)
class Venv:
    image: Image
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


def download_wheelhouse(house: Path) -> Path:
    """Both images' dependencies, downloaded once from pip's configured index, so the venvs install offline."""
    listed = [run([sys.executable, "-c", dependency_script(image)], cwd=REPO).stdout for image in IMAGES]
    house.mkdir()
    requirements = house / "requirements.txt"
    requirements.write_text("\n".join(sorted({line for text in listed for line in text.split("\n") if line})))
    run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(house), "-r", str(requirements)])
    return house


def create_venv(venv: Venv) -> None:
    run([sys.executable, "-m", "venv", str(venv.path)])
    # It stands in for the image's python:3.11; another interpreter would prove little.
    assert (venv.path / "lib" / "python3.11").is_dir(), f"replaying a python:3.11 image with Python {sys.version}"


def fill_venv(venv: Venv, context: Path, wheelhouse: Path, wheel_dir: Path) -> None:
    """What the builder stage does to /opt/venv: the dependencies its script lists, then the wheel alone."""
    requirements = venv.path.parent / f"{venv.image.name}-requirements.txt"
    requirements.write_text(run([venv.python, "-c", dependency_script(venv.image)], cwd=context).stdout)
    pip = [venv.python, "-m", "pip", "--quiet"]
    run([*pip, "install", "--no-index", "--find-links", str(wheelhouse), "-r", str(requirements)])
    run([*pip, "install", "--no-deps", "--no-index", "--find-links", str(wheel_dir), venv.image.spec])
    run([venv.python, "-m", "pip", "check"])


@pytest.fixture(scope="module")
def venvs(context: Path, wheel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Venv]:
    """A fresh venv per image, filled as its builder stage fills /opt/venv with pip's index swapped for a
    wheelhouse. Built side by side: creating a venv and downloading take seconds each."""
    root = tmp_path_factory.mktemp("venvs")
    venvs = {image.name: Venv(image, root / image.name) for image in IMAGES}
    with ThreadPoolExecutor(max_workers=len(IMAGES) + 1) as pool:
        download = pool.submit(download_wheelhouse, root / "wheelhouse")
        for future in [pool.submit(create_venv, venv) for venv in venvs.values()]:
            future.result()
        wheelhouse = download.result()
        for future in [pool.submit(fill_venv, v, context, wheelhouse, wheel_dir) for v in venvs.values()]:
            future.result()
    return venvs


@pytest.fixture(params=IMAGES, ids=lambda image: image.name)
def venv(request: pytest.FixtureRequest, venvs: dict[str, Venv]) -> Venv:
    return venvs[request.param.name]


def runtime_env(venv: Venv) -> dict[str, str]:
    """The runtime stage's ENV with the test venv in place of the image's, and no home directory."""
    stages = parse_dockerfile(venv.image.dockerfile)
    (venv_copy,) = [i for i in stages[-1] if i.keyword == "COPY" and "from" in flags(i)]
    image_venv = copy_paths(venv_copy)[1]
    env = {k: v.replace(image_venv, str(venv.path)) for k, v in key_values(stages[-1], "ENV").items()}
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**env, "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def snapshot(root: Path) -> set[tuple[str, int, int]]:
    return {(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_wheel_holds_both_packages_and_no_tests(wheel_dir: Path) -> None:
    wheels = list(wheel_dir.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    assert wheels[0].name == f"task_processor-{PROJECT['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    top = {name.split("/")[0] for name in names}
    assert {"task_processor", "producer", "worker"} <= top, f"the wheel lacks a package: {sorted(top)}"
    lua = {name for name in names if name.endswith(".lua")}
    assert {
        "task_processor/lua/finish.lua",
        "task_processor/lua/lib/pop.lua",
        "task_processor/lua/enqueue.lua",
    } <= lua, f"the wheel lacks the Redis scripts: {sorted(lua)}"
    assert "producer/scaling/kube/client.py" in names, "the wheel lacks the producer's cluster client"
    assert "worker/cli.py" in names, "the wheel lacks the worker's command"
    assert not {"tests", "scripts"} & top, f"the wheel carries tests or scripts: {sorted(top)}"
    for script in ("task-worker = worker.cli:main", "task-producer = producer.commands.cli:main"):
        assert script in scripts, f"the wheel lacks the entry point {script!r}:\n{scripts}"


def test_image_command_runs_from_the_venv_without_writing(venv: Venv, tmp_path: Path) -> None:
    image = venv.image
    before = snapshot(venv.path)
    command = [str(venv.path / "bin" / image.command[0]), *image.command[1:], "--help"]
    result = run(command, cwd=tmp_path, env=runtime_env(venv))
    assert result.stdout.startswith(f"usage: {' '.join(image.command)} "), f"unexpected usage:\n{result.stdout}"
    assert result.stderr == "", f"{' '.join(image.command)} --help wrote to stderr:\n{result.stderr}"
    written = snapshot(venv.path) ^ before
    assert not written, (
        f"running {image.command[0]} wrote into the venv (read-only in the image): {sorted(written)[:5]}"
    )
    assert not list(tmp_path.iterdir()), "running the command wrote into its working directory"


def test_kubernetes_client_only_in_the_producer_venv(venv: Venv) -> None:
    result = run([venv.python, "-I", "-c", "import kubernetes"], env=runtime_env(venv), check=False)
    if venv.image.kube:
        assert result.returncode == 0, f"the producer image cannot import kubernetes:\n{result.stderr}"
    else:
        assert result.returncode != 0, "the worker image should not carry the kubernetes client"
        assert "No module named 'kubernetes'" in result.stderr, result.stderr


def test_no_dev_tools_installed(venv: Venv) -> None:
    # Each installed distribution with what it requires: a dev dependency that the image's own runtime
    # dependencies need as well (PyYAML, for the Kubernetes client) belongs there.
    listing = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: d.requires or [] for d in m.distributions()}))"
    )
    requires = json.loads(run([venv.python, "-I", "-c", listing]).stdout)
    installed = {requirement_name(name) for name in requires}
    assert "task-processor" in installed
    dev = {requirement_name(r) for r in PROJECT["optional-dependencies"]["dev"]} - {"task-processor"}
    needed = {
        requirement_name(r)
        for name, reqs in requires.items()
        if requirement_name(name) not in dev
        for r in reqs
        if "extra ==" not in r
        or (
            name == "task-processor"
            and any(f"extra == '{extra}'" in r.replace('"', "'") for extra in venv.image.extras)
        )
    }
    forbidden = (dev | DEV_TOOLS) - needed
    assert not forbidden & installed, f"dev dependencies in the {venv.image.name} image: {forbidden & installed}"
    assert ("kubernetes" in installed) == venv.image.kube
