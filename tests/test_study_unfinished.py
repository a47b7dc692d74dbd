"""A report written while runs are unfinished never averages them; runs
stopped early by a scheduler rank with what they reached, untested."""

import csv
import io

import numpy as np
import pytest
from matplotlib import pyplot
from scipy import stats as scipy_stats

from slimkit.study import grid
from slimkit.study import plots
from slimkit.study import ranking
from slimkit.study import report
from slimkit.study import results


def _run(learning_rate, seed, accuracy, state='finished', last_step=200,
         stopped_by=None):
  steps = [s for s in (50, 100, 150, 200) if s <= last_step]
  curve = tuple((s, accuracy * s / last_step) for s in steps)
  values = (('learning_rate', learning_rate),)
  return results.RunResult(
      name=grid.run_name(values, seed), values=values, seed=seed,
      state=state, stopped_by=stopped_by, final_accuracy=accuracy,
      stopped_at=last_step if state == 'stopped early' else None,
      best_accuracy=accuracy, best_step=last_step, final_loss=1 - accuracy,
      global_step=last_step, accuracy=curve,
      loss=tuple((s, 1.0) for s in steps))


def test_a_run_stopped_halfway_is_counted_not_averaged():
  # The case: a finished run at 0.9111, one stopped by Ctrl-C at
  # step 50 with 0.11; and an ASHA-stopped run in the other configuration.
  runs = [_run('0.01', 0, 0.9111), _run('0.01', 1, 0.11, 'stopped', 50),
          _run('0.1', 0, 0.8), _run('0.1', 1, 0.5, 'stopped early', 100,
                                    stopped_by='ASHA')]
  axes = [grid.Axis('learning_rate', ('0.01', '0.1'))]
  info = report.StudyInfo(name='s', axes=axes, seeds=(0, 1),
                          fixed_flags={'dataset_name': 'digits'})
  analysis = report.analyze(info, runs)
  by_rate = {row.summary.values[0][1]: row.summary for row in analysis.rows}
  assert by_rate['0.01'].final == (0.9111,)
  assert by_rate['0.01'].unfinished == 'stopped 1/2 (step 50)'
  assert by_rate['0.1'].final == (0.8,)
  assert by_rate['0.1'].unfinished == 'stopped early 1/2 at step 100 by ASHA'
  text = report.markdown(info, analysis, runs)
  assert '2 finished, 0 failed, 1 stopped early, 1 running or stopped' in text
  row = next(line for line in text.splitlines()
             if line.startswith('| 1 | 0.01 |'))
  assert '0.9111' in row and 'n=1' in row and 'stopped 1/2 (step 50)' in row
  assert '0.5111' not in text  # the average of 0.9111 and 0.11
  assert 'the `test` split of digits' in text
  # The plot draws the same runs the table averages: the mean line of
  # 0.01 is the finished run's curve, to its last step.
  figure = plots.curve_figure(analysis.summaries, 'accuracy', 'global step',
                              'validation accuracy')
  try:
    means = [line for line in figure.axes[0].lines
             if not line.get_label().startswith('_')]
    first = next(m for m in means if m.get_label().startswith(
        'learning_rate=0.01'))
    np.testing.assert_allclose(first.get_xdata(), [50, 100, 150, 200])
    np.testing.assert_allclose(first.get_ydata()[-1], 0.9111)
  finally:
    pyplot.close(figure)


def _early_study():
  """Four learning rates x seeds 0-2; ASHA stopped one run of 0.1 and
  every run of 1e-5. Seed 1 of 0.01 was stopped early once and resumed to
  its end: finished, its status still naming ASHA."""
  return [
      _run('0.01', 0, 0.90), _run('0.01', 1, 0.92, stopped_by='ASHA'),
      _run('0.01', 2, 0.94),
      _run('0.003', 0, 0.89), _run('0.003', 1, 0.90), _run('0.003', 2, 0.93),
      _run('0.1', 0, 0.85), _run('0.1', 1, 0.87),
      _run('0.1', 2, 0.30, 'stopped early', 100, stopped_by='ASHA'),
      _run('1e-5', 0, 0.10, 'stopped early', 50, stopped_by='ASHA'),
      _run('1e-5', 1, 0.12, 'stopped early', 50, stopped_by='ASHA'),
      _run('1e-5', 2, 0.11, 'stopped early', 150, stopped_by='ASHA')]


