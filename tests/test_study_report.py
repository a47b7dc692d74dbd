"""A study's ranking, report, summary.csv, plots and HParams, from RunResult
lists built here (no training): verdicts, duplicates, diverged runs."""

import csv
import glob
import io

import numpy as np
import pytest
from scipy import stats as scipy_stats

from slimkit.study import grid
from slimkit.study import plots
from slimkit.study import ranking
from slimkit.study import report
from slimkit.study import results
from slimkit.study import stats

STEPS = (10, 20, 30, 40)


def _run(values, seed, accuracy, state='finished', diverged_at=None):
  """A RunResult whose validation curve rises to `accuracy`."""
  name = grid.run_name(values, seed)
  if diverged_at is not None:
    return results.RunResult(
        name=name, values=values, seed=seed, state='failed',
        error=f'train_image_classifier.py: error: The loss or a gradient '
        f'became NaN or infinite at global step {diverged_at}; training '
        'stopped.', diverged_step=diverged_at,
        accuracy=((10, 0.3),), loss=((10, 2.0),))
  curve = tuple((s, accuracy * s / STEPS[-1]) for s in STEPS)
  return results.RunResult(
      name=name, values=values, seed=seed, state=state,
      final_accuracy=accuracy, best_accuracy=accuracy, best_step=40,
      final_loss=1 - accuracy, images_per_sec=100.0, wall_time=10.0,
      parameters=1000, global_step=40, accuracy=curve,
      loss=tuple((s, 1 / s) for s in STEPS),
      accuracy_time=tuple((s / 10, a) for s, a in curve))


def _study(means, seeds, spread, rng, axis='learning_rate'):
  """Runs of configurations `{value: mean}`, noise `spread` per seed, plus
  a per-seed effect shared by every configuration (pairing removes it)."""
  shared = rng.normal(0, spread, size=max(seeds) + 1)
  return [_run(((axis, value),), s,
               float(mean + shared[s] + rng.normal(0, spread / 4)))
          for value, mean in means.items() for s in seeds]


def _info(axes, seeds, **kwargs):
  return report.StudyInfo(name='s', axes=axes, seeds=seeds,
                          fixed_flags={'optimizer': 'momentum'}, **kwargs)


def _table(text):
  rows = [line.split('|')[1:-1] for line in text.splitlines()
          if line.startswith('| ') and not line.startswith('| rank')]
  return [[c.strip() for c in row] for row in rows]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_a_clearly_worse_configuration_is_worse_and_a_close_one_tied(seed):
  rng = np.random.default_rng(seed)
  runs = _study({'0.01': 0.95, '0.02': 0.9495, '1e-5': 0.6}, range(5), 0.01,
                rng)
  axes = [grid.Axis('learning_rate', ('0.01', '0.02', '1e-5'))]
  analysis = report.analyze(_info(axes, range(5)), runs)
  verdicts = {r.summary.values[0][1]: r.verdict for r in analysis.rows}
  assert verdicts['1e-5'] == ranking.WORSE
  assert {verdicts['0.01'], verdicts['0.02']} == {ranking.BEST, ranking.TIED}
  assert analysis.tests == 2
  # The p-values: scipy's paired t over the shared seeds, Holm-adjusted.
  best = analysis.best.summary.accuracies
  raw = []
  for row in analysis.rows[1:]:
    other = row.summary.accuracies
    expected = scipy_stats.ttest_rel([other[s] for s in range(5)],
                                     [best[s] for s in range(5)]).pvalue
    assert row.comparison.p_value == pytest.approx(expected)
    raw.append(expected)
  # Holm with two tests: the smaller doubled, the larger kept (or raised).
  low, high = sorted(raw)
  adjusted = sorted(r.adjusted_p for r in analysis.rows[1:])
  assert adjusted == pytest.approx([2 * low, max(2 * low, high)])


