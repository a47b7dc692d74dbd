"""A study's report: results.csv, summary.csv, report.md, plots/, HParams.

  analysis = report.analyze(info, results)     # ranked, tested rows
  report.write_all(study_dir, info, results)   # every file, atomically

`results.csv` has one row per run; `summary.csv` and `report.md` one row
per configuration (the varied values without the seed): the mean, standard
deviation and 95% confidence interval over its finished runs, and against
the best configuration the difference with its interval, a test over the
seeds both ran (Holm-adjusted) and a verdict (see `ranking`), then notes on
what the table does not say, the fixed flags and the plots (`plots`). The
HParams summaries make `tensorboard --logdir study_dir` list the runs and
the configurations (with the mean and CI bounds as metrics). Every file is
written to a temporary name and renamed, so a crash never leaves one
half-written.
"""

import csv
import dataclasses
import datetime
import glob
import io
import os
from typing import Sequence

from slimkit import runs as run_folder
from slimkit.study import grid
from slimkit.study import plots as plots_lib
from slimkit.study import ranking
from slimkit.study import stats
from slimkit.training import optimization

PLOTS = plots_lib.PLOTS
CONFIGURATIONS_DIR = 'configurations'  # HParams sessions, one per config
summarize = ranking.summarize
_ADAM_FAMILY = tuple(optimization.optimizers_where(lambda e: e.adam_family))
_SUGGESTED_SEEDS = '0,1,2,3,4'


@dataclasses.dataclass(frozen=True)
class StudyInfo:
  """What the report says about the study besides its results.

  Attributes:
    name: A title (the study folder's name).
    axes: The `grid.Axis` list.
    seeds: The seeds.
    fixed_flags: `{flag: value}` common to every run (the base command).
    alpha: Level of the tests against the best (`--alpha`).
    min_effect: The accuracy difference the seeds-needed numbers are for
      (`--min_effect`).
  """
  name: str
  axes: Sequence
  seeds: Sequence[int]
  fixed_flags: dict
  alpha: float = 0.05
  min_effect: float = 0.01


def analyze(info, results):
  """`ranking.Analysis` of `results` with the study's alpha and effect."""
  return ranking.analyze(results, info.fixed_flags, alpha=info.alpha,
                         min_effect=info.min_effect)


def _duration(seconds):
  return '-' if seconds is None else str(datetime.timedelta(
      seconds=int(round(seconds))))


def _atomic_write(path, data, mode='w'):
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.tmp', mode) as f:
    f.write(data)
  os.replace(path + '.tmp', path)


def _csv_number(x):
  return '' if x is None else (f'{x:.6g}' if isinstance(x, float) else x)


def csv_text(results, axes):
  """`results.csv`: one row per run."""
  out = io.StringIO()
  writer = csv.writer(out)
  names = [axis.name for axis in axes]
  writer.writerow(['run'] + names + [
      'seed', 'state', 'global_step', 'final_accuracy', 'best_accuracy',
      'best_step', 'final_loss', 'images_per_sec', 'wall_time_secs',
      'parameters', 'error'])
  fmt = _csv_number
  for r in results:
    values = dict(r.values)
    writer.writerow([r.name] + [grid.display_value(n, values.get(n, ''))
                                for n in names] + [
        r.seed, r.state, r.global_step, fmt(r.final_accuracy),
        fmt(r.best_accuracy), fmt(r.best_step), fmt(r.final_loss),
        fmt(r.images_per_sec), fmt(r.wall_time), fmt(r.parameters),
        r.error or ''])
  return out.getvalue()


SUMMARY_COLUMNS = (
    'rank', 'verdict', 'runs', 'finished', 'diverged', 'diverged_steps',
    'failed', 'final_accuracy_mean', 'final_accuracy_sd',
    'final_accuracy_ci_low', 'final_accuracy_ci_high', 'best_accuracy_mean',
    'best_accuracy_sd', 'best_accuracy_ci_low', 'best_accuracy_ci_high',
    'final_loss_mean', 'final_loss_ci_low', 'final_loss_ci_high',
    'difference', 'difference_ci_low', 'difference_ci_high', 'test',
    'pairs', 'p_value', 'p_holm', 'wilcoxon_p', 'wilcoxon_p_holm',
    'seeds_needed', 'same_training_as', 'stopped_early',
    'reached_accuracy_mean')