def test_stopped_early_runs_rank_with_what_they_reached_but_are_not_tested():
  runs = _early_study()
  axes = [grid.Axis('learning_rate', ('0.01', '0.003', '0.1', '1e-5'))]
  info = report.StudyInfo(name='s', axes=axes, seeds=(0, 1, 2),
                          fixed_flags={'dataset_name': 'digits'})
  analysis = report.analyze(info, runs)
  rows = {row.summary.values[0][1]: row for row in analysis.rows}
  # Placed by the mean of what the finished and stopped-early runs reached:
  # 0.01: 0.92; 0.003: (0.89 + 0.90 + 0.93) / 3 = 0.9067; 0.1: (0.85 +
  # 0.87 + 0.30) / 3 = 0.6733 (below 0.003 although its two finished runs
  # average 0.86); 1e-5: 0.11.
  assert [r.summary.values[0][1] for r in analysis.rows] == [
      '0.01', '0.003', '0.1', '1e-5']
  assert [r.rank for r in analysis.rows] == [1, 2, 3, 4]
  assert rows['0.1'].summary.reached_ci.mean == pytest.approx(2.02 / 3)
  assert rows['1e-5'].summary.reached_ci.mean == pytest.approx(0.11)
  # The means, intervals and tests use the finished runs only.
  assert rows['0.01'].summary.final == (0.90, 0.92, 0.94)
  assert rows['0.1'].summary.final == (0.85, 0.87)
  assert rows['0.1'].summary.final_ci.mean == pytest.approx(0.86)
  assert rows['1e-5'].summary.final == ()
  assert len(analysis.stopped_early) == 4
  # Tested: 0.003 over seeds 0-2; 0.1 pairs on seeds 0 and 1 only, too few
  # for a test; 1e-5 has no finished run. Holm over the one test is the
  # test itself.
  assert analysis.tests == 1
  p = scipy_stats.ttest_rel([0.89, 0.90, 0.93], [0.90, 0.92, 0.94]).pvalue
  assert rows['0.003'].adjusted_p == pytest.approx(p)
  assert rows['0.003'].verdict == ranking.TIED
  assert rows['0.1'].comparison.n == 2
  assert rows['0.1'].comparison.difference == pytest.approx(
      np.mean([0.85 - 0.90, 0.87 - 0.92]))
  assert rows['0.1'].verdict == ranking.NOT_TESTED
  assert rows['1e-5'].comparison is None
  assert rows['1e-5'].verdict == 'stopped early: not tested'
  assert rows['0.01'].verdict == ranking.BEST

  text = report.markdown(info, analysis, runs)
  table = {line.split('|')[2].strip(): line for line in text.splitlines()
           if line.startswith('| ') and not line.startswith('| rank')}
  assert table['1e-5'].startswith('| 4 |')
  assert ('0.1100 ± 0.0100 (n=3) stopped early 3/3 at steps 50-150 by ASHA'
          in table['1e-5'])
  assert ('0.8600 ± 0.0141 (n=2); 0.3000 (n=1) stopped early 1/3 at step '
          '100 by ASHA; ranked by 0.6733, the mean of all 3'
          in table['0.1'])
  assert 'stopped early' not in table['0.01']  # resumed: finished
  assert '8 finished, 0 failed, 4 stopped early' in text
  assert ('4 run(s) stopped early by ASHA: each is ranked with the '
          'validation accuracy it reached' in text)
  assert 'Holm-adjusted for the 1 comparison(s)' in text
  assert ('- `learning_rate=0.1,seed=2`: stopped early at step 100 by ASHA'
          in text)
  summary = {row['configuration']: row for row in csv.DictReader(
      io.StringIO(report.summary_csv_text(analysis, axes)))}
  assert summary['learning_rate=0.1']['stopped_early'] == '1'
  assert summary['learning_rate=0.1']['finished'] == '2'
  assert float(summary['learning_rate=0.1']['reached_accuracy_mean']) == (
      pytest.approx(0.673333, abs=1e-5))
  assert summary['learning_rate=1e-5']['rank'] == '4'
  for figure in plots.figures(analysis).values():
    pyplot.close(figure)


def test_a_configuration_stopped_early_above_the_best_is_not_the_best():
  # ASHA stopped 0.1 at a rung where it led; 0.01 finished lower. The best
  # (the tests' reference) is the first configuration with finished runs.
  runs = [_run('0.1', 0, 0.95, 'stopped early', 50, stopped_by='ASHA'),
          _run('0.01', 0, 0.90)]
  axes = [grid.Axis('learning_rate', ('0.1', '0.01'))]
  info = report.StudyInfo(name='s', axes=axes, seeds=(0,),
                          fixed_flags={'dataset_name': 'digits'})
  analysis = report.analyze(info, runs)
  assert [(r.rank, r.summary.values[0][1], r.verdict)
          for r in analysis.rows] == [
              (1, '0.1', 'stopped early: not tested'), (2, '0.01', 'best')]
  assert analysis.best.summary.values == (('learning_rate', '0.01'),)
  assert analysis.tests == 0


def test_a_run_resumed_after_an_early_stop_is_no_longer_stopped_early(
    tmp_path):
  # Its status keeps what stopped it once; its state says it went on.
  from slimkit.study import runner
  run = grid.Run('learning_rate=0.1,seed=0', (('learning_rate', '0.1'),), 0)
  for state, expected in (('stopped early', ('ASHA', 100)),
                          ('running', (None, None)),
                          ('finished', (None, None))):
    runner.write_status(str(tmp_path), {'state': state, 'stopped_by': 'ASHA',
                                        'stopped_at': 100})
    result = results.read_run(str(tmp_path), run)
    assert (result.stopped_by, result.stopped_at) == expected, state