def test_same_training_is_marked_duplicate_never_ranked_apart():
  # Momentum ignores --opt_epsilon: rows differing only in it are one
  # training, even when their numbers differ by noise.
  axes = [grid.Axis('optimizer', ('momentum', 'adam')),
          grid.Axis('opt_epsilon', ('1.0', '1e-8'))]
  accuracy = {('momentum', '1.0'): 0.95, ('momentum', '1e-8'): 0.96,
              ('adam', '1.0'): 0.94, ('adam', '1e-8'): 0.90}
  runs = [_run(r.values, r.seed, accuracy[tuple(v for _, v in r.values)] +
               0.001 * r.seed) for r in grid.build_runs(axes, (0, 1, 2))]
  analysis = report.analyze(_info(axes, (0, 1, 2)), runs)
  rows = {tuple(v for _, v in r.summary.values): r for r in analysis.rows}
  first, second = rows[('momentum', '1.0')], rows[('momentum', '1e-8')]
  assert second.duplicate_of is first.summary
  assert second.rank == first.rank and second.comparison is None
  assert second.verdict == f'same training as rank {first.rank}'
  assert analysis.tests == 2  # the duplicate is not a comparison
  # Adam reads its epsilon: distinct trainings, each ranked.
  assert rows[('adam', '1.0')].duplicate_of is None
  assert rows[('adam', '1.0')].rank != rows[('adam', '1e-8')].rank
  text = report.markdown(_info(axes, (0, 1, 2)), analysis, runs)
  table = _table(text)
  assert [row[0] for row in table] == ['1', '=1', '2', '3']
  # The key: the flags a momentum run reads, values normalized.
  key = ranking.training_key
  assert key({'optimizer': 'momentum', 'opt_epsilon': '1'}) == key(
      {'optimizer': 'momentum', 'opt_epsilon': '2'})
  assert key({'optimizer': 'momentum', 'momentum': '0.9'}) != key(
      {'optimizer': 'momentum', 'momentum': '0.5'})
  assert key({'optimizer': 'adam', 'opt_epsilon': '1e-8'}) == key(
      {'optimizer': 'adam', 'opt_epsilon': '1e-08'})
  assert key({'optimizer': 'adam', 'opt_epsilon': '1'}) != key(
      {'optimizer': 'adam', 'opt_epsilon': '2'})


def test_recipes_that_are_the_same_training_are_duplicates(tmp_path):
  a = tmp_path / 'a.flags'
  b = tmp_path / 'b.flags'
  a.write_text('--optimizer=sgd\n--momentum=0.5\n')
  b.write_text('--optimizer=sgd\n--momentum=0.99\n')  # sgd has no momentum
  axes = [grid.Axis(grid.FLAGFILE, (str(a), str(b)))]
  runs = [_run(r.values, r.seed, 0.9) for r in grid.build_runs(axes, (0,))]
  analysis = report.analyze(_info(axes, (0,)), runs)
  assert analysis.rows[1].duplicate_of is analysis.rows[0].summary


def test_diverged_configurations_rank_last_with_their_step():
  axes = [grid.Axis('activation', ('relu', 'elu', 'tanh'))]
  runs = ([_run((('activation', 'relu'),), s, 0.80 + 0.01 * s)
           for s in range(3)] +
          # elu: all diverged at step 22; tanh: one of three diverged, its
          # finished runs better than relu's, still ranked below it.
          [_run((('activation', 'elu'),), s, 0, diverged_at=22)
           for s in range(3)] +
          [_run((('activation', 'tanh'),), s, 0.95) for s in (0, 1)] +
          [_run((('activation', 'tanh'),), 2, 0, diverged_at=31)])
  info = _info(axes, range(3))
  analysis = report.analyze(info, runs)
  order = [r.summary.values[0][1] for r in analysis.rows]
  assert order == ['relu', 'tanh', 'elu']
  assert analysis.rows[0].verdict == ranking.BEST
  assert analysis.rows[1].verdict == 'diverged 1/3 (step 31)'
  assert analysis.rows[2].verdict == 'diverged 3/3 (step 22)'
  assert analysis.tests == 0  # diverged configurations are not tested
  assert analysis.rows[1].summary.final_ci.n == 2  # finished runs only
  table = _table(report.markdown(info, analysis, runs))
  assert table[2][0] == '3' and table[2][2] == 'diverged 3/3 (step 22)'
  assert table[1][2].startswith('0.9500') and '(n=2)' in table[1][2]
  rows = list(csv.DictReader(io.StringIO(report.summary_csv_text(
      analysis, axes))))
  assert [r['activation'] for r in rows] == order
  assert rows[2]['diverged'] == '3' and rows[2]['diverged_steps'] == (
      '22 22 22')
  assert rows[2]['final_accuracy_mean'] == ''


def test_the_divergence_step_is_read_from_the_trainers_message():
  from slimkit.training import trainer
  line = f'train_image_classifier.py: error: {trainer.NonFiniteLossError(22)}'
  assert results.diverged_step(line) == 22
  assert results.diverged_step('Out of memory') is None
  assert results.diverged_step(None) is None


