"""Language-model metrics of a summed evaluation loss: per token, per word and per byte.

The evaluator sums the cross-entropy (in nats) over every target of a dataset's fixed
evaluation set; :func:`metrics_from_eval` divides that sum by the counts in the dataset's
:class:`~primer_search.fitness.data.EvalInfo` to give the loss per token, the token and word
perplexities and bits per byte. Per-word perplexity and bits per byte do not depend on
the tokeniser, so word- and byte-level runs can be compared.

The metrics sit beside the evaluator rather than in the data package because they are
arithmetic on a loss, not a property of a corpus. :class:`EvalInfo` itself stays in
:mod:`primer_search.fitness.data`, which computes it while building the evaluation set, so this
module depends on the data package and the data package depends on nothing of the
evaluation. Bad input raises :class:`~primer_search.fitness.data.DataError`, as it did when these
functions lived with the data.
"""

from __future__ import annotations

import math

from primer_search.fitness.data import DataError, EvalInfo

__all__ = ["metrics_from_eval"]


def metrics_from_eval(loss_sum_nats: float, info: EvalInfo) -> dict:
    """Metrics of a summed evaluation loss (natural log) over the targets of ``info``.

    Returns ``{"loss": nats per token, "perplexity": exp(loss), "word_perplexity":
    exp(loss_sum / words), "bits_per_byte": loss_sum / (ln 2 * bytes)}`` as floats
    (a perplexity too large for a float is ``inf``).
    """
    if not isinstance(info, EvalInfo):
        raise DataError(f"info must be an EvalInfo, got {type(info).__name__}")
    if min(info.tokens, info.words, info.bytes) <= 0:
        raise DataError(f"EvalInfo counts must be positive, got {info!r}")
    loss_sum = float(loss_sum_nats)
    if not math.isfinite(loss_sum) or loss_sum < 0:
        raise DataError(f"loss_sum_nats must be a finite, non-negative number of nats, "
                        f"got {loss_sum_nats!r}")
    per_token = loss_sum / info.tokens
    return {
        "loss": per_token,
        "perplexity": _safe_exp(per_token),
        "word_perplexity": _safe_exp(loss_sum / info.words),
        "bits_per_byte": loss_sum / (math.log(2.0) * info.bytes),
    }


def _safe_exp(x: float) -> float:
    """``exp(x)``, or ``inf`` where the result does not fit in a float."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
