"""Reading an export directory's manifest.json on the Pi side (the standard library only).

manifest.json: {"variants": {NAME: {"file": PATH relative to the export dir,
"header": PATH (micro), "tensor_arena_bytes[_recommended]": int (micro),
"quantization": {...}, ...}}, "source_checkpoint": PATH, ...}.
"""
from __future__ import annotations

import json
import os

from export.harness.errors import HarnessError

MANIFEST = "manifest.json"


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise HarnessError(f"{path} is not valid JSON ({e})") from None


def load_manifest(export_dir: str) -> dict:
    """The manifest of ``export_dir``; one-line HarnessError if it is missing or malformed."""
    path = os.path.join(export_dir, MANIFEST)
    if not os.path.isdir(export_dir):
        raise HarnessError(f"--export_dir={export_dir} is not a directory")
    if not os.path.isfile(path):
        raise HarnessError(f"{export_dir} has no {MANIFEST}; expected an export directory "
                           f"written by `python -m export.convert`")
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("variants"), dict) \
            or not manifest["variants"]:
        raise HarnessError(f"{path} has no 'variants' mapping; expected "
                           f"{{\"variants\": {{NAME: {{\"file\": ..., \"bytes\": ...}}}}}}")
    return manifest


def is_micro(name: str, entry: dict) -> bool:
    """Whether a variant is the TFLite-Micro C array."""
    f = str(entry.get("file", ""))
    return "micro" in name.lower() or f.startswith("micro/") or f.endswith((".cc", ".h"))


def arena_bytes(entry: dict) -> int | None:
    """Tensor-arena bytes for TFLM from a manifest entry (recommended size first)."""
    for key in ("tensor_arena_bytes_recommended", "arena_bytes_recommended"):
        if entry.get(key):
            return int(entry[key])
    for key in ("tensor_arena_bytes", "arena_bytes"):
        if entry.get(key):
            return 2 * int(entry[key])  # the minimum measured on the exporting machine
    return None


def entry_for(model_path: str, manifest_path: str | None = None
              ) -> tuple[dict | None, dict | None]:
    """(manifest, entry + {"name"}) describing ``model_path``.

    ``manifest_path`` if given (one-line error if it does not exist), else the
    manifest next to the model or one directory above (micro/ sits below the
    export dir). (None, None) without a manifest; (manifest, None) when no
    entry's file or header is the model.
    """
    model_abs = os.path.abspath(model_path)
    cands = [manifest_path] if manifest_path else [
        os.path.join(os.path.dirname(model_abs), MANIFEST),
        os.path.join(os.path.dirname(os.path.dirname(model_abs)), MANIFEST)]
    for cand in cands:
        if not os.path.isfile(cand):
            if manifest_path:
                raise HarnessError(f"--manifest={cand} does not exist")
            continue
        manifest = _read_json(cand)
        base = os.path.dirname(os.path.abspath(cand))
        for name, entry in (manifest.get("variants") or {}).items():
            files = [entry.get("file"), entry.get("header")]
            if any(f and os.path.abspath(os.path.join(base, str(f))) == model_abs
                   for f in files):
                return manifest, dict(entry, name=name)
        return manifest, None
    return None, None