def test_two_seeds_claim_no_significance_and_say_how_many_would():
  axes = [grid.Axis('learning_rate', ('0.01', '0.03'))]
  runs = [_run((('learning_rate', '0.01'),), 0, 0.96),
          _run((('learning_rate', '0.01'),), 1, 0.98),
          _run((('learning_rate', '0.03'),), 0, 0.95),
          _run((('learning_rate', '0.03'),), 1, 0.96)]
  info = _info(axes, (0, 1))
  analysis = report.analyze(info, runs)
  row = analysis.rows[1]
  assert row.verdict == ranking.NOT_TESTED and row.adjusted_p is None
  sd = np.std([0.95 - 0.96, 0.96 - 0.98], ddof=1)
  assert row.comparison.sd == pytest.approx(sd)
  needed = max(stats.seeds_needed(0.01, sd), stats.MIN_SEEDS_FOR_TEST)
  assert needed > 3
  assert row.seeds_needed == needed
  text = report.markdown(info, analysis, runs)
  assert ('n=2: no significance can be claimed; run `--seeds=0,1,2,3,4` for '
          'a test') in text
  assert f'takes about {needed} seeds' in text
  assert 'worse' not in text and 'tied with best' not in _table(text)[1]
  # A larger --min_effect needs fewer seeds.
  fewer = report.analyze(_info(axes, (0, 1), min_effect=0.05), runs)
  assert fewer.rows[1].seeds_needed < needed


def test_unpaired_seeds_use_welch():
  axes = [grid.Axis('learning_rate', ('0.01', '0.03'))]
  a = [0.96, 0.97, 0.95, 0.96]
  b = [0.90, 0.92, 0.91]
  runs = ([_run((('learning_rate', '0.01'),), s, v) for s, v in enumerate(a)]
          + [_run((('learning_rate', '0.03'),), s + 10, v)
             for s, v in enumerate(b)])
  row = report.analyze(_info(axes, ()), runs).rows[1]
  assert row.comparison.test == stats.WELCH
  assert row.comparison.p_value == pytest.approx(
      scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)
  assert row.verdict == ranking.WORSE


