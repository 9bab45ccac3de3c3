"""The container images, checked without a Docker engine: the Dockerfiles' rules, and their install replayed.

No Docker engine runs here, so these tests check what the images do instead of building them. They parse
Dockerfile.worker and Dockerfile.producer for the rules a regression would break (multi-stage, slim
Python 3.11, numeric non-root user, exec-form command, dependencies in their own layer, the Kubernetes
client only in the producer). Then they build the wheel with the Dockerfiles' own command from the files
the build context would hold, install it into a fresh venv per image the way the builder stage does (the
dependencies from the Dockerfile's own requirements script, then the wheel with `--no-deps`), and run the
image's command from that venv with the runtime stage's environment.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

# The runtime base: Python 3.11 pinned to the minor, the slim variant (optionally a Debian suite or a digest).
BASE_IMAGE = re.compile(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")
# How both builder stages build the wheel; the wheel fixture runs the same command.
WHEEL_BUILD = "pip wheel --no-deps --wheel-dir /wheels ."
# Never in an image, whatever the dev extra says.
DEV_TOOLS = {"pytest", "ruff", "hypothesis"}


@dataclass(frozen=True)
class Image:
    name: str
    spec: str  # what the builder installs from its wheel
    command: tuple[str, ...]
    extras: tuple[str, ...]  # the optional dependencies the image installs

    @property
    def kube(self) -> bool:
        """Whether the image carries the Kubernetes client."""
        return "kube" in self.extras

    @property
    def dockerfile(self) -> Path:
        return REPO / f"Dockerfile.{self.name}"


WORKER = Image("worker", "task-processor", ("task-worker",), extras=())
PRODUCER = Image(
    "producer", "task-processor[kube,dashboard]", ("task-producer", "autoscale"), extras=("kube", "dashboard")
)
IMAGES = [WORKER, PRODUCER]
each_image = pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)


# ---- reading Dockerfiles and .dockerignore --------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.keyword} {self.args}"


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """The instructions of each stage (one list per FROM), continuation lines joined, comments dropped."""
    stages: list[list[Instruction]] = []
    text, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops these, even inside a continued instruction
            continue
        if not text:
            start = number
        if line.endswith("\\"):
            text += line[:-1] + " "
            continue
        keyword, _, args = (text + line).partition(" ")
        text = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        elif not stages:
            assert keyword == "ARG", f"{path.name} line {start}: {keyword} before the first FROM"
            continue
        stages[-1].append(Instruction(keyword, args.strip(), start))
    return stages


def from_image(stage: list[Instruction]) -> tuple[str, str | None]:
    """A stage's base image and its alias (`FROM [--platform=...] IMAGE [AS NAME]`)."""
    words = [word for word in stage[0].args.split() if not word.startswith("--")]
    alias = words[2] if len(words) == 3 and words[1].lower() == "as" else None
    return words[0], alias


def flags(instruction: Instruction) -> dict[str, str]:
    return dict(word[2:].partition("=")[::2] for word in shlex.split(instruction.args) if word.startswith("--"))


def copy_paths(instruction: Instruction) -> tuple[list[str], str]:
    """The sources and the destination of a COPY, in shell or JSON form."""
    args = instruction.args
    words = json.loads(args) if args.startswith("[") else [w for w in shlex.split(args) if not w.startswith("--")]
    return words[:-1], words[-1]


def exec_form(instruction: Instruction) -> list[str] | None:
    """The argument list of a CMD or ENTRYPOINT in exec (JSON array) form, else None (shell form)."""
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def key_values(stage: list[Instruction], keyword: str) -> dict[str, str]:
    """What the ENV or LABEL instructions of a stage set (`KEY=VALUE ...`, later ones win)."""
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == keyword:
            for word in shlex.split(instruction.args):
                key, equals, value = word.partition("=")
                assert equals, f"use KEY=VALUE in {instruction}"
                values[key] = value
    return values


def builder_stage(stages: list[list[Instruction]]) -> list[Instruction]:
    """The stage the final one copies its venv from."""
    copies = [flags(i)["from"] for i in stages[-1] if i.keyword == "COPY" and "from" in flags(i)]
    assert len(copies) == 1, f"the final stage should copy exactly one thing (the venv) from a build stage: {copies}"
    named = [stage for stage in stages[:-1] if from_image(stage)[1] == copies[0]]
    assert named, f"COPY --from={copies[0]} names no earlier stage"
    return named[0]


def runs(stage: list[Instruction], *needles: str) -> list[int]:
    """Indexes of the RUN instructions of a stage that contain every needle."""
    return [n for n, i in enumerate(stage) if i.keyword == "RUN" and all(needle in i.args for needle in needles)]


