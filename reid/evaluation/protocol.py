"""The evaluation protocol of a query x gallery split: which pairs are scored, in one public object.

A :class:`Protocol` holds the query and gallery identities, cameras and (optionally) image ids, and a
:class:`RemovalRule`: a gallery item of the query's own identity takes no part when its *key* equals the query's
(the camera under the cross-camera rule of Market-1501 / MSMT17, the image id under same-image removal). Junk
(gallery pid -1) never takes part. Every metric takes a Protocol (ranking, chance level, ranked lists,
verification, distance histograms), so the rule is written once, here.

Rules are looked up by name in :data:`REMOVAL_RULES`; a new rule (for example same-tracklet removal for video)
is one :func:`register_removal_rule` call and one more optional id field, with no change to any metric; so is
a split with repeated query / gallery draws (CUHK03, VehicleID), which is one Protocol per draw.

The metrics also take the split the older way: the four id arrays ``q_pids, g_pids, q_camids, g_camids`` with
the keywords ``cross_camera`` (default True) and ``q_image_ids`` / ``g_image_ids``; :func:`resolve_protocol`
turns either form into a Protocol.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reid.evaluation.distance import EvaluationError

IdsLike = torch.Tensor | np.ndarray | Iterable[int]
JUNK_PID = -1

CROSS_CAMERA = "cross-camera"
SAME_IMAGE = "same-image removal"
SAME_TRACKLET = "same-tracklet removal"


@dataclass(frozen=True)
class RemovalRule:
    """Which gallery items of the query's identity a query is not matched with: those whose ``key`` ids (the
    Protocol's ``q_<key>`` / ``g_<key>``) equal the query's; with no key, or those ids absent, none (junk aside)."""

    name: str
    key: str | None
    description: str  # the valid true matches in words, for messages

    def keys(self, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(query keys, gallery keys), or None when nothing of the query's identity is removed."""
        if self.key is None:
            return None
        q, g = getattr(protocol, f"q_{self.key}"), getattr(protocol, f"g_{self.key}")
        return None if q is None or g is None else (q, g)


REMOVAL_RULES: dict[str, RemovalRule] = {}


def register_removal_rule(rule: RemovalRule) -> RemovalRule:
    """Add ``rule`` to :data:`REMOVAL_RULES` under its name."""
    if rule.name in REMOVAL_RULES:
        raise KeyError(f"a removal rule named {rule.name!r} is already registered")
    REMOVAL_RULES[rule.name] = rule
    return rule


register_removal_rule(RemovalRule(CROSS_CAMERA, "camids", "same pid, other camera, not junk"))
register_removal_rule(RemovalRule(SAME_IMAGE, "image_ids", "same pid, not the query's own image, not junk"))
# Video sets without the cross-camera rule: the image ids identify tracklets (equal for the same frames).
register_removal_rule(RemovalRule(SAME_TRACKLET, "image_ids", "same pid, not the query's own tracklet, not junk"))


def as_ids(ids: IdsLike, name: str, length: int | None = None,
           device: torch.device | None = None) -> torch.Tensor:
    """A 1-D int64 tensor of ids (of ``length`` entries when given), on ``device`` (default: where it is)."""
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise EvaluationError(f"{name} must be a 1-D array of integer ids, got shape {tuple(ids.shape)} {ids.dtype}.")
    if length is not None and ids.numel() != length:
        raise EvaluationError(f"{name} has {ids.numel()} entries but {length} were expected (one per "
                              f"{'query' if name.startswith('q') else 'gallery'} image).")
    return ids.to(device=device if device is not None else ids.device, dtype=torch.int64)


