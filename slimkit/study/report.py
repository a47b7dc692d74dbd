"""A study's report: results.csv, report.md, plots/ and TensorBoard HParams.

  summaries = report.summarize(results)        # one per configuration
  report.write_all(study_dir, info, results)   # every file, atomically

`results.csv` has one row per run; `report.md` one row per configuration
(the varied values without the seed) with the mean and spread over seeds,
sorted by mean final validation accuracy, then the fixed flags, notes and
the plots; `plots/` holds validation accuracy and training loss against the
step and accuracy against training time, one line per configuration with
the seeds' range shaded. The HParams summaries make `tensorboard --logdir
study_dir` list the runs in its HParams dashboard. Every file is written to
a temporary name and renamed, so a crash never leaves one half-written.
"""

import csv
import dataclasses
import datetime
import glob
import io
import math
import os
from typing import Sequence, Tuple

import numpy as np

from slimkit import runs as run_folder
from slimkit.training import optimization
from slimkit.study import grid

PLOTS = ('validation_accuracy.png', 'training_loss.png',
         'accuracy_vs_time.png')
_ADAM_FAMILY = tuple(optimization.optimizers_where(lambda e: e.adam_family))
# The optimizer flags, each read only by the optimizers whose entry names it.
_OPTIMIZER_FLAGS = frozenset(
    f.name for f in dataclasses.fields(optimization.OptimizerHParams)
    if f.name != 'weight_decay')  # weight_decay is the nets' L2 otherwise


@dataclasses.dataclass(frozen=True)
class StudyInfo:
  """What the report says about the study besides its results.

  Attributes:
    name: A title (the study folder's name).
    axes: The `grid.Axis` list.
    seeds: The seeds.
    fixed_flags: `{flag: value}` common to every run (the base command).
  """
  name: str
  axes: Sequence
  seeds: Sequence[int]
  fixed_flags: dict


@dataclasses.dataclass(frozen=True)
class Summary:
  """One configuration over its seeds.

  Attributes:
    values: `((axis, value), ...)`.
    runs: Its `RunResult`s.
    final: Final validation accuracies of the runs that have one.
    best: Best validation accuracies (with `best_steps`).
    best_steps: Their steps.
  """
  values: Tuple[Tuple[str, str], ...]
  runs: tuple
  final: tuple
  best: tuple
  best_steps: tuple

  @property
  def label(self):
    return ', '.join(f'{k}={grid.display_value(k, v)}'
                     for k, v in self.values) or 'base'

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
    numbers = [getattr(r, field) for r in self.runs
               if getattr(r, field) is not None]
    return float(np.mean(numbers)) if numbers else None


def summarize(results):
  """Groups runs by configuration; sorted by mean final accuracy, best first.

  Configurations without any validation result come last, in grid order.
  """
  groups = {}
  for result in results:
    groups.setdefault(result.values, []).append(result)
  summaries = []
  for values, runs in groups.items():
    done = [r for r in runs if r.final_accuracy is not None]
    summaries.append(Summary(
        values=values, runs=tuple(runs),
        final=tuple(r.final_accuracy for r in done),
        best=tuple(r.best_accuracy for r in done),
        best_steps=tuple(r.best_step for r in done)))
  order = {s.values: i for i, s in enumerate(summaries)}
  return sorted(summaries, key=lambda s: (
      -np.mean(s.final) if s.final else math.inf, order[s.values]))


def _spread(values, digits=4):
  """'mean ± std (min-max, n=k)' of `values`; '-' when empty."""
  if not values:
    return '-'
  mean = np.mean(values)
  if len(values) == 1:
    return f'{mean:.{digits}f} (n=1)'
  return (f'{mean:.{digits}f} ± {np.std(values, ddof=1):.{digits}f} '
          f'({min(values):.{digits}f}-{max(values):.{digits}f}, '
          f'n={len(values)})')


