"""The statistics of a study's report, over seeds, with scipy.

  ci = stats.mean_ci([0.97, 0.98, 0.96])          # mean, sd, n, 95% CI
  c = stats.compare(best={0: .98, 1: .97, 2: .99},
                    other={0: .95, 1: .96, 2: .95})
  c.difference, c.low, c.high, c.p_value          # paired t over seeds 0-2
  stats.holm([0.01, 0.04, 0.03, 0.005])           # adjusted p-values
  stats.seeds_needed(effect=0.01, sd=0.008)       # 80% power, paired t

The only variance these numbers know is the one between seeds (initial
weights, data order, dropout, augmentation): they say how sure a difference
is on this data set and this validation split, not on another one.
"""

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

# Below this many paired seeds (or runs per side, unpaired) no test is
# claimed: with two, a t-test has one degree of freedom and its interval
# spans most of [0, 1] even for tight runs.
MIN_SEEDS_FOR_TEST = 3
# The exact Wilcoxon signed-rank test cannot reach p < 0.05 (two-sided)
# with fewer than 6 pairs: its smallest p-value is 2 / 2**n.
MIN_SEEDS_FOR_WILCOXON = 6
PAIRED, WELCH = 'paired t', 'Welch t'


@dataclasses.dataclass(frozen=True)
class MeanCI:
  """The mean of some runs and its Student-t confidence interval.

  Attributes:
    mean: The mean (None without values).
    sd: The sample standard deviation (ddof=1; None below 2 values).
    n: How many values.
    low: Lower bound of the interval (None below 2 values).
    high: Upper bound.
    confidence: The interval's level (0.95).
  """
  mean: Optional[float]
  sd: Optional[float]
  n: int
  low: Optional[float]
  high: Optional[float]
  confidence: float = 0.95


