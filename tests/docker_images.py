"""What the packaging tests share (tests/test_packaging_dockerfiles.py, tests/test_packaging_install.py): the two
container images (Dockerfile.worker, Dockerfile.producer), a reader of Dockerfiles and of .dockerignore, and a
command runner that fails the test with the command's output.

No Docker engine runs in the tests, so they check what the images do instead of building them: the Dockerfiles'
rules, parsed (tests/test_packaging_dockerfiles.py), and their install, replayed into a fresh venv per image
(tests/test_packaging_install.py).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

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