def _duration(seconds):
  return '-' if seconds is None else str(datetime.timedelta(
      seconds=int(round(seconds))))


def _atomic_write(path, data, mode='w'):
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.tmp', mode) as f:
    f.write(data)
  os.replace(path + '.tmp', path)


def csv_text(results, axes):
  """`results.csv`: one row per run."""
  out = io.StringIO()
  writer = csv.writer(out)
  names = [axis.name for axis in axes]
  writer.writerow(['run'] + names + [
      'seed', 'state', 'global_step', 'final_accuracy', 'best_accuracy',
      'best_step', 'final_loss', 'images_per_sec', 'wall_time_secs',
      'parameters', 'error'])
  fmt = lambda x: '' if x is None else (f'{x:.6g}' if isinstance(x, float)
                                        else x)
  for r in results:
    values = dict(r.values)
    writer.writerow([r.name] + [grid.display_value(n, values.get(n, ''))
                                for n in names] + [
        r.seed, r.state, r.global_step, fmt(r.final_accuracy),
        fmt(r.best_accuracy), fmt(r.best_step), fmt(r.final_loss),
        fmt(r.images_per_sec), fmt(r.wall_time), fmt(r.parameters),
        r.error or ''])
  return out.getvalue()


def notes(info, summaries):
  """Sentences a reader of the table needs (what the numbers do not say)."""
  said = []
  epsilons = set()
  unread = {}  # flag -> the optimizers of the study that do not read it
  for summary in summaries:
    flags = summary.flags(info.fixed_flags)
    name = flags.get('optimizer', 'rmsprop')
    if name in optimization.list_optimizers():
      reads = optimization.OPTIMIZERS.get(name).flags
      for axis in info.axes:
        if axis.name in _OPTIMIZER_FLAGS and axis.name not in reads:
          unread.setdefault(axis.name, set()).add(name)
    if name in _ADAM_FAMILY:
      try:  # not given: the optimizer's own (1.0 for adam, Keras's else)
        given = flags.get('opt_epsilon')
        epsilons.add(optimization.optimizer_specs.epsilon(
            name, None if given is None else float(given)))
      except ValueError:
        pass
  if any(e >= 0.1 for e in epsilons):
    said.append(
        'With `--opt_epsilon=1.0` (TF-Slim\'s default, kept for '
        'compatibility) Adam\'s update is `lr * m / (sqrt(v) + 1)`, about '
        '`lr * m` for gradients much smaller than 1: Adam then behaves like '
        'slow momentum SGD and "crawls". Adam\'s own default is 1e-8; with '
        'it each weight steps by about `lr` whatever its gradient\'s scale, '
        'so Adam then wants a smaller `--learning_rate` (its usual 0.001) '
        'than momentum does.')
  for flag, names in sorted(unread.items()):
    said.append(
        f'`--{flag}` does not enter '
        + ', '.join(f'`{n}`' for n in sorted(names))
        + ': rows that differ only in it are the same training, repeated.')
  if len(info.seeds) == 1:
    said.append('One seed per configuration: a difference smaller than the '
                'run-to-run spread of a seed is noise. Repeat with '
                '`--seeds=0,1,2` to see the spread.')
  failed = [r for s in summaries for r in s.runs if r.state == 'failed']
  if failed:
    said.append(f'{len(failed)} run(s) failed; see the table below and '
                'each run\'s `train.log`.')
  return said


