"""The pure side of `lrkit.search_lr` (no torch, no matplotlib): the candidate grid (`lrkit.search.grid`) and
the result (`SearchResult`, with its `SearchCost`), which loads, reads and plots without torch.

The engine that trains the candidates is `lrkit.torch.search`.

Example:
    >>> from lrkit.search import SearchResult
    >>> SearchResult.error.__name__
    'FinderError'
"""

from lrkit.search.result import SearchCost, SearchResult

__all__ = ["SearchCost", "SearchResult"]