def summary_csv_text(analysis, axes):
  """`summary.csv`: one row per configuration, in the report's order."""
  out = io.StringIO()
  writer = csv.writer(out)
  names = [axis.name for axis in axes]
  writer.writerow(['configuration'] + names + list(SUMMARY_COLUMNS))
  fmt = _csv_number
  for row in analysis.rows:
    s, c = row.summary, row.comparison
    values = dict(s.values)
    ci = lambda m: [fmt(m.mean), fmt(m.sd), fmt(m.low), fmt(m.high)]
    writer.writerow(
        [s.label] + [grid.display_value(n, values.get(n, '')) for n in names]
        + [row.rank, row.verdict, len(s.runs), len(s.finished),
           len(s.diverged), ' '.join(str(r.diverged_step) for r in
                                     s.diverged), len(s.failed)]
        + ci(s.final_ci) + ci(s.best_ci)
        + [fmt(s.loss_ci.mean), fmt(s.loss_ci.low), fmt(s.loss_ci.high)]
        + ([fmt(c.difference), fmt(c.low), fmt(c.high), c.test or '',
            c.n if c.test == stats.PAIRED else '', fmt(c.p_value),
            fmt(row.adjusted_p), fmt(c.wilcoxon_p),
            fmt(row.adjusted_wilcoxon)] if c else [''] * 9)
        + [fmt(row.seeds_needed),
           row.duplicate_of.label if row.duplicate_of else '',
           len(s.stopped_early), fmt(s.reached_ci.mean)])
  return out.getvalue()


def notes(info, summaries):
  """Sentences on the flags a reader of the table needs."""
  said = []
  epsilons = set()
  unread = {}  # flag -> the optimizers of the study that do not read it
  for summary in summaries:
    flags = summary.flags(info.fixed_flags)
    name = flags.get('optimizer', ranking.DEFAULT_OPTIMIZER)
    for flag in ranking.unread_flags(flags, [a.name for a in info.axes]):
      unread.setdefault(flag, set()).add(name)
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
        + ': rows that differ only in it are the same training, repeated; '
        'the table marks them "same training" and ranks them together.')
  if len(info.seeds) == 1:
    said.append('One seed per configuration: a difference smaller than the '
                'run-to-run spread of a seed is noise, and no test can be '
                f'claimed. Repeat with `--seeds={_SUGGESTED_SEEDS}` to see '
                'the spread and test the differences.')
  return said


def statistics_notes(analysis):
  """Sentences on what the statistics of the table say and do not say."""
  said = []
  rows = [r for r in analysis.rows if r.duplicate_of is None]
  if analysis.tests:
    said.append(
        f'Each configuration is compared with the best by a paired t-test '
        f'over the seeds both ran (Welch\'s t-test where seeds do not '
        f'pair); the p-values are Holm-adjusted for the {analysis.tests} '
        f'comparison(s) (`p (Holm)`; the exact Wilcoxon signed-rank test, '
        f'also Holm-adjusted, is given from 6 seeds). `worse`: adjusted p '
        f'< {analysis.alpha:g}. `tied with best` means no difference was '
        'detected, not that there is none: the last column says how many '
        f'seeds a difference of {analysis.min_effect:g} would take.')
  untested = [r for r in rows if r.verdict == ranking.NOT_TESTED]
  if untested:
    n = min(r.summary.final_ci.n for r in untested)
    closest = untested[0]
    advice = (f'n={n}: no significance can be claimed; run '
              f'`--seeds={_SUGGESTED_SEEDS}` for a test')
    if closest.seeds_needed is not None:
      advice += (
          f'. To detect a difference of {analysis.min_effect:g} accuracy '
          'with 80% power at the observed spread of paired differences '
          f'(SD {closest.comparison.sd:.4f}, rank {closest.rank} against '
          f'the best) takes about {closest.seeds_needed} seeds')
    elif closest.comparison is not None and closest.comparison.sd:
      advice += (f'; detecting a difference of {analysis.min_effect:g} at '
                 f'the observed spread (SD {closest.comparison.sd:.4f}) '
                 'would take more than 100,000 seeds')
    elif closest.comparison is not None and closest.comparison.sd is None:
      advice += ('; with one run on a side there is no spread to plan the '
                 'number of seeds from')
    said.append(advice + '.')
  early = analysis.stopped_early
  if early:
    by = ', '.join(sorted({r.stopped_by or 'a scheduler' for r in early}))
    said.append(
        f'{len(early)} run(s) stopped early by {by}: each is ranked with the '
        'validation accuracy it reached (its last validation, before its '
        'last step; marked "stopped early" beside the value), its '
        'configuration placed by the mean over its finished and '
        'stopped-early runs. They are left out of the significance tests '
        'and of the final-accuracy means and intervals, which use finished '
        'runs only; a configuration whose runs all stopped early is not '
        'tested.')
  broken = [r for r in rows if r.summary.status]
  if broken:
    diverged = sum(len(r.summary.diverged) for r in broken)
    failed = sum(len(r.summary.failed) for r in broken)
    said.append(
        f'{diverged} run(s) diverged (a NaN or infinite loss stopped them) '
        f'and {failed} failed otherwise: their configurations rank below '
        'every configuration that finished and are not tested; their '
        'statistics use the finished runs only (n). See "Failed runs".')
  return said


