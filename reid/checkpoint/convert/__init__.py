"""Importers of published re-ID checkpoints (torchreid, fast-reid, TransReID, CLIP-ReID, SOLIDER-REID) into ordinary
reid checkpoints.

``convert_checkpoint(source, weights, output, ...)`` reads the peer's file safely, maps every tensor strictly
(:mod:`.core`), writes a checkpoint with its resolved config that every reid tool loads, and, when the peer
package is importable, runs the peer's own model and the converted one on the same pixels (:mod:`.verify`).
TransReID, CLIP-ReID and SOLIDER-REID are not installable; their converters are checked against embeddings their
own code computed, stored as test fixtures (tests/fixtures/README.md says how they were made).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from ...utils.errors import CheckpointError
from . import clipreid, fastreid, solider, torchreid, transreid
from .core import Converted, Plan, read_peer_file, write_checkpoint
from .verify import PeerModel, Verification, verify_checkpoint

SOURCES = ("torchreid", "fastreid", "transreid", "clipreid", "solider")
# sources described by their training YAML (--peer-config), each with its planner
_YAML_SOURCES = {"transreid": transreid.plan, "clipreid": clipreid.plan, "solider": solider.plan}
PEERS: Dict[str, Callable[[Plan], Optional[PeerModel]]] = {"torchreid": torchreid.peer_model,
                                                           "fastreid": fastreid.peer_model}
INSTALL = {"torchreid": "pip install --no-deps --no-build-isolation torchreid==0.2.5 (see requirements-peers.txt)",
           "fastreid": "pip install --no-deps fastreid==1.4.0 (see requirements-peers.txt)"}


class ConversionError(CheckpointError):
    """A converted checkpoint whose embeddings differ from the peer's beyond the tolerance."""


@dataclass
class ConversionReport:
    """What ``convert_checkpoint`` wrote and how it was checked."""

    converted: Converted
    verification: Optional[Verification]  # None when not verified (see ``skipped``)
    skipped: str = ""  # why the peer comparison did not run

    @property
    def path(self) -> Path:
        return self.converted.path

    def lines(self) -> list:
        c = self.converted
        dropped = (f", not converted (classifier of {c.plan.num_classes} identities"
                   f"{', parts the peer never uses for embeddings' if c.plan.source in _YAML_SOURCES else ''}): "
                   f"{_few(c.dropped)}") if c.dropped else ""
        out = [f"converted {c.plan.description} -> {c.path} ({len(c.plan.state) - len(c.dropped)} tensors mapped"
               f"{dropped}; {c.parameters:,} parameters)"]
        out.append(self.verification.line() if self.verification is not None else f"verify: skipped ({self.skipped})")
        return out


def _few(keys: Sequence[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def plan_conversion(source: str, weights: str | os.PathLike, arch: Optional[str] = None,
                    peer_config: Optional[fastreid.PeerConfig] = None, trust_pickle: bool = False,
                    opts: Sequence[str] = ()) -> Plan:
    """Read ``weights`` and decide how it maps onto a reid model (nothing is written). ``opts`` are ``KEY VALUE``
    overrides of the converted config (e.g. TEST.METRIC cosine), applied after the peer's settings."""
    if source not in SOURCES:
        raise CheckpointError(f"Unknown --source {source!r}; choose one of {', '.join(SOURCES)}.")
    if source == "torchreid" and not arch:
        raise CheckpointError(f"A torchreid checkpoint needs --arch NAME, one of {', '.join(sorted(torchreid.ARCHS))}"
                              f" (torchreid's model name, e.g. osnet_x1_0).")
    if source == "fastreid" and peer_config is None:
        raise CheckpointError("A fast-reid checkpoint needs --peer-config CONFIG.yml: the config.yaml fast-reid wrote "
                              "beside it, or the model-zoo config it was trained with.")
    if source in _YAML_SOURCES and peer_config is None:
        raise CheckpointError(f"A {source} checkpoint needs --peer-config CONFIG.yml: the YAML of the peer's configs/ "
                              f"folder it was trained with (its model, input size and feature choice).")
    obj = read_peer_file(weights, trust_pickle)
    if source == "torchreid":
        plan = torchreid.plan(obj, weights, arch)
    elif source == "fastreid":
        plan = fastreid.plan(obj, weights, peer_config)
    else:
        plan = _YAML_SOURCES[source](obj, weights, peer_config)
    if opts:
        plan.cfg = plan.cfg.clone()
        plan.cfg.defrost()
        plan.cfg.merge_from_list(list(opts))
        plan.cfg.validate()
        plan.cfg.freeze()
    return plan


def convert_checkpoint(source: str, weights: str | os.PathLike, output: str | os.PathLike,
                       arch: Optional[str] = None, peer_config: Optional[fastreid.PeerConfig] = None,
                       trust_pickle: bool = False, verify: bool = True, atol: float = 1e-4,
                       opts: Sequence[str] = ()) -> ConversionReport:
    """Convert the peer checkpoint ``weights`` to the reid checkpoint ``output``.

    ``source`` is "torchreid" (with ``arch``, torchreid's model name) or "fastreid" (with ``peer_config``, a
    fast-reid YAML or a :func:`fastreid.recipe` dict). ``trust_pickle`` allows files that need full unpickling
    (only for files from a source you trust). With ``verify`` and the peer importable, both models embed the same
    images and the report holds the largest difference, relative to the embedding scale (compare with ``atol``).
    ``opts`` are ``KEY VALUE`` overrides of the converted config.
    """
    plan = plan_conversion(source, weights, arch, peer_config, trust_pickle, opts)
    checks = fastreid.check_stripes if source == "fastreid" else None
    try:
        converted = write_checkpoint(plan, weights, output, checks)
    except CheckpointError as e:
        fit = torchreid.fitting_arch(plan.state, weights, exclude=arch) if source == "torchreid" else None
        if fit is None:
            raise
        raise CheckpointError(f"The file is not a torchreid {arch}: its tensors fit torchreid's {fit} exactly; "
                              f"convert it with --arch {fit}. (As {arch}: {e})") from None
    if not verify:
        return ConversionReport(converted, None, "not requested")
    if source in _YAML_SOURCES:
        return ConversionReport(converted, None, f"{source}'s code cannot be installed from the package index; reid's "
                                                 f"tests compare this importer with embeddings its code computed")
    peer = PEERS[source](plan)
    if peer is None:
        return ConversionReport(converted, None, f"{source} is not importable here; {INSTALL[source]} to compare")
    return ConversionReport(converted, verify_checkpoint(output, peer, converted.parameters, atol))


__all__ = ["convert_checkpoint", "plan_conversion", "ConversionReport", "ConversionError", "SOURCES",
           "read_peer_file", "Plan", "Verification"]