def markdown(info, summaries, results):
  """The text of `report.md`."""
  finished = sum(r.state == 'finished' for r in results)
  failed = [r for r in results if r.state == 'failed']
  early = [r for r in results if r.stopped_by]
  wall = sum(r.wall_time or 0.0 for r in results)
  varied = '; '.join(
      f'`{a.name}`: ' + ', '.join(grid.display_value(a.name, v)
                                  for v in a.values)
      for a in info.axes) or 'nothing (one configuration)'
  lines = [
      f'# Study {info.name}', '',
      f'{len(results)} runs: {len(summaries)} configuration(s) x '
      f'{len(info.seeds)} seed(s) ({", ".join(map(str, info.seeds))}); '
      f'{finished} finished, {len(failed)} failed'
      f'{f", {len(early)} stopped early" if early else ""}; '
      f'{_duration(wall)} of '
      'training in all.', '',
      f'Varied: {varied}.', '',
      'Sorted by mean final validation accuracy (mean ± standard deviation '
      'over seeds, range, number of runs with a result).', '']
  names = [a.name for a in info.axes]
  lines.append('| rank | ' + ' | '.join(names) + ' | final accuracy | best '
               'accuracy | at step | final loss | images/s | training time | '
               'parameters |')
  lines.append('|' + '---|' * (len(names) + 8))
  for rank, s in enumerate(summaries, 1):
    values = dict(s.values)
    best_step = (int(np.median(s.best_steps)) if s.best_steps else None)
    parameters = s.runs[0].parameters
    lines.append(
        f'| {rank} | ' + ' | '.join(grid.display_value(n, values[n])
                                    for n in names) +
        f' | {_spread(s.final)} | {_spread(s.best)} | '
        f'{best_step if best_step is not None else "-"} | '
        f'{_fmt(s.mean("final_loss"))} | {_fmt(s.mean("images_per_sec"), 1)} '
        f'| {_duration(s.mean("wall_time"))} | '
        f'{parameters if parameters is not None else "-"} |')
  said = notes(info, summaries)
  if said:
    lines += ['', '## Notes', ''] + [f'- {note}' for note in said]
  if failed:
    lines += ['', '## Failed runs', '']
    lines += [f'- `{r.name}`: {r.error}' for r in failed]
  if early:  # ranked above with what they reached
    lines += ['', '## Stopped early', '']
    lines += [f'- `{r.name}`: stopped early at step {r.stopped_at} by '
              f'{r.stopped_by}' for r in early]
  lines += ['', '## Fixed flags', '', 'Every run had these flags (and its '
            'own `--train_dir` and `--random_seed`):', '', '```']
  lines += [f'--{k}={v}' for k, v in sorted(info.fixed_flags.items())]
  lines.append('```')
  for axis in info.axes:
    if axis.name == grid.FLAGFILE:  # what each recipe sets over them
      lines += ['', '## Recipes', '']
      for path in axis.values:
        flags = ' '.join(f'`--{k}={v}`' for k, v in grid.read_flagfile(path))
        lines.append(f'- `{grid.display_value(axis.name, path)}`: '
                     f'{flags or "the fixed flags alone"}')
  lines += ['', '## Plots', '']
  lines += [f'![{p[:-4]}](plots/{p})' for p in PLOTS]
  lines += ['', 'Per run: `results.csv`; curves: `tensorboard --logdir '
            f'{info.name}` (the HParams tab lists the runs).', '']
  return '\n'.join(lines)


def _fmt(value, digits=4):
  return '-' if value is None else f'{value:.{digits}f}'


def _aligned(curves):
  """Steps common to all `curves` and the values there, `[runs, steps]`."""
  common = set.intersection(*(set(s for s, _ in c) for c in curves))
  steps = sorted(common)
  table = np.array([[dict(c)[s] for s in steps] for c in curves])
  return np.array(steps), table


