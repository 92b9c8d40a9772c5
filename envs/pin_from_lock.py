"""Rewrites the pins of envs/*.yaml to the versions of requirements.lock (run by `make lock`).

The conda envs hold what the tests ran with: the lock is the one list of versions, these files
follow it. A package an env names that the lock lacks is an error: add it to pyproject.toml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^(\s*- )([A-Za-z0-9_.-]+)(==)([\w.+-]+)(.*)$")  # pip pins, not conda's


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Package name (normalised) to version, local labels (+cpu) dropped."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            pins[normalise(match.group(1))] = match.group(2).split("+")[0]
    return pins


def repin(env: Path, lock: dict[str, str]) -> list[str]:
    """Rewrites ``env`` in place; returns the packages it names that the lock lacks."""
    missing, lines = [], []
    for line in env.read_text().splitlines():
        match = PIN.match(line)
        if match:
            indent, name, sep, _, rest = match.groups()
            if normalise(name) in lock:
                line = f"{indent}{name}{sep}{lock[normalise(name)]}{rest}"
            else:
                missing.append(name)
        lines.append(line)
    env.write_text("\n".join(lines) + "\n")
    return missing


def main() -> int:
    lock = read_lock()
    problems = [
        f"{env.name}: {name} is not in {LOCK.name}"
        for env in sorted((REPO / "envs").glob("*.yaml"))
        for name in repin(env, lock)
    ]
    print("\n".join(problems) or "envs/*.yaml pinned to requirements.lock", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