class Protocol:
    """A query x gallery split and the rule that says which of its pairs are scored.

    ``rule`` names a :data:`REMOVAL_RULES` entry (``"cross-camera"`` or ``"same-image removal"``); ``reason``
    says why it applies (shown in metrics.json and the report). ``q_image_ids`` / ``g_image_ids``: equal ids =
    the same image file (same-image removal). Ids live on one device (that of ``q_pids`` when it is a tensor,
    else the CPU); :meth:`to` moves them. Raises EvaluationError for an empty query set, a gallery of junk only
    or ids that do not fit together.
    """

    def __init__(self, q_pids: IdsLike, g_pids: IdsLike, q_camids: IdsLike, g_camids: IdsLike, *,
                 rule: str = CROSS_CAMERA, q_image_ids: IdsLike | None = None, g_image_ids: IdsLike | None = None,
                 reason: str = "") -> None:
        if rule not in REMOVAL_RULES:
            raise EvaluationError(f"unknown removal rule {rule!r}; expected one of {sorted(REMOVAL_RULES)}.")
        self.rule = REMOVAL_RULES[rule]
        self.reason = reason
        self.q_pids = as_ids(q_pids, "q_pids")
        device = self.q_pids.device
        self.g_pids = as_ids(g_pids, "g_pids", device=device)
        num_query, num_gallery = self.q_pids.numel(), self.g_pids.numel()
        self.q_camids = as_ids(q_camids, "q_camids", num_query, device)
        self.g_camids = as_ids(g_camids, "g_camids", num_gallery, device)
        if (q_image_ids is None) != (g_image_ids is None):
            raise EvaluationError("give both q_image_ids and g_image_ids (or neither) for same-image removal.")
        self.q_image_ids = None if q_image_ids is None else as_ids(q_image_ids, "q_image_ids", num_query, device)
        self.g_image_ids = None if g_image_ids is None else as_ids(g_image_ids, "g_image_ids", num_gallery, device)
        if num_query == 0:
            raise EvaluationError("the query set is empty; check the dataset's query folder.")
        self.junk = self.g_pids == JUNK_PID
        self.has_junk = bool(self.junk.any())
        if bool(self.junk.all()):
            raise EvaluationError(f"the gallery has no usable sample ({num_gallery} samples, none with a pid other "
                                  "than -1 (junk)); check the dataset's gallery folder.")
        self._keys = self.rule.keys(self)
        # Non-junk gallery positions grouped by pid, ascending index inside a pid (a stable sort).
        order = torch.argsort(self.g_pids, stable=True)
        self._order = order[~self.junk[order]]
        self._pids, self._counts = torch.unique_consecutive(self.g_pids[self._order], return_counts=True)
        self._starts = torch.cumsum(self._counts, 0) - self._counts

    @classmethod
    def from_keywords(cls, q_pids: IdsLike, g_pids: IdsLike, q_camids: IdsLike, g_camids: IdsLike, *,
                      cross_camera: bool = True, q_image_ids: IdsLike | None = None,
                      g_image_ids: IdsLike | None = None) -> Protocol:
        """The protocol ``evaluate_rank``'s keywords choose: cross-camera, or (``cross_camera=False``) same-image
        removal by the image ids (without them nothing but junk is removed)."""
        if cross_camera:
            q_image_ids = g_image_ids = None  # not used by the cross-camera rule
        return cls(q_pids, g_pids, q_camids, g_camids, rule=CROSS_CAMERA if cross_camera else SAME_IMAGE,
                   q_image_ids=q_image_ids, g_image_ids=g_image_ids)

    @property
    def name(self) -> str:
        """The rule's name, as metrics.json records it ("cross-camera", "same-image removal")."""
        return self.rule.name

    @property
    def cross_camera(self) -> bool:
        return self.rule.name == CROSS_CAMERA

    @property
    def num_query(self) -> int:
        return self.q_pids.numel()

    @property
    def num_gallery(self) -> int:
        return self.g_pids.numel()

    @property
    def device(self) -> torch.device:
        return self.q_pids.device

    def _with(self, device: torch.device | None = None, queries: torch.Tensor | None = None) -> Protocol:
        """This protocol on ``device`` and/or for the queries ``queries`` only (indices)."""
        def q(ids: torch.Tensor | None) -> torch.Tensor | None:
            if ids is None:
                return None
            ids = ids if queries is None else ids[queries.to(ids.device)]
            return ids if device is None else ids.to(device)

        def g(ids: torch.Tensor | None) -> torch.Tensor | None:
            return ids if ids is None or device is None else ids.to(device)

        return Protocol(q(self.q_pids), g(self.g_pids), q(self.q_camids), g(self.g_camids), rule=self.rule.name,
                        q_image_ids=q(self.q_image_ids), g_image_ids=g(self.g_image_ids), reason=self.reason)

    def to(self, device: torch.device | str) -> Protocol:
        """This protocol with its ids on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        same = device == self.device or (device.index is None and device.type == self.device.type)
        return self if same else self._with(device=device)

    def subset(self, queries: Sequence[int] | np.ndarray | torch.Tensor) -> Protocol:
        """The protocol of the queries ``queries`` (indices, in that order) against the same gallery."""
        return self._with(queries=torch.as_tensor(np.asarray(queries) if not isinstance(queries, torch.Tensor)
                                                  else queries, dtype=torch.int64).reshape(-1))

    def check_shape(self, num_query: int, num_gallery: int, what: str = "the distance matrix") -> None:
        """Raise an EvaluationError unless ``what`` is num_query x num_gallery as the protocol's ids."""
        if (num_query, num_gallery) != (self.num_query, self.num_gallery):
            raise EvaluationError(f"{what} is {num_query} x {num_gallery} but the protocol has {self.num_query} "
                                  f"queries and {self.num_gallery} gallery items.")

    def candidates(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the queries ``rows``: the gallery positions of each one's pid (B, W), ascending and padded, which of
        them are true matches and which the rule removes (padding is neither)."""
        q_pids = self.q_pids[rows]
        slot = torch.searchsorted(self._pids, q_pids).clamp_(max=self._pids.numel() - 1)
        count = torch.where(self._pids[slot] == q_pids, self._counts[slot], 0)
        col = torch.arange(int(count.max()) if count.numel() else 0, device=q_pids.device)
        in_pid = col < count[:, None]
        cand = self._order[(self._starts[slot][:, None] + col).clamp_(max=self._order.numel() - 1)]
        if self._keys is None:
            same = torch.zeros_like(in_pid)
        else:
            same = self._keys[1][cand] == self._keys[0][rows][:, None]
        return cand, in_pid & ~same, in_pid & same

    def removed(self, rows: slice) -> torch.Tensor:
        """(B, num_gallery) mask of the gallery items that take no part for the queries ``rows`` (dense)."""
        if self._keys is None:
            return self.junk.expand(self.q_pids[rows].numel(), -1)
        q_keys, g_keys = self._keys
        return self.junk | ((self.g_pids == self.q_pids[rows, None]) & (g_keys == q_keys[rows, None]))

    def __repr__(self) -> str:
        why = f", {self.reason}" if self.reason else ""
        return f"Protocol({self.name}{why}: {self.num_query} queries x {self.num_gallery} gallery items)"


def resolve_protocol(split: Sequence[Any], rule: dict[str, Any], device: torch.device | str | None = None,
                     shape: tuple[int, int] | None = None) -> Protocol:
    """The Protocol a metric was given, on ``device`` (None: where its ids are) and checked against the
    (num_query, num_gallery) ``shape`` of a distance matrix when there is one.

    ``split`` is ``(protocol,)`` or ``(q_pids, g_pids, q_camids, g_camids)`` (None entries are left out, so a
    function may pass its optional ids and ``protocol=`` together); ``rule`` holds the keywords of
    :meth:`Protocol.from_keywords`, which only the id arrays may change from their defaults.
    """
    split = tuple(s for s in split if s is not None)
    if len(split) == 1 and isinstance(split[0], Protocol):
        chosen = sorted(k for k, v in rule.items() if (v is not True if k == "cross_camera" else v is not None))
        if chosen:
            raise EvaluationError(f"{', '.join(chosen)}: a Protocol already chooses the rule; give either the "
                                  "Protocol or the id arrays with these keywords.")
        protocol = split[0]
    elif len(split) == 4 and not any(isinstance(s, Protocol) for s in split):
        q_pids, g_pids, q_camids, g_camids = split
        if shape is not None:  # the ids against the matrix first: "q_pids has 39 entries but 40 were expected"
            as_ids(q_pids, "q_pids", shape[0])
            as_ids(g_pids, "g_pids", shape[1])
        protocol = Protocol.from_keywords(q_pids, g_pids, q_camids, g_camids, **rule)
    else:
        raise EvaluationError(f"expected a Protocol or the four id arrays q_pids, g_pids, q_camids, g_camids; got "
                              f"{len(split)} argument(s).")
    if shape is not None:
        protocol.check_shape(*shape)
    return protocol if device is None else protocol.to(device)
