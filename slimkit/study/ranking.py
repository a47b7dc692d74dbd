"""A study's configurations over their seeds, ranked against the best one.

  analysis = ranking.analyze(results, info)
  for row in analysis.rows:          # in the report's order
    row.summary.final_ci, row.comparison, row.adjusted_p, row.verdict

A configuration is the varied values without the seed. Its statistics use
its finished runs only (a diverged, failed or unfinished run has no final
accuracy to average); the table states how many. A run stopped early by a
scheduler (ASHA, the median rule) is ranked with what it reached: its
configuration's place is the mean of the last validation accuracies of its
finished and stopped-early runs (`reached`), but it stays out of every test.
The order:

1. configurations whose runs all finished, were stopped early (or are still
   to come), by that mean; the first with finished runs is `best`, and every
   other one with finished runs is compared with it over the seeds both ran
   (`stats.compare`, finished runs only), the p-values Holm-adjusted over
   those comparisons: `worse` below `alpha`, else `tied with best`; with
   fewer than 3 seeds, no test (`not tested`); a configuration whose runs
   all stopped early is not compared (`stopped early: not tested`);
2. configurations with a diverged or failed run ("diverged k/n (step s)"),
   below every one that finished, not tested;
3. configurations without any result.

Configurations that are the same training (the same flags once the flags
their optimizer does not read are dropped, e.g. momentum at two
`--opt_epsilon`) are one row plus duplicates: a duplicate keeps its
representative's rank and is not compared, so noise between identical runs
is never ranked.
"""

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np

from slimkit.study import grid
from slimkit.study import stats
from slimkit.training import optimization

BEST, TIED, WORSE, BETTER = 'best', 'tied with best', 'worse', 'better'
NOT_TESTED = 'not tested'
EARLY = 'stopped early: not tested'
DEFAULT_OPTIMIZER = 'rmsprop'  # train_image_classifier.py's --optimizer
# The optimizer flags, each read only by the optimizers whose entry names it.
OPTIMIZER_FLAGS = frozenset(
    f.name for f in dataclasses.fields(optimization.OptimizerHParams)
    if f.name != 'weight_decay')  # weight_decay is the nets' L2 otherwise
# The one run state whose last validation is the run's final one: a
# running, stopped (Ctrl-C) or stopped-early run has not reached its last
# step, and a failed one never will.
_FINAL = 'finished'
# A run a scheduler stopped (runner.STOPPED_EARLY). Its `stopped_by` alone
# does not say so: a run resumed later keeps it in its status.
_EARLY = 'stopped early'


@dataclasses.dataclass(frozen=True)
class Summary:
  """One configuration over its seeds.

  Attributes:
    values: `((axis, value), ...)`.
    runs: Its `RunResult`s.
    finished: The runs its statistics use: finished runs (at their last
      step) that did not diverge. Running, stopped and stopped-early runs
      are counted (`unfinished`), never averaged into these.
    stopped_early: The runs a scheduler stopped early that validated at
      least once: ranked with what they reached, never tested.
    final: The finished runs' final validation accuracies.
    best: Their best validation accuracies.
    best_steps: The steps of those.
    final_ci: `stats.MeanCI` of `final`.
    best_ci: Of `best`.
    loss_ci: Of their final training losses.
    reached_ci: `stats.MeanCI` of the last validation accuracies of the
      finished and stopped-early runs: what the ranking sorts by.
    early_ci: Of the stopped-early runs' alone.
  """
  values: Tuple[Tuple[str, str], ...]
  runs: tuple
  finished: tuple
  final: tuple
  best: tuple
  best_steps: tuple
  final_ci: stats.MeanCI
  best_ci: stats.MeanCI
  loss_ci: stats.MeanCI
  stopped_early: tuple = ()
  reached_ci: Optional[stats.MeanCI] = None
  early_ci: Optional[stats.MeanCI] = None

  @property
  def label(self):
    return ', '.join(f'{k}={grid.display_value(k, v)}'
                     for k, v in self.values) or 'base'

  @property
  def accuracies(self):
    """`{seed: final accuracy}` of the finished runs."""
    return {r.seed: r.final_accuracy for r in self.finished}

  @property
  def diverged(self):
    return tuple(r for r in self.runs if r.diverged)

  @property
  def failed(self):
    """Runs that failed otherwise (a bad flag, out of memory, ...)."""
    return tuple(r for r in self.runs if r.state == 'failed' and
                 not r.diverged)

  @property
  def status(self):
    """'diverged k/n (step s)' and/or 'failed k/n'; '' when none."""
    n = len(self.runs)
    said = []
    if self.diverged:
      steps = sorted(r.diverged_step for r in self.diverged)
      where = (f'step {steps[0]}' if steps[0] == steps[-1] else
               f'steps {steps[0]}-{steps[-1]}')
      said.append(f'diverged {len(steps)}/{n} ({where})')
    if self.failed:
      said.append(f'failed {len(self.failed)}/{n}')
    return ', '.join(said)

  @property
  def early(self):
    """'stopped early 1/3 at step 100 by ASHA'; '' when none."""
    runs = [r for r in self.runs if r.state == _EARLY]
    if not runs:
      return ''
    by = ', '.join(sorted({r.stopped_by or 'a scheduler' for r in runs}))
    return (f'stopped early {len(runs)}/{len(self.runs)} at '
            f'{_steps(stopped_at(r) for r in runs)} by {by}')

  @property
  def unfinished(self):
    """'running 1/3 (step 50)', 'stopped ...', 'stopped early ... by ASHA'.

    Runs left out of the statistics because they have not reached their
    last step; '' when none.
    """
    return ', '.join(t for t in (self.interrupted, self.early) if t)

  @property
  def interrupted(self):
    """'running 1/3 (step 50), stopped 1/3 (step 20)'; '' when none."""
    n = len(self.runs)
    return ', '.join(
        f'{label} {len(runs)}/{n} '
        f'({_steps(r.global_step or 0 for r in runs)})'
        for label, runs in (
            ('running', [r for r in self.runs if r.state == 'running']),
            ('stopped', [r for r in self.runs if r.state == 'stopped']))
        if runs)

  def flags(self, fixed_flags):
    """Every flag of this configuration's runs (a recipe's file included)."""
    flags = dict(fixed_flags)
    for name, value in self.values:
      if name == grid.FLAGFILE:
        flags.update(grid.read_flagfile(value))
      else:
        flags[name] = value
    return flags

  def mean(self, field):
    numbers = [getattr(r, field) for r in self.finished
               if getattr(r, field) is not None]
    return float(np.mean(numbers)) if numbers else None


