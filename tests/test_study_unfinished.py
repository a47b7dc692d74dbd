"""A report written while runs are unfinished never averages them."""

import numpy as np
from matplotlib import pyplot

from slimkit.study import grid
from slimkit.study import plots
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
  assert by_rate['0.1'].unfinished == 'stopped early 1/2 (step 100 by ASHA)'
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
