"""Which vector ids a filtered FAISS search may return, and the FAISS selector for them.

`FaissIndex.search` takes chunk ids to keep out (or the only ones to keep); this resolves
them against the ids the index holds once per query, so the search knows how many
results to expect and the selector tests membership in a hash set (IDSelectorBatch),
not a scan of a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lectern.optional import require


def _present(sorted_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The distinct ids of `wanted` that `sorted_ids` holds, ascending: O(m log n)."""
    wanted = np.unique(np.asarray(wanted, dtype=np.int64))
    at = np.searchsorted(sorted_ids, wanted)
    hit = at < len(sorted_ids)
    hit[hit] = sorted_ids[at[hit]] == wanted[hit]
    return wanted[hit]


@dataclass(frozen=True, slots=True)
class IdFilter:
    """The ids a search may return: all but `ids` (negate), or exactly `ids`."""

    ids: np.ndarray  # ascending, each held by the index
    negate: bool
    count: int  # how many of the index's vectors it allows

    @classmethod
    def of(
        cls, sorted_ids: np.ndarray, exclude: np.ndarray | None, only: np.ndarray | None
    ) -> IdFilter | None:
        """The filter over an index holding `sorted_ids`; None when it keeps nothing out."""
        kept_out = _present(sorted_ids, exclude) if exclude is not None else None
        if only is not None:
            allowed = _present(sorted_ids, only)
            if kept_out is not None and len(kept_out):
                allowed = np.setdiff1d(allowed, kept_out, assume_unique=True)
            if len(allowed) == len(sorted_ids):
                return None
            return cls(allowed, negate=False, count=len(allowed))
        if kept_out is None or not len(kept_out):
            return None
        return cls(kept_out, negate=True, count=len(sorted_ids) - len(kept_out))

    def allows(self, ids: np.ndarray) -> np.ndarray:
        """A boolean mask: which of `ids` the filter lets through."""
        inside = np.isin(ids, self.ids)
        return ~inside if self.negate else inside

    def selector(self) -> Any:  # faiss.IDSelector
        faiss = require("faiss", "retrieval")
        batch = faiss.IDSelectorBatch(self.ids)
        # faiss keeps the inner selector alive for the Not (add_ref_in_constructor).
        return faiss.IDSelectorNot(batch) if self.negate else batch