def dependency_script(image: Image) -> str:
    """The Python one-liner with which the builder lists the dependencies to install from pyproject.toml."""
    builder = builder_stage(parse_dockerfile(image.dockerfile))
    found = runs(builder, "tomllib", "pip install -r")
    assert len(found) == 1, f"{image.dockerfile.name}: expected one RUN listing the dependencies with tomllib"
    match = re.search(r"python -c '([^']+)'", builder[found[0]].args)
    assert match, f"{image.dockerfile.name}: the dependency RUN should read: python -c '...' > requirements.txt"
    return match.group(1)


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's translation of a .dockerignore pattern: `**` spans directories, `*` and `?` stay within one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 3 if pattern.startswith("**/", i) else 2
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        char = pattern[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per line of .dockerignore, in order; `!` lines re-include."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            rules.append((not line.startswith("!"), dockerignore_regex(pattern)))
    return rules


def is_dockerignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` out of the context: the last matching rule wins, and a rule that
    matches a directory covers everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for excludes, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = excludes
    return ignored


def context_files(source: str) -> list[str]:
    """The files under a COPY source the build context holds (repository-relative, .dockerignore applied)."""
    rules = dockerignore_rules()
    root = REPO / source
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    relative = [f.relative_to(REPO).as_posix() for f in files]
    return [path for path in relative if not is_dockerignored(path, rules)]


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=110, check=False)
    if check:
        assert result.returncode == 0, (
            f"`{shlex.join(args)}` exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


# ---- the Dockerfiles' rules ---------------------------------------------------------------------------


@each_image
def test_images_are_multi_stage_on_one_pinned_slim_python(image: Image) -> None:
    stages = parse_dockerfile(image.dockerfile)
    assert len(stages) > 1, f"{image.dockerfile.name} should be multi-stage (a builder, then a clean runtime)"
    bases = [from_image(stage)[0] for stage in stages]
    assert BASE_IMAGE.fullmatch(bases[-1]), f"{image.dockerfile.name}: the runtime should be python:3.11-slim"
    # The builder's venv links to its interpreter, so the runtime must be the very same base.
    assert len(set(bases)) == 1, f"{image.dockerfile.name}: every stage should use one base image: {bases}"


@each_image
def test_runtime_runs_as_a_fixed_numeric_non_root_user(image: Image) -> None:
    final = parse_dockerfile(image.dockerfile)[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, f"{image.dockerfile.name}: the runtime stage has no USER, so it would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"{image.dockerfile.name}: USER {users[-1]} should be numeric so runAsNonRoot can verify it"
    assert int(match.group(1)) != 0, f"{image.dockerfile.name}: USER {users[-1]} is root"
    assert runs(final, f"--uid {match.group(1)}"), f"{image.dockerfile.name}: create user {match.group(1)} too"


@each_image
def test_command_is_exec_form_so_pid_1_gets_sigterm(image: Image) -> None:
    final = parse_dockerfile(image.dockerfile)[-1]
    commands = [i for i in final if i.keyword == "CMD"]
    assert commands, f"{image.dockerfile.name}: no CMD"
    assert exec_form(commands[-1]) == list(image.command), (
        f"{image.dockerfile.name}: CMD should be {json.dumps(list(image.command))}, not {commands[-1]}"
    )
    for entrypoint in (i for i in final if i.keyword == "ENTRYPOINT"):
        assert exec_form(entrypoint) is not None, f"{image.dockerfile.name}: shell-form ENTRYPOINT in {entrypoint}"


@each_image
def test_runtime_environment_and_labels(image: Image) -> None:
    stages = parse_dockerfile(image.dockerfile)
    env = key_values(stages[-1], "ENV")
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "no .pyc written at runtime (read-only root FS)"
    assert env.get("PYTHONUNBUFFERED") == "1", "log lines should not sit in a buffer"
    (venv_copy,) = [i for i in stages[-1] if i.keyword == "COPY" and "from" in flags(i)]
    assert env.get("PATH", "").startswith(copy_paths(venv_copy)[1] + "/bin:"), "the venv's bin comes first on PATH"
    labels = key_values(stages[-1], "LABEL")
    oci = "org.opencontainers.image."
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(oci + key), f"{image.dockerfile.name}: no {oci}{key} label"
    assert labels[oci + "version"] == PROJECT["version"], "the version label should follow pyproject.toml"
    assert labels[oci + "licenses"] == PROJECT["license"], "the licenses label should follow pyproject.toml"


@each_image
def test_dependencies_get_their_own_layer_before_the_sources(image: Image) -> None:
    builder = builder_stage(parse_dockerfile(image.dockerfile))
    copies = [(n, copy_paths(i)[0]) for n, i in enumerate(builder) if i.keyword == "COPY"]
    assert copies, f"{image.dockerfile.name}: the builder copies nothing"
    first, manifest = copies[0]
    assert "pyproject.toml" in manifest, "the first COPY should bring pyproject.toml alone (with README.md)"
    assert set(manifest) <= {"pyproject.toml", "README.md"}, (
        f"anything else in the first COPY busts the cache: {manifest}"
    )
    packages = {"task_processor", "producer", "worker"}
    copied = {p.rstrip("/") for _, paths in copies for p in paths}
    assert packages <= copied, f"{image.dockerfile.name}: the builder does not copy {sorted(packages - copied)}"
    sources = [n for n, paths in copies if packages & {p.rstrip("/") for p in paths}]
    dependencies = runs(builder, "pip install -r")
    assert dependencies, f"{image.dockerfile.name}: no RUN installs the dependencies (pip install -r)"
    assert first < dependencies[0] < min(sources), "install the dependencies between pyproject.toml and the sources"
    wheel = runs(builder, WHEEL_BUILD)
    assert wheel, f"{image.dockerfile.name}: the wheel should be built with `{WHEEL_BUILD}`"
    install = runs(builder, "pip install --no-deps", f'/wheels "{image.spec}"')
    assert install, f'{image.dockerfile.name}: install the wheel as "{image.spec}" with --no-deps from /wheels'
    assert max(sources) < wheel[0] <= install[0], "build and install the wheel after the sources are copied"


@each_image
def test_kubernetes_client_only_in_the_producer_image(image: Image) -> None:
    text = image.dockerfile.read_text().lower()
    if image.kube:
        assert f'"{image.spec}"' in text, f"the producer image installs {image.spec}"
    else:
        for word in ("kubernetes", "[kube]", "optional-dependencies"):
            assert word not in text, (
                f"{image.dockerfile.name} mentions {word!r}: the worker image has no cluster client"
            )
    listed = run([sys.executable, "-c", dependency_script(image)], cwd=REPO).stdout.split("\n")
    expected = PROJECT["dependencies"] + [r for extra in image.extras for r in PROJECT["optional-dependencies"][extra]]
    assert [line for line in listed if line] == expected, f"{image.dockerfile.name} installs the wrong dependencies"


@each_image
def test_no_dev_dependencies_in_the_dockerfile(image: Image) -> None:
    text = image.dockerfile.read_text().lower()
    dev = {requirement_name(r) for r in PROJECT["optional-dependencies"]["dev"]} - {"task-processor"}
    for word in sorted(dev | DEV_TOOLS | {"[dev]"}):
        assert word not in text, f"{image.dockerfile.name} mentions the dev dependency {word!r}"


@each_image
def test_copied_paths_exist_and_survive_dockerignore(image: Image) -> None:
    for stage in parse_dockerfile(image.dockerfile):
        for instruction in stage:
            if instruction.keyword not in ("COPY", "ADD") or "from" in flags(instruction):
                continue
            sources, destination = copy_paths(instruction)
            for source in sources:
                assert (REPO / source).exists(), f"{image.dockerfile.name} copies {source!r}, which is not in the repo"
                assert not is_dockerignored(source.rstrip("/"), dockerignore_rules()), (
                    f".dockerignore leaves {source!r} out of the context, but {image.dockerfile.name} copies it"
                )
                root = REPO / source
                wanted = {p.relative_to(REPO).as_posix() for p in ([root] if root.is_file() else root.rglob("*.py"))}
                dropped = wanted - set(context_files(source.rstrip("/")))
                assert not dropped, f".dockerignore drops files {image.dockerfile.name} copies: {sorted(dropped)}"
                # The wheel fixture stages the context in the repository's layout, as these copies do.
                assert destination in ("./", ".", f"./{source}", source), f"unexpected destination in {instruction}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    rules = dockerignore_rules()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/bin/kubectl",
        "tests/conftest.py",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/README.md",
        ".hypothesis/constants/x",
        "producer/__pycache__/api.cpython-311.pyc",
        "task_processor.egg-info/PKG-INFO",
        "dist/task_processor-0.1.0-py3-none-any.whl",
        ".env",
    ):
        assert is_dockerignored(path, rules), f".dockerignore should leave {path} out of the build context"
    for path in ("pyproject.toml", "README.md", "producer/api.py", "worker/cli.py"):
        assert not is_dockerignored(path, rules), f".dockerignore should keep {path}: the build needs it"


# ---- the install, replayed ----------------------------------------------------------------------------


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