def stopped_at(run):
  """The step a scheduler stopped `run` at (its checkpoint's if unknown)."""
  return run.stopped_at if run.stopped_at is not None else run.global_step or 0


def _steps(steps):
  """'step 50' or 'steps 50-100'."""
  steps = sorted(steps)
  return (f'step {steps[0]}' if steps[0] == steps[-1] else
          f'steps {steps[0]}-{steps[-1]}')


def summarize(results):
  """One `Summary` per configuration, in grid order."""
  groups = {}
  for result in results:
    groups.setdefault(result.values, []).append(result)
  summaries = []
  for values, runs in groups.items():
    done = tuple(r for r in runs if r.final_accuracy is not None and
                 r.state == _FINAL and not r.diverged)
    early = tuple(r for r in runs if r.final_accuracy is not None and
                  r.state == _EARLY)
    losses = [r.final_loss for r in done if r.final_loss is not None]
    summaries.append(Summary(
        values=values, runs=tuple(runs), finished=done,
        final=tuple(r.final_accuracy for r in done),
        best=tuple(r.best_accuracy for r in done),
        best_steps=tuple(r.best_step for r in done),
        final_ci=stats.mean_ci(r.final_accuracy for r in done),
        best_ci=stats.mean_ci(r.best_accuracy for r in done),
        loss_ci=stats.mean_ci(losses), stopped_early=early,
        reached_ci=stats.mean_ci(r.final_accuracy for r in done + early),
        early_ci=stats.mean_ci(r.final_accuracy for r in early)))
  return summaries


def _normalized(value):
  text = str(value).strip()
  if text.lower() in ('true', 'false'):
    return text.lower()
  try:
    return repr(float(text))  # 1e-8 and 1e-08 are one value
  except ValueError:
    return text


def training_key(flags):
  """What makes a training distinct: `flags` without the optimizer flags
  their optimizer does not read, values normalized."""
  name = flags.get('optimizer', DEFAULT_OPTIMIZER)
  reads = (optimization.OPTIMIZERS.get(name).flags
           if name in optimization.list_optimizers() else OPTIMIZER_FLAGS)
  return frozenset((k, _normalized(v)) for k, v in flags.items()
                   if k not in OPTIMIZER_FLAGS or k in reads)


def unread_flags(flags, names):
  """Those of the flags `names` that `flags`' optimizer does not read."""
  optimizer = flags.get('optimizer', DEFAULT_OPTIMIZER)
  if optimizer not in optimization.list_optimizers():
    return set()
  reads = optimization.OPTIMIZERS.get(optimizer).flags
  return {n for n in names if n in OPTIMIZER_FLAGS and n not in reads}