def _number(value, digits=4):
  return '-' if value is None else f'{value:.{digits}f}'


def _mean_sd(ci):
  if ci.mean is None:
    return '-'
  if ci.sd is None:
    return f'{ci.mean:.4f} (n={ci.n})'
  return f'{ci.mean:.4f} ± {ci.sd:.4f} (n={ci.n})'


def _interval(low, high):
  return '-' if low is None else f'[{low:.4f}, {high:.4f}]'


def _test_cells(row):
  """The 'vs best', 'p (Holm)' and 'seeds needed' cells of a row."""
  c = row.comparison
  if c is None or c.difference is None:
    return ['-', '-', '-']
  difference = f'{c.difference:+.4f} {_interval(c.low, c.high)}'.strip()
  if row.adjusted_p is None:
    p = '-'
  else:
    how = (f'paired t, {c.n} seeds' if c.test == stats.PAIRED else
           f'Welch, {c.n[0]}+{c.n[1]} runs')
    p = f'{row.adjusted_p:.3g} ({how})'
    if row.adjusted_wilcoxon is not None:
      p += f'; Wilcoxon {row.adjusted_wilcoxon:.3g}'
  return [difference, p, '-' if row.seeds_needed is None else
          str(row.seeds_needed)]


def _early_cells(summary):
  """The stopped-early part of a row's accuracy cell: what those runs
  reached, marked, and the mean the row is ranked by when it has both."""
  if not summary.stopped_early:
    return [summary.early] if summary.early else []
  cells = [f'{_mean_sd(summary.early_ci)} {summary.early}']
  if summary.final:
    cells.append(f'ranked by {summary.reached_ci.mean:.4f}, the mean of '
                 f'all {summary.reached_ci.n}')
  return cells


