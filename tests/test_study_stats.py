"""slimkit.study.stats against scipy, published examples and definitions."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from slimkit.study import stats

# Student's sleep data (Cushny and Peebles 1905; R's `sleep`): extra hours
# of sleep of 10 patients under two drugs.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_t_interval_of_a_textbook_sample():
  # R: t.test(sleep$extra[1:10]): mean 0.75, 95% CI -0.5297804 2.0297804.
  ci = stats.mean_ci(SLEEP_1)
  assert ci.n == 10 and ci.mean == pytest.approx(0.75)
  assert (ci.low, ci.high) == pytest.approx((-0.5297804, 2.0297804), abs=1e-6)
  assert ci.sd == pytest.approx(np.std(SLEEP_1, ddof=1))


@pytest.mark.parametrize('values', [[0.91, 0.93, 0.92],
                                    [0.5, 0.97, 0.96, 0.1, 0.8],
                                    list(np.linspace(0.2, 0.9, 12))])
def test_t_interval_equals_scipys(values):
  ci = stats.mean_ci(values, confidence=0.9)
  low, high = scipy_stats.t.interval(0.9, len(values) - 1,
                                     loc=np.mean(values),
                                     scale=scipy_stats.sem(values))
  assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)


def test_t_interval_of_one_or_no_value():
  assert stats.mean_ci([0.5]) == stats.MeanCI(0.5, None, 1, None, None)
  assert stats.mean_ci([]).mean is None


def test_paired_t_of_the_sleep_data():
  # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621,
  # df = 9, p-value = 0.002833, 95% CI -2.4598858 -0.7001142.
  t, p = stats.paired_t(SLEEP_1, SLEEP_2)
  assert t == pytest.approx(-4.0621, abs=1e-4)
  assert p == pytest.approx(0.002833, abs=1e-6)
  c = stats.compare(best=dict(enumerate(SLEEP_2)),
                    other=dict(enumerate(SLEEP_1)))
  assert c.test == stats.PAIRED and c.n == 10
  assert c.difference == pytest.approx(-1.58)
  assert (c.low, c.high) == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)
  assert c.p_value == pytest.approx(p)
  result = scipy_stats.ttest_rel(SLEEP_1, SLEEP_2)
  assert (t, p) == (result.statistic, result.pvalue)


def test_welch_of_the_sleep_data():
  # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776,
  # p-value = 0.07939, 95% CI -3.3654832 0.2054832.
  t, p, df = stats.welch(SLEEP_1, SLEEP_2)
  assert (t, p, df) == pytest.approx((-1.8608, 0.07939, 17.776), abs=1e-3)
  result = scipy_stats.ttest_ind(SLEEP_1, SLEEP_2, equal_var=False)
  assert (t, p) == pytest.approx((result.statistic, result.pvalue), rel=1e-12)
  # Unpaired seeds: Welch's interval.
  c = stats.compare(best={i + 10: v for i, v in enumerate(SLEEP_2)},
                    other=dict(enumerate(SLEEP_1)))
  assert c.test == stats.WELCH and c.n == (10, 10)
  assert (c.low, c.high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
  assert c.p_value == pytest.approx(result.pvalue)


def test_wilcoxon_exact_of_a_textbook_example():
  # Hollander and Wolfe (1973) p. 29, depression scores before and after
  # (R's wilcox.test example): V = 40, one-sided p = 0.01953.
  x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
  y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
  assert stats.wilcoxon_exact(x, y) == pytest.approx(2 * 0.01953, abs=1e-5)
  assert stats.wilcoxon_exact(x, y) == scipy_stats.wilcoxon(
      x, y, method='exact').pvalue
  # By definition: the exact null distribution of W+ over all 2**9 signs.
  d = np.abs(np.subtract(x, y))
  ranks = scipy_stats.rankdata(d)
  observed = ranks[np.subtract(x, y) > 0].sum()
  sums = [sum(r for r, s in zip(ranks, signs) if s)
          for signs in itertools.product((0, 1), repeat=len(d))]
  tail = np.mean(np.array(sums) >= observed)
  assert stats.wilcoxon_exact(x, y) == pytest.approx(2 * tail)


def test_the_wilcoxon_needs_six_pairs_and_no_difference_is_p_1():
  best = {s: 0.9 + 0.01 * s for s in range(6)}
  other = {s: v - 0.02 for s, v in best.items()}
  c = stats.compare(best, other)
  # All six differences negative: p = 2 / 2**6, the smallest possible.
  assert c.wilcoxon_p == pytest.approx(2 / 64)
  assert stats.compare(dict(list(best.items())[:5]),
                       other).wilcoxon_p is None
  assert stats.wilcoxon_exact([1, 2, 3], [1, 2, 3]) == 1.0


def test_holm_of_a_worked_example():
  # The example of Wikipedia's "Holm-Bonferroni method": p = 0.01, 0.04,
  # 0.03, 0.005 at alpha 0.05 rejects H1 and H4 only. Adjusted, sorted:
  # 4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, then 1 * 0.04 is
  # raised to 0.06 by the monotonicity step.
  adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
  assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert [a < 0.05 for a in adjusted] == [True, False, False, True]


def _holm_by_definition(p, alpha):
  """Holm's procedure as he stated it: reject sorted H_(i) while
  p_(i) <= alpha / (m - i), stop at the first that is not."""
  m = len(p)
  rejected = set()
  for i, index in enumerate(np.argsort(p, kind='stable')):
    if p[index] > alpha / (m - i):
      break
    rejected.add(index)
  return rejected


@pytest.mark.parametrize('seed', range(20))
def test_holm_rejects_what_the_step_down_procedure_rejects(seed):
  rng = np.random.default_rng(seed)
  p = list(rng.uniform(0, 0.1, size=rng.integers(1, 8)))
  adjusted = stats.holm(p)
  assert all(a >= q for a, q in zip(adjusted, p)) and max(adjusted) <= 1
  for alpha in (0.01, 0.02, 0.05, 0.1):
    assert {i for i, a in enumerate(adjusted) if a <= alpha} == (
        _holm_by_definition(p, alpha))


def test_power_of_the_paired_t_test_against_published_values():
  # G*Power (Faul et al. 2007), means: difference of two dependent means,
  # two-tailed, alpha 0.05, power 0.80: dz = 0.5 needs 34 pairs (actual
  # power 0.8078), dz = 0.8 needs 15.
  assert stats.seeds_needed(effect=0.5, sd=1.0) == 34
  assert stats.paired_t_power(34, 0.5, 1.0) == pytest.approx(0.8078,
                                                              abs=1e-3)
  assert stats.seeds_needed(effect=0.008, sd=0.01) == 15
  # Large samples: the normal approximation n = ((z_.975 + z_.8) / dz)**2.
  z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
  n = stats.seeds_needed(effect=0.05, sd=1.0)
  assert abs(n - (z / 0.05) ** 2) < 3
  assert stats.seeds_needed(effect=0.01, sd=0.0) == 2
  with pytest.raises(ValueError, match='effect must be a positive'):
    stats.seeds_needed(effect=0.0, sd=0.1)


def test_power_agrees_with_simulated_paired_t_tests():
  rng = np.random.default_rng(0)
  n, effect, sd = 8, 0.01, 0.012
  d = rng.normal(effect, sd, size=(20000, n))
  t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
  rejected = np.mean(np.abs(t) > scipy_stats.t.ppf(0.975, n - 1))
  assert stats.paired_t_power(n, effect, sd) == pytest.approx(rejected,
                                                              abs=0.015)


def test_no_test_is_claimed_below_three_seeds():
  c = stats.compare({0: 0.98, 1: 0.97}, {0: 0.90, 1: 0.91})
  assert c.test == stats.PAIRED and c.p_value is None
  assert c.difference == pytest.approx(-0.07) and c.sd == pytest.approx(
      np.std([-0.08, -0.06], ddof=1))
  c = stats.compare({0: 0.98}, {1: 0.9})
  assert c.test is None and c.p_value is None
