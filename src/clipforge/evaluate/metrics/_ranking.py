"""The one ranking rule every rank-based metric here uses.

References rank with ``torch.topk``/``torch.sort``, whose order among tied scores is unspecified,
so a tie can flip a hit into a miss from one machine to the next. We fix the order: decreasing
score, ties broken by increasing column index, i.e. the order of a *stable* descending sort. Top-k
accuracy, recall@k and mean/median rank all follow from the rank below, so they always agree.
"""

from __future__ import annotations

import torch


def first_positive_rank(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """1-based rank of the first correct candidate of each query, under the stable order.

    Args:
        scores: (Q, N) scores of N candidates for Q queries; higher ranks first.
        positives: (Q, P) int64 column indices of each query's correct candidates (at least
            one). A row with fewer than P positives repeats one of them as padding.

    Returns:
        (Q,) int64 ranks in ``[1, N]``; ``rank <= k`` is exactly "a positive is in the top k".

    No sort, and no (Q, N) mask of positives: the first positive is the one of highest score
    (lowest index among equals); its rank counts the candidates scored strictly higher, plus
    the equal-scored ones at a lower index. That last count needs a second look only in the
    rare rows that hold a tie with the best positive.
    """
    positive_scores = scores.gather(1, positives)  # (Q, P)
    best = positive_scores.amax(dim=1, keepdim=True)  # (Q, 1)
    no_positive = torch.iinfo(torch.int64).max
    first = torch.where(positive_scores == best, positives, no_positive).amin(dim=1)  # (Q,)
    ranks = 1 + (scores > best).sum(dim=1)  # (Q,)
    tied = torch.nonzero((scores == best).sum(dim=1) > 1).flatten()  # rows with a tie at best
    if tied.numel():
        columns = torch.arange(scores.shape[1], device=scores.device)  # (N,)
        before = (scores[tied] == best[tied]) & (columns < first[tied, None])  # (R, N)
        ranks[tied] += before.sum(dim=1)
    return ranks