def table(info, analysis):
  """The Markdown table of `report.md`: one row per configuration."""
  names = [a.name for a in info.axes]
  lines = [
      '| rank | ' + ' | '.join(names) + ' | final accuracy | 95% CI | best '
      'accuracy (95% CI) | best at steps | vs best (95% CI) | p (Holm) | '
      f'verdict | seeds for Δ={info.min_effect:g} | final total loss | '
      'images/s | training time | parameters |',
      '|' + '---|' * (len(names) + 13)]
  for row in analysis.rows:
    s = row.summary
    values = dict(s.values)
    # The seeds' own steps: a median of them may be a step never validated.
    steps = sorted(set(s.best_steps))
    best_step = ('-' if not steps else str(steps[0]) if len(steps) == 1
                 else f'{steps[0]}-{steps[-1]}')
    parameters = next((r.parameters for r in s.runs
                       if r.parameters is not None), None)
    final = '; '.join(
        ([_mean_sd(s.final_ci)] if s.final else [s.status] if s.status
         else []) + _early_cells(s) +
        ([s.interrupted] if s.interrupted else [])) or '-'

    rank = (f'={row.rank}' if row.duplicate_of else
            str(row.rank) if s.reached_ci.n or s.status
            else '-')  # no result yet
    best = ('-' if s.best_ci.mean is None else
            f'{s.best_ci.mean:.4f} {_interval(s.best_ci.low, s.best_ci.high)}'
            .strip())
    cells = [rank] + [grid.display_value(n, values[n]) for n in names] + [
        final, _interval(s.final_ci.low, s.final_ci.high), best,
        best_step] + _test_cells(row)
    cells.insert(len(names) + 7, row.verdict or '-')
    cells += [_number(s.loss_ci.mean), _number(s.mean('images_per_sec'), 1),
              _duration(s.mean('wall_time')),
              '-' if parameters is None else str(parameters)]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def _validation_split(info):
  """'the `test` split of digits (the validation during training)'."""
  flags = info.fixed_flags
  split = flags.get('validation_split_name')
  dataset = flags.get('dataset_name', 'imagenet')
  if not split:
    try:
      from slimkit.datasets import dataset_factory
      split = dataset_factory.default_validation_split(
          dataset, flags.get('dataset_dir'))
    except Exception:  # a description: it must never fail the report
      return 'the validation split (else the test split)'
  note = (' (a test split: the same split chose the rows, so its accuracy '
          'is not an unbiased test score)' if split == 'test' else '')
  return f'the `{split}` split of {dataset}{note}'


def markdown(info, analysis, results):
  """The text of `report.md`."""
  finished = sum(r.state == 'finished' for r in results)
  unfinished = sum(r.state in ('running', 'stopped') for r in results)
  failed = [r for r in results if r.state == 'failed']
  early = [r for r in results if r.state == 'stopped early']
  wall = sum(r.wall_time or 0.0 for r in results)
  varied = '; '.join(
      f'`{a.name}`: ' + ', '.join(grid.display_value(a.name, v)
                                  for v in a.values)
      for a in info.axes) or 'nothing (one configuration)'
  lines = [
      f'# Study {info.name}', '',
      f'{len(results)} runs: {len(analysis.rows)} configuration(s) x '
      f'{len(info.seeds)} seed(s) ({", ".join(map(str, info.seeds))}); '
      f'{finished} finished, {len(failed)} failed'
      f'{f", {len(early)} stopped early" if early else ""}'
      f'{f", {unfinished} running or stopped" if unfinished else ""}; '
      f'{_duration(wall)} of '
      'training in all.', '',
      f'Varied: {varied}.', '',
      'Ranked by mean final validation accuracy over the finished runs '
      f'(accuracy on {_validation_split(info)}; mean ± standard deviation '
      'over seeds, n runs; the 95% confidence interval of the mean, Student '
      't); then, against the best, the difference of means with its 95% CI, '
      f'the Holm-adjusted p-value and the verdict at alpha {info.alpha:g}; '
      'the seeds a paired t-test would need to detect a difference of '
      f'{info.min_effect:g} with 80% power at the observed spread. Runs not '
      'at their last step (running, stopped) are counted in their row and '
      'left out of every statistic. A run stopped early by a scheduler '
      '(ASHA, the median rule) ranks with the validation accuracy it '
      'reached, marked "stopped early" in its row (a configuration with '
      'such runs is placed by the mean over its finished and stopped-early '
      'runs), and is left out of the tests. Configurations with '
      'diverged or failed runs rank last. "Best at steps": the steps, over '
      'the seeds, of each run\'s best validation accuracy. "Final total '
      'loss": the last logged training loss, cross-entropy plus the L2 '
      'term of --weight_decay. Images/s and training time are as measured '
      'on the machine at the time, so compare them only between runs that '
      'shared a machine and its load.', '']
  lines += table(info, analysis)
  said = (statistics_notes(analysis) +
          notes(info, [r.summary for r in analysis.rows]))
  if said:
    lines += ['', '## Notes', ''] + [f'- {note}' for note in said]
  if failed:
    lines += ['', '## Failed runs', '']
    lines += [f'- `{r.name}`: {r.error}' for r in failed]
  if early:  # ranked above with what they reached
    lines += ['', '## Stopped early', '']
    lines += [f'- `{r.name}`: stopped early at step '
              f'{ranking.stopped_at(r)} by {r.stopped_by}' for r in early]
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
  lines += ['', 'Per run: `results.csv`; per configuration: `summary.csv`; '
            f'curves: `tensorboard --logdir {info.name}` (the HParams tab '
            'lists the runs and the configurations).', '']
  return '\n'.join(lines)