def test_summary_csv_has_one_row_per_configuration_with_scipys_interval():
  rng = np.random.default_rng(3)
  runs = _study({'0.01': 0.95, '0.1': 0.9, '1e-5': 0.5}, range(4), 0.01, rng)
  axes = [grid.Axis('learning_rate', ('0.01', '0.1', '1e-5'))]
  analysis = report.analyze(_info(axes, range(4)), runs)
  rows = list(csv.DictReader(io.StringIO(report.summary_csv_text(
      analysis, axes))))
  assert len(rows) == 3
  for row in rows:
    values = [r.final_accuracy for r in runs
              if r.values == (('learning_rate', row['learning_rate']),)]
    low, high = scipy_stats.t.interval(0.95, len(values) - 1,
                                       loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert float(row['final_accuracy_ci_low']) == pytest.approx(low, 1e-5)
    assert float(row['final_accuracy_ci_high']) == pytest.approx(high, 1e-5)
    assert int(row['finished']) == 4
  assert rows[0]['verdict'] == 'best' and rows[0]['p_holm'] == ''
  assert float(rows[2]['p_holm']) < 0.05 and rows[2]['test'] == 'paired t'


def test_the_forest_plot_shows_each_mean_and_interval_and_the_best_band():
  rng = np.random.default_rng(4)
  runs = _study({'0.01': 0.95, '0.1': 0.93, '1e-5': 0.6}, range(4), 0.01, rng)
  axes = [grid.Axis('learning_rate', ('0.01', '0.1', '1e-5'))]
  analysis = report.analyze(_info(axes, range(4)), runs)
  figure = plots.forest_figure(analysis)
  try:
    axes_ = figure.axes[0]
    # One error bar per configuration, in rank order from the top.
    bars = [c for c in axes_.containers]
    assert len(bars) == 3
    for y, (bar, row) in enumerate(zip(bars, analysis.rows)):
      (x,), (y_,) = bar.lines[0].get_data()
      assert (x, y_) == pytest.approx((row.summary.final_ci.mean, y))
      segment = bar.lines[2][0].get_segments()[0]
      assert [p[0] for p in segment] == pytest.approx(
          [row.summary.final_ci.low, row.summary.final_ci.high])
    labels = [t.get_text() for t in axes_.get_yticklabels()]
    assert labels[0].startswith('learning_rate=0.01') and 'best' in labels[0]
    assert 'worse' in labels[2]
    assert axes_.get_ylim()[0] > axes_.get_ylim()[1]  # rank 1 on top
    # The best's interval, shaded across.
    span = [p for p in axes_.patches if p.get_label() == '95% CI of the best']
    ci = analysis.best.summary.final_ci
    left = span[0].get_x()  # a Rectangle in data x, axes-spanning in y
    assert (left, left + span[0].get_width()) == pytest.approx(
        (ci.low, ci.high))
    assert 'final validation accuracy' in axes_.get_xlabel()
  finally:
    from matplotlib import pyplot
    pyplot.close(figure)


def test_learning_curves_show_the_mean_the_ci_band_and_each_seed():
  rng = np.random.default_rng(5)
  runs = _study({'0.01': 0.95, '0.1': 0.9}, range(3), 0.01, rng)
  runs.append(_run((('learning_rate', '0.1'),), 3, 0, diverged_at=15))
  axes = [grid.Axis('learning_rate', ('0.01', '0.1'))]
  analysis = report.analyze(_info(axes, range(4)), runs)
  figure = plots.curve_figure(analysis.summaries, 'accuracy', 'global step',
                              'validation accuracy')
  try:
    axes_ = figure.axes[0]
    legend = [t.get_text() for t in axes_.get_legend().get_texts()]
    assert legend == ['learning_rate=0.01 (n=3)', 'learning_rate=0.1 (n=3)']
    means = [l for l in axes_.lines if not l.get_label().startswith('_')]
    faint = [l for l in axes_.lines if l.get_label().startswith('_')]
    assert len(faint) == 7  # each run, the diverged one dotted
    assert sum(l.get_linestyle() == ':' for l in faint) == 1
    assert all(l.get_alpha() < 0.5 for l in faint)
    bands = axes_.collections  # one per configuration, in order
    assert len(bands) == 2
    for line, band, row in zip(means, bands, analysis.rows):
      table = np.array([[a for _, a in r.accuracy]
                        for r in row.summary.finished])
      np.testing.assert_allclose(line.get_ydata(), table.mean(axis=0))
      # The band: the t interval of the mean at each step (its polygon
      # holds both bounds at the last step).
      ys = band.get_paths()[0].vertices[:, 1]
      low, high = scipy_stats.t.interval(
          0.95, 2, loc=table[:, -1].mean(),
          scale=scipy_stats.sem(table[:, -1]))
      assert np.any(np.isclose(ys, low)) and np.any(np.isclose(ys, high))
      assert ys.min() <= low + 1e-9 and ys.max() >= high - 1e-9
    assert axes_.get_xlabel() == 'global step'
    assert axes_.get_ylabel() == 'validation accuracy'
  finally:
    from matplotlib import pyplot
    pyplot.close(figure)


def test_write_all_writes_every_file_and_hparams_with_ci_metrics(tmp_path):
  import tensorflow as tf
  rng = np.random.default_rng(6)
  runs = _study({'0.01': 0.95, '1e-5': 0.6}, range(3), 0.01, rng)
  axes = [grid.Axis('learning_rate', ('0.01', '1e-5'))]
  info = _info(axes, range(3))
  path = report.write_all(str(tmp_path), info, runs)
  text = open(path).read()
  for name in plots.PLOTS:
    assert f'(plots/{name})' in text
    image = tf.io.decode_png(tf.io.read_file(str(tmp_path / 'plots' / name)))
    assert image.shape[0] >= 250 and image.shape[1] >= 600
  assert (tmp_path / 'summary.csv').exists()
  assert len(list(csv.DictReader(open(tmp_path / 'results.csv')))) == 6
  config = tmp_path / report.CONFIGURATIONS_DIR / 'learning_rate=0.01'
  found = {}
  for event_file in glob.glob(str(config / 'events.out.*.hparams')):
    for record in tf.data.TFRecordDataset(event_file):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag.startswith('study/'):
          found[value.tag] = float(tf.make_ndarray(value.tensor))
  ci = stats.mean_ci([r.final_accuracy for r in runs[:3]])
  assert found['study/final_accuracy_mean'] == pytest.approx(ci.mean)
  assert found['study/final_accuracy_ci_low'] == pytest.approx(ci.low)
  assert found['study/final_accuracy_ci_high'] == pytest.approx(ci.high)
  # Rewriting does not add a second session.
  report.write_all(str(tmp_path), info, runs)
  assert len(glob.glob(str(config / 'events.out.*.hparams'))) == 1


def test_bad_alpha_or_effect_is_refused():
  with pytest.raises(ValueError, match='alpha must be in'):
    ranking.analyze([], alpha=1.5)
  with pytest.raises(ValueError, match='min_effect must be a positive'):
    ranking.analyze([], min_effect=0)
