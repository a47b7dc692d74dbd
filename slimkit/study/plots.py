"""The report's plots: learning curves with 95% CI bands, and a forest plot.

  figure = plots.forest_figure(analysis)      # a matplotlib Figure
  plots.write_plots(plots_dir, analysis)      # every PNG of PLOTS

Learning curves: per configuration the mean over its finished runs, a band
of the 95% t interval of that mean at each step (not the seeds' min-max
range, which grows with the number of seeds), and each run as a faint line
(dotted when the run diverged or failed). The forest plot: the mean final
validation accuracy of each configuration with its 95% CI, in rank order,
the best's interval shaded across, so a reader sees at a glance which
intervals overlap it. Sized for report.md's width (7 inches at 120 dpi)
with text at 10-11 points.
"""

import io
import os

import numpy as np

from slimkit.study import stats

FOREST = 'final_accuracy.png'
PLOTS = (FOREST, 'validation_accuracy.png', 'training_loss.png',
         'accuracy_vs_time.png')
_SIZE, _DPI = (7.0, 4.5), 120
_SEED_ALPHA = 0.25
_BAND_ALPHA = 0.2


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot
  return pyplot


def _aligned(curves):
  """Steps common to all `curves` and the values there, `[runs, steps]`."""
  common = set.intersection(*(set(s for s, _ in c) for c in curves))
  steps = sorted(common)
  table = np.array([[dict(c)[s] for s in steps] for c in curves])
  return np.array(steps), table


def band(table, confidence=0.95):
  """Mean and t-interval bounds over the rows of `table` at each column;
  the bounds are None with fewer than 2 rows."""
  mean = table.mean(axis=0)
  if len(table) < 2:
    return mean, None, None
  cis = [stats.mean_ci(column, confidence) for column in table.T]
  return (mean, np.array([c.low for c in cis]),
          np.array([c.high for c in cis]))


def curve_figure(summaries, field, xlabel, ylabel, by_time=False):
  """One learning-curve figure: `field` of each `RunResult` against x.

  Args:
    summaries: `ranking.Summary`s, in the legend's order.
    field: 'accuracy', 'loss' or 'accuracy_time' (`((x, value), ...)`).
    xlabel: The x axis' label.
    ylabel: The y axis' label.
    by_time: x is the mean training time of each validation over the
      finished runs (their steps align; their times do not).

  Returns:
    The matplotlib `Figure` (close it with `pyplot.close`).
  """
  pyplot = _pyplot()
  figure, axes = pyplot.subplots(figsize=_SIZE, dpi=_DPI)
  drawn = 0
  colors = pyplot.rcParams['axes.prop_cycle'].by_key()['color']
  for index, summary in enumerate(summaries):
    color = colors[index % len(colors)]
    finished = [getattr(r, field) for r in summary.finished
                if getattr(r, field)]
    others = [getattr(r, field) for r in summary.runs
              if getattr(r, field) and r not in summary.finished]
    for curve, style in ([(c, '-') for c in finished] +
                         [(c, ':') for c in others]):
      axes.plot([x for x, _ in curve], [v for _, v in curve], color=color,
                alpha=_SEED_ALPHA, linewidth=0.8, linestyle=style)
    if not finished:
      continue
    if by_time:
      length = min(len(c) for c in finished)
      x = np.mean([[t for t, _ in c[:length]] for c in finished], axis=0)
      table = np.array([[v for _, v in c[:length]] for c in finished])
    else:
      x, table = _aligned(finished)
      if not len(x):
        continue
    mean, low, high = band(table)
    axes.plot(x, mean, color=color, linewidth=2,
              label=f'{summary.label} (n={len(finished)})',
              marker='o' if len(x) <= 20 else None, markersize=3)
    if low is not None:
      axes.fill_between(x, low, high, color=color, alpha=_BAND_ALPHA,
                        linewidth=0)
    drawn += 1
  axes.set_xlabel(xlabel, fontsize=11)
  axes.set_ylabel(ylabel, fontsize=11)
  axes.tick_params(labelsize=10)
  axes.grid(alpha=0.3)
  if drawn:
    axes.legend(fontsize=10, title='mean, 95% CI band; faint: each seed',
                title_fontsize=9)
  else:
    axes.text(0.5, 0.5, 'no data yet', ha='center', transform=axes.transAxes)
  figure.tight_layout()
  return figure


def forest_figure(analysis):
  """Mean final validation accuracy and its 95% CI per configuration.

  Rows in rank order, the best at the top; duplicates (the same training)
  and configurations without a result are left out. The best's interval is
  shaded across all rows.

  Returns:
    The matplotlib `Figure`.
  """
  pyplot = _pyplot()
  rows = [r for r in analysis.rows if r.duplicate_of is None and
          r.summary.final]
  height = max(2.5, 0.45 * len(rows) + 1.5)
  figure, axes = pyplot.subplots(figsize=(_SIZE[0], height), dpi=_DPI)
  best = analysis.best
  if best is not None and best.summary.final_ci.low is not None:
    ci = best.summary.final_ci
    axes.axvspan(ci.low, ci.high, color='tab:blue', alpha=0.12,
                 label='95% CI of the best')
  labels = []
  for y, row in enumerate(rows):
    ci = row.summary.final_ci
    color = ('tab:blue' if row is best else
             'tab:red' if row.summary.status else 'black')
    if ci.low is not None:
      axes.errorbar([ci.mean], [y], xerr=[[ci.mean - ci.low],
                                          [ci.high - ci.mean]],
                    fmt='o', color=color, capsize=4, markersize=6)
    else:
      axes.plot([ci.mean], [y], 'o', color=color, markersize=6)
    verdict = f'; {row.verdict}' if row.verdict else ''
    labels.append(f'{row.summary.label}\n(n={ci.n}{verdict})')
  axes.set_yticks(range(len(rows)))
  axes.set_yticklabels(labels, fontsize=9)
  axes.set_ylim(len(rows) - 0.5, -0.5)  # rank 1 at the top
  axes.set_xlabel('final validation accuracy: mean and 95% CI over seeds',
                  fontsize=11)
  axes.tick_params(axis='x', labelsize=10)
  axes.grid(axis='x', alpha=0.3)
  if not rows:
    axes.text(0.5, 0.5, 'no data yet', ha='center', transform=axes.transAxes)
  elif best is not None and best.summary.final_ci.low is not None:
    axes.legend(fontsize=9, loc='lower left')
  figure.tight_layout()
  return figure


def _save(figure, path):
  out = io.BytesIO()
  figure.savefig(out, format='png')
  _pyplot().close(figure)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.tmp', 'wb') as f:  # never half a file
    f.write(out.getvalue())
  os.replace(path + '.tmp', path)


def figures(analysis):
  """`{file name: Figure}` of every plot of `PLOTS`."""
  summaries = [r.summary for r in analysis.rows if r.duplicate_of is None]
  return {
      FOREST: forest_figure(analysis),
      PLOTS[1]: curve_figure(summaries, 'accuracy', 'global step',
                             'validation accuracy'),
      PLOTS[2]: curve_figure(summaries, 'loss', 'global step',
                             'training loss (total)'),
      PLOTS[3]: curve_figure(summaries, 'accuracy_time',
                             'training time (seconds)',
                             'validation accuracy', by_time=True),
  }


def write_plots(plots_dir, analysis):
  """Writes the PNGs of `PLOTS` to `plots_dir`."""
  for name, figure in figures(analysis).items():
    _save(figure, os.path.join(plots_dir, name))