@dataclasses.dataclass(frozen=True)
class Row:
  """One configuration in the report's order.

  Attributes:
    rank: Its rank (a duplicate: its representative's).
    summary: The `Summary`.
    comparison: `stats.Comparison` against the best, or None (the best,
      a duplicate, a diverged or failed one, one without results).
    adjusted_p: The Holm-adjusted p-value of the comparison, or None.
    verdict: `best`, `tied with best`, `worse` (`better`: only when the
      paired seeds disagree with the means), `not tested`, `stopped early:
      not tested` (every run stopped early), the status
      ('diverged 2/5 (step 22)'), `same training as rank r`, or ''.
    seeds_needed: Seeds for 80% power to detect `min_effect` at the
      comparison's observed SD of differences, at least
      `stats.MIN_SEEDS_FOR_TEST` (None without an SD; None too when more
      than 100,000 would be needed).
    duplicate_of: The representative's `Summary` for a duplicate.
    adjusted_wilcoxon: The exact Wilcoxon p-value, Holm-adjusted over the
      comparisons that have one (6 or more paired seeds), or None.
  """
  rank: int
  summary: Summary
  comparison: Optional[stats.Comparison] = None
  adjusted_p: Optional[float] = None
  verdict: str = ''
  seeds_needed: Optional[int] = None
  duplicate_of: Optional[Summary] = None
  adjusted_wilcoxon: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Analysis:
  """The ranked rows and what the tests were.

  Attributes:
    rows: `Row`s in the report's order.
    alpha: The tests' level.
    min_effect: The difference the seeds-needed column is for.
    tests: How many comparisons were tested (Holm's m).
  """
  rows: Sequence[Row]
  alpha: float
  min_effect: float
  tests: int

  @property
  def stopped_early(self):
    """The runs ranked with what they reached and left out of the tests."""
    return tuple(r for row in self.rows for r in row.summary.stopped_early)

  @property
  def best(self):
    return next((r for r in self.rows if r.verdict == BEST), None)

  @property
  def summaries(self):
    return [r.summary for r in self.rows]


def analyze(results, fixed_flags=None, alpha=0.05, min_effect=0.01):
  """Ranks the configurations of `results` and compares them with the best.

  Args:
    results: `RunResult`s of the study.
    fixed_flags: `{flag: value}` common to every run (to tell which
      configurations are the same training).
    alpha: Level of the tests (Holm-adjusted p below it: `worse`).
    min_effect: The accuracy difference the seeds-needed number is for.

  Returns:
    An `Analysis`.

  Raises:
    ValueError: for an `alpha` outside (0, 1) or a `min_effect` <= 0.
  """
  if not 0 < alpha < 1:
    raise ValueError(f'alpha must be in (0, 1); got {alpha!r}.')
  if not (min_effect > 0 and math.isfinite(min_effect)):
    raise ValueError(f'min_effect must be a positive accuracy difference; '
                     f'got {min_effect!r}.')
  summaries = summarize(results)
  representative = {}  # training key -> first summary (grid order)
  duplicates = {}      # representative's values -> its duplicates
  distinct = []
  for summary in summaries:
    key = training_key(summary.flags(fixed_flags or {}))
    if key in representative:
      duplicates.setdefault(representative[key].values, []).append(summary)
    else:
      representative[key] = summary
      distinct.append(summary)
  order = {s.values: i for i, s in enumerate(distinct)}
  # Ranked by what the runs reached: the finished ones' final accuracy and
  # the stopped-early ones' last (the same as the final mean without any).
  ranked = [s for s in distinct if s.reached_ci.n and not s.status]
  clean = sorted(ranked, key=lambda s: (-s.reached_ci.mean, order[s.values]))
  broken = sorted((s for s in distinct if s.status),
                  key=lambda s: (-len(s.final) / len(s.runs),
                                 -(s.final_ci.mean or -1.0), order[s.values]))
  empty = [s for s in distinct if not s.reached_ci.n and not s.status]
  # The tests use finished runs only: a stopped-early run never enters one.
  best = next((s for s in clean if s.final), None)
  comparisons = {s.values: stats.compare(best.accuracies, s.accuracies)
                 for s in clean if s.final and s is not best}
  tested = [v for v, c in comparisons.items() if c.p_value is not None]
  adjusted = dict(zip(tested, stats.holm(comparisons[v].p_value
                                         for v in tested)))
  by_ranks = [v for v, c in comparisons.items() if c.wilcoxon_p is not None]
  adjusted_wilcoxon = dict(zip(by_ranks, stats.holm(
      comparisons[v].wilcoxon_p for v in by_ranks)))
  rows = []
  for rank, summary in enumerate(clean + broken + empty, 1):
    comparison = comparisons.get(summary.values)
    p = adjusted.get(summary.values)
    if summary is best:
      verdict = BEST
    elif summary.status:
      verdict = summary.status
    elif not summary.final and summary.stopped_early:
      verdict = EARLY
    elif comparison is None:
      verdict = ''
    elif p is None:
      verdict = NOT_TESTED
    elif p < alpha:
      verdict = WORSE if comparison.difference < 0 else BETTER
    else:
      verdict = TIED
    needed = (stats.seeds_needed(min_effect, comparison.sd, alpha)
              if comparison is not None and comparison.sd is not None
              else None)
    if needed is not None:  # and at least as many as a claimed test needs
      needed = max(needed, stats.MIN_SEEDS_FOR_TEST)
    rows.append(Row(rank, summary, comparison, p, verdict, needed,
                    adjusted_wilcoxon=adjusted_wilcoxon.get(summary.values)))
    for duplicate in duplicates.get(summary.values, ()):
      rows.append(Row(rank, duplicate, verdict=f'same training as rank '
                      f'{rank}', duplicate_of=summary))
  return Analysis(tuple(rows), alpha, min_effect, len(tested))