def mean_ci(values, confidence=0.95):
  """Mean, SD and the t interval `mean ± t(1-a/2, n-1) sd / sqrt(n)`.

  Args:
    values: Numbers (e.g. one configuration's final accuracies).
    confidence: The interval's level.

  Returns:
    A `MeanCI`; with one value no SD or interval, with none no mean.
  """
  values = np.asarray(list(values), dtype=np.float64)
  n = len(values)
  if not n:
    return MeanCI(None, None, 0, None, None, confidence)
  mean = float(values.mean())
  if n < 2:
    return MeanCI(mean, None, n, None, None, confidence)
  sd = float(values.std(ddof=1))
  half = (scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
  return MeanCI(mean, sd, n, mean - half, mean + half, confidence)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """A configuration against the best one, on final validation accuracy.

  Attributes:
    test: `PAIRED` (over the seeds both ran), `WELCH` (no shared seeds) or
      None (too few runs to test).
    n: Pairs (paired) or `(n_other, n_best)` runs (Welch).
    difference: Mean of other minus best (per pair, when paired).
    low: Lower bound of the difference's 95% CI (None below 2).
    high: Upper bound.
    p_value: The t-test's two-sided p-value, uncorrected (None when no test
      is claimed).
    wilcoxon_p: The exact Wilcoxon signed-rank p-value (paired, n >= 6).
    sd: SD of the paired differences (Welch: of a difference of two
      independent runs, `sqrt(sd_a**2 + sd_b**2)`); None below 2.
  """
  test: Optional[str]
  n: object
  difference: Optional[float]
  low: Optional[float]
  high: Optional[float]
  p_value: Optional[float]
  wilcoxon_p: Optional[float]
  sd: Optional[float]


def paired_t(a, b):
  """Two-sided paired t-test of `a - b`: `(t, p)` (scipy's ttest_rel)."""
  result = scipy_stats.ttest_rel(a, b)
  return float(result.statistic), float(result.pvalue)


def wilcoxon_exact(a, b):
  """Two-sided exact Wilcoxon signed-rank p-value of `a - b`.

  Pairs with a zero difference are dropped (Wilcoxon's own rule); with no
  nonzero difference left the p-value is 1 (nothing differs).
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  d = d[d != 0]
  if not len(d):
    return 1.0
  return float(scipy_stats.wilcoxon(d, method='exact').pvalue)


def welch(a, b):
  """Welch's t-test of `mean(a) - mean(b)`: `(t, p, df)`."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  result = scipy_stats.ttest_ind(a, b, equal_var=False)
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  return float(result.statistic), float(result.pvalue), float(df)


def _finite(p):
  # scipy returns NaN when both sides have no spread (e.g. two identical
  # trainings): no evidence of a difference.
  return 1.0 if p is None or not math.isfinite(p) else p


def compare(best: Mapping[int, float], other: Mapping[int, float],
            confidence=0.95):
  """`other` against `best`: `{seed: final accuracy}` each.

  Seeds both ran are paired (the same seed gives the same initial weights
  and data order where the nets agree, so pairing removes that part of the
  spread); with at least 2 shared seeds the comparison is paired, else
  Welch's over all runs.

  Returns:
    A `Comparison`; `p_value` only with at least `MIN_SEEDS_FOR_TEST`
    pairs (Welch: runs on each side).
  """
  shared = sorted(set(best) & set(other))
  if len(shared) >= 2:
    a = np.array([other[s] for s in shared])
    b = np.array([best[s] for s in shared])
    ci = mean_ci(a - b, confidence)
    p = _finite(paired_t(a, b)[1]) if len(shared) >= MIN_SEEDS_FOR_TEST else (
        None)
    w = (wilcoxon_exact(a, b) if len(shared) >= MIN_SEEDS_FOR_WILCOXON
         else None)
    return Comparison(PAIRED, len(shared), ci.mean, ci.low, ci.high, p, w,
                      ci.sd)
  a, b = list(other.values()), list(best.values())
  if not a or not b:
    return Comparison(None, (len(a), len(b)), None, None, None, None, None,
                      None)
  difference = float(np.mean(a) - np.mean(b))
  if len(a) < 2 or len(b) < 2:
    return Comparison(None, (len(a), len(b)), difference, None, None, None,
                      None, None)
  _, p, df = welch(a, b)
  se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
  half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * se if se else 0.0
  sd = math.sqrt(np.var(a, ddof=1) + np.var(b, ddof=1))
  claimed = min(len(a), len(b)) >= MIN_SEEDS_FOR_TEST
  return Comparison(WELCH, (len(a), len(b)), difference, difference - half,
                    difference + half, _finite(p) if claimed else None, None,
                    sd)


def holm(p_values: Sequence[float]):
  """Holm's (1979) step-down adjustment for `m` tests.

  Sorted ascending, the i-th smallest (from 0) becomes
  `max over j <= i of min(1, (m - j) p_(j))`: the running maximum keeps the
  adjusted values in the order of the raw ones, so a hypothesis is rejected
  at level alpha exactly when Holm's procedure rejects it.

  Args:
    p_values: Raw p-values.

  Returns:
    The adjusted p-values, in the order given.
  """
  p = np.asarray(list(p_values), dtype=np.float64)
  m = len(p)
  order = np.argsort(p, kind='stable')
  adjusted = np.empty(m)
  running = 0.0
  for i, index in enumerate(order):
    running = max(running, min(1.0, (m - i) * p[index]))
    adjusted[index] = running
  return adjusted.tolist()


def paired_t_power(n, effect, sd, alpha=0.05):
  """Power of the two-sided paired t-test with `n` pairs.

  The t statistic of `n` differences with mean `effect` and SD `sd` follows
  the noncentral t with `n - 1` degrees of freedom and noncentrality
  `effect / (sd / sqrt(n))`; power is its mass beyond `±t(1 - alpha/2)`.
  """
  df = n - 1
  noncentrality = effect / (sd / math.sqrt(n))
  critical = scipy_stats.t.ppf(1 - alpha / 2, df)
  return float(scipy_stats.nct.sf(critical, df, noncentrality) +
               scipy_stats.nct.cdf(-critical, df, noncentrality))


def seeds_needed(effect, sd, alpha=0.05, power=0.8, limit=100000):
  """The fewest seeds for a paired t-test to detect `effect` with `power`.

  Args:
    effect: The difference to detect (e.g. 0.01 accuracy).
    sd: The SD of the paired differences (the observed one).
    alpha: The test's two-sided level.
    power: The wanted power.
    limit: Give up above this many (returns None).

  Returns:
    The smallest `n >= 2` whose power reaches `power`; 2 when `sd` is 0.

  Raises:
    ValueError: for an `effect` or `sd` that is not a positive (sd: >= 0)
      finite number.
  """
  if not (effect > 0 and math.isfinite(effect)):
    raise ValueError(f'effect must be a positive number; got {effect!r}.')
  if not (sd >= 0 and math.isfinite(sd)):
    raise ValueError(f'sd must be a number >= 0; got {sd!r}.')
  if sd == 0:
    return 2
  low, high = 2, 2
  while paired_t_power(high, effect, sd, alpha) < power:  # bracket, then
    low, high = high, high * 2                            # bisect
    if high > limit:
      return None
  while low < high:
    middle = (low + high) // 2
    if paired_t_power(middle, effect, sd, alpha) >= power:
      high = middle
    else:
      low = middle + 1
  return high