def _typed(values):
  """The values as floats when they all are numbers (for the HParams
  dashboard's sorting and filtering), else as strings."""
  try:
    return [float(v) for v in values]
  except ValueError:
    return list(values)


# HParams metrics of a configuration: (tag, display name, MeanCI field).
_CONFIG_METRICS = tuple(
    (f'study/{what}_{part}', f'{what.replace("_", " ")} {label}', (what, part))
    for what in ('final_accuracy', 'best_accuracy')
    for part, label in (('mean', 'mean'), ('ci_low', '95% CI low'),
                        ('ci_high', '95% CI high')))


def _config_scalars(summary):
  cis = {'final_accuracy': summary.final_ci, 'best_accuracy': summary.best_ci}
  fields = {'mean': 'mean', 'ci_low': 'low', 'ci_high': 'high'}
  found = {}
  for tag, _, (what, part) in _CONFIG_METRICS:
    value = getattr(cis[what], fields[part])
    if value is not None:
      found[tag] = value
  return found


def write_hparams(study_dir, info, results, analysis=None):
  """HParams summaries: the experiment at `study_dir`, a session per run and
  one per configuration (in `configurations/<name>/`), whose metrics are
  the mean final and best validation accuracy and their 95% CI bounds (a
  run's session shows its configuration's too).

  Rewritten in full each time (old ones removed), so a rebuilt report does
  not list a run twice.
  """
  import tensorflow as tf
  from tensorboard.plugins.hparams import api as hp
  analysis = analysis or analyze(info, results)
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
  metrics += [hp.Metric(tag, display_name=name)
              for tag, name, _ in _CONFIG_METRICS]
  started = [r for r in results if r.state != 'not started']
  run_dirs = [os.path.join(study_dir, 'runs', r.name) for r in started]
  config_dirs = glob.glob(os.path.join(study_dir, CONFIGURATIONS_DIR, '*'))
  for directory in [study_dir] + run_dirs + config_dirs:
    for old in glob.glob(os.path.join(directory, 'events.out.*.hparams')):
      os.remove(old)
  writer = tf.summary.create_file_writer(study_dir, filename_suffix='.hparams')
  with writer.as_default():
    hp.hparams_config(hparams=list(params.values()), metrics=metrics)
  writer.close()
  scalars = {row.summary.values: _config_scalars(row.summary)
             for row in analysis.rows}

  def session(directory, values, trial_id, seed=None):
    writer = tf.summary.create_file_writer(directory,
                                           filename_suffix='.hparams')
    hparams = {params[k]: shown(k, [v])[0] for k, v in values}
    if seed is not None:
      hparams[params['seed']] = seed
    with writer.as_default():
      hp.hparams(hparams, trial_id=trial_id)
      for tag, value in scalars.get(values, {}).items():
        tf.summary.scalar(tag, value, step=0)
    writer.close()

  for r, directory in zip(started, run_dirs):
    session(directory, r.values, r.name, r.seed)
  for row in analysis.rows:
    if row.summary.finished:
      name = grid.config_name(row.summary.values)
      session(os.path.join(study_dir, CONFIGURATIONS_DIR, name),
              row.summary.values, name)


def write_all(study_dir, info, results):
  """Writes results.csv, summary.csv, report.md, plots/ and HParams.

  Returns:
    The path of `report.md`.
  """
  analysis = analyze(info, results)
  _atomic_write(os.path.join(study_dir, 'results.csv'),
                csv_text(results, info.axes))
  _atomic_write(os.path.join(study_dir, 'summary.csv'),
                summary_csv_text(analysis, info.axes))
  plots_lib.write_plots(os.path.join(study_dir, 'plots'), analysis)
  write_hparams(study_dir, info, results, analysis)
  path = os.path.join(study_dir, 'report.md')
  _atomic_write(path, markdown(info, analysis, results))
  return path
