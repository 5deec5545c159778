"""Run identity, in one place for `run` and `merge`: which config fields decide a dataset's content,
what an older run.json that lacks a field ran with, and how two runs compare."""
from __future__ import annotations

import hashlib
import json
from typing import Any

# Fields that do not change the result: a resumed run, or a shard, may differ in them freely.
FREE_FIELDS = ("seeds", "device", "batch", "compile", "encoders")
# Fields added after their default changed the output: what a run.json without them ran with.
LEGACY = {"mask_score": "margin"}
# `label` settings since removed, at the values that did nothing: a folder labelled with them resumes.
REMOVED_LABEL = {"prior": 0.0, "starts": 1, "tune": 0}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config (a run.json's `config`) that decide the result, missing ones filled in
    with what the version that lacked them did."""
    from .config import RunConfig

    out = {k: v for k, v in config.items() if k not in FREE_FIELDS}
    if isinstance(out.get("label"), dict):
        out["label"] = {k: v for k, v in out["label"].items() if REMOVED_LABEL.get(k, object()) != v}
    for k, v in {**RunConfig().to_dict(), **LEGACY}.items():
        if k not in FREE_FIELDS:
            out.setdefault(k, v)
    return out


def differences(run: dict[str, Any], config: dict[str, Any], gan_sha: str | None) -> list[str]:
    """The fields in which a run.json differs from `config` and a generator hash (empty: the same run)."""
    a, b = identity(run.get("config") or {}), identity(config)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    gen = run.get("generator")
    if not isinstance(gen, dict) or gen.get("sha256") != gan_sha:
        diff.append("generator weights")
    return diff


def config_id(config: dict[str, Any], gan_sha: str | None) -> str:
    """A short stable hash of what determines a run's result (its identity and the generator's hash)."""
    payload = {**identity(config), "generator_sha256": gan_sha}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