def _plot(path, summaries, field, xlabel, ylabel, by_time=False):
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot
  figure, axes = pyplot.subplots(figsize=(8, 5), dpi=100)
  drawn = 0
  for summary in summaries:
    curves = [getattr(r, field) for r in summary.runs if getattr(r, field)]
    if not curves:
      continue
    if by_time:  # x: the mean time of each validation, across seeds
      length = min(len(c) for c in curves)
      x = np.mean([[t for t, _ in c[:length]] for c in curves], axis=0)
      table = np.array([[v for _, v in c[:length]] for c in curves])
    else:
      x, table = _aligned(curves)
      if not len(x):
        continue
    line, = axes.plot(x, table.mean(axis=0), label=summary.label,
                      marker='o' if len(x) <= 20 else None, markersize=3)
    if len(curves) > 1:
      axes.fill_between(x, table.min(axis=0), table.max(axis=0),
                        color=line.get_color(), alpha=0.2)
    drawn += 1
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  axes.grid(alpha=0.3)
  if drawn:
    axes.legend(fontsize='small')
  else:
    axes.text(0.5, 0.5, 'no data yet', ha='center', transform=axes.transAxes)
  figure.tight_layout()
  out = io.BytesIO()
  figure.savefig(out, format='png')
  pyplot.close(figure)
  _atomic_write(path, out.getvalue(), mode='wb')


def write_plots(plots_dir, summaries):
  """The three PNG plots; the shading is the range over seeds."""
  _plot(os.path.join(plots_dir, PLOTS[0]), summaries, 'accuracy',
        'global step', 'validation accuracy')
  _plot(os.path.join(plots_dir, PLOTS[1]), summaries, 'loss', 'global step',
        'training loss (total)')
  _plot(os.path.join(plots_dir, PLOTS[2]), summaries, 'accuracy_time',
        'training time (seconds)', 'validation accuracy', by_time=True)


def _typed(values):
  """The values as floats when they all are numbers (for the HParams
  dashboard's sorting and filtering), else as strings."""
  try:
    return [float(v) for v in values]
  except ValueError:
    return list(values)


def write_hparams(study_dir, info, results):
  """HParams summaries: the experiment at `study_dir`, a session per run.

  Rewritten in full each time (old ones removed), so a rebuilt report does
  not list a run twice.
  """
  import tensorflow as tf
  from tensorboard.plugins.hparams import api as hp
  shown = lambda name, values: _typed([grid.display_value(name, v)
                                       for v in values])
  params = {a.name: hp.HParam(a.name, hp.Discrete(shown(a.name, a.values)))
            for a in info.axes}
  params['seed'] = hp.HParam('seed', hp.Discrete(list(info.seeds)))
  metrics = [hp.Metric('eval/Accuracy', group=run_folder.VALIDATION_DIR,
                       display_name='validation accuracy'),
             hp.Metric('eval/loss', group=run_folder.VALIDATION_DIR,
                       display_name='validation loss'),
             hp.Metric('total_loss', display_name='training loss')]
  targets = [study_dir] + [os.path.join(study_dir, 'runs', r.name)
                           for r in results if r.state != 'not started']
  for directory in targets:
    for old in glob.glob(os.path.join(directory, 'events.out.*.hparams')):
      os.remove(old)
  writer = tf.summary.create_file_writer(study_dir, filename_suffix='.hparams')
  with writer.as_default():
    hp.hparams_config(hparams=list(params.values()), metrics=metrics)
  writer.close()
  for r, directory in zip([r for r in results if r.state != 'not started'],
                          targets[1:]):
    writer = tf.summary.create_file_writer(directory,
                                           filename_suffix='.hparams')
    values = {params[k]: shown(k, [v])[0] for k, v in r.values}
    values[params['seed']] = r.seed
    with writer.as_default():
      hp.hparams(values, trial_id=r.name)
    writer.close()


def write_all(study_dir, info, results):
  """Writes results.csv, report.md, plots/ and the HParams summaries.

  Returns:
    The path of `report.md`.
  """
  summaries = summarize(results)
  _atomic_write(os.path.join(study_dir, 'results.csv'),
                csv_text(results, info.axes))
  write_plots(os.path.join(study_dir, 'plots'), summaries)
  write_hparams(study_dir, info, results)
  path = os.path.join(study_dir, 'report.md')
  _atomic_write(path, markdown(info, summaries, results))
  return path
