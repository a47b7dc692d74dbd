"""compare_methods.py --backend=ray on a simulated two-node Ray cluster.

One `ray.cluster_utils.Cluster` per test process (a head and a second node
of 1 CPU each, a small object store, no dashboard): starting one costs
seconds. The studies' drivers are `compare_methods.py` processes that join
it with `--ray_address`. Under pytest-xdist every process that runs one of
these tests starts its own cluster (`--dist worksteal` ignores
`xdist_group`; `--dist loadgroup` keeps them in one process); its nodes'
CPUs are logical, so two clusters do not contend beyond their runs.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from slimkit import runs
from slimkit.datasets import digits as digits_lib
from slimkit.study import grid
from slimkit.study import ray_backend
from slimkit.study import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'compare_methods.py')
pytestmark = pytest.mark.xdist_group('ray')
_COMPARED = ('state', 'global_step', 'final_accuracy', 'best_accuracy',
             'best_step')


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('digits'))
  digits_lib.run(directory)
  return directory


@pytest.fixture(scope='module')
def cluster():
  from ray import cluster_utils
  node = dict(num_cpus=1, object_store_memory=80 * 1024 * 1024)
  simulated = cluster_utils.Cluster(
      initialize_head=True, head_node_args=dict(node, include_dashboard=False))
  simulated.add_node(**node)
  simulated.wait_for_nodes()
  yield simulated
  simulated.shutdown()


def _argv(digits, study_dir, *flags, steps=30):
  return [sys.executable, SCRIPT, f'--study_dir={study_dir}',
          '--dataset_name=digits', f'--dataset_dir={digits}',
          '--model_name=lenet', '--batch_size=16', '--optimizer=momentum',
          '--learning_rate_decay_type=fixed', '--weight_decay=0',
          f'--max_number_of_steps={steps}', '--log_every_n_steps=10',
          '--eval_every_n_steps=10', '--validation_max_batches=3',
          '--num_readers=1', '--num_preprocessing_threads=1',
          '--save_summaries_secs=100000', *flags]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')


def _run(argv, expect=0, timeout=900):
  result = subprocess.run(argv, capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=timeout, check=False)
  assert result.returncode == expect, (result.stdout[-3000:] +
                                       result.stderr[-3000:])
  return result


def _start(argv):
  return subprocess.Popen(argv, env=_env(), cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _rows(study_dir):
  with open(os.path.join(study_dir, 'results.csv')) as f:
    return {row['run']: row for row in csv.DictReader(f)}


def _status(study_dir, run):
  return runner.read_status(os.path.join(study_dir, 'runs', run))


def _training_processes(study_dir):
  """Pids of train_image_classifier.py processes of this study."""
  found = []
  for pid in os.listdir('/proc'):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        argv = f.read().split(b'\0')
    except OSError:
      continue
    if (any(a.endswith(b'train_image_classifier.py') for a in argv) and
        any(str(study_dir).encode() in a for a in argv)):
      found.append(int(pid))
  return found


def _wait(condition, process=None, timeout=600):
  """Waits for `condition()` (a bound against a hang, not a timing test)."""
  deadline = time.time() + timeout
  while not condition():
    assert process is None or process.poll() is None, process.stdout.read()
    assert time.time() < deadline, 'condition never met'
    time.sleep(0.5)


def test_without_ray_the_backend_fails_at_once_with_the_install_command(
    digits, tmp_path):
  # `import ray` fails as when it is not installed.
  argv = _argv(digits, tmp_path / 'study', '--backend=ray')[1:]
  code = ('import runpy, sys; sys.modules["ray"] = None; '
          f'sys.argv = {argv!r}; '
          f'runpy.run_path({SCRIPT!r}, run_name="__main__")')
  result = _run([sys.executable, '-c', code], expect=2)
  assert 'pip install -e ".[ray]"' in result.stderr
  assert not (tmp_path / 'study').exists()


@pytest.mark.parametrize('flag', ['--early_stopping=asha',
                                  '--max_failures=3'])
def test_the_local_backend_refuses_ray_flags(digits, tmp_path, flag):
  result = _run(_argv(digits, tmp_path / 'study', flag), expect=2)
  assert f'error: {flag} needs --backend=ray' in result.stderr
  assert not (tmp_path / 'study').exists()


def _same_study_on_both_backends(digits, cluster, tmp_path, grid):
  """Runs `grid` on the local backend and on the cluster; checks that
  results.csv agrees; returns the wall times."""
  start = time.time()
  _run(_argv(digits, tmp_path / 'local', *grid, '--parallel=2'))
  local_secs = time.time() - start
  start = time.time()
  result = _run(_argv(digits, tmp_path / 'ray', *grid, '--backend=ray',
                      f'--ray_address={cluster.address}'))
  ray_secs = time.time() - start
  assert '2 node(s), 2 CPU(s)' in result.stdout
  local, on_ray = _rows(tmp_path / 'local'), _rows(tmp_path / 'ray')
  assert sorted(local) == sorted(on_ray)
  for name, row in local.items():
    assert row['state'] == 'finished' and row['global_step'] == '30'
    assert {k: row[k] for k in _COMPARED} == {
        k: on_ray[name][k] for k in _COMPARED}, name
    # The same run folders (the event files' names hold a time and a pid).
    files = [sorted(f if not f.startswith('events.out.') else 'events'
                    for f in os.listdir(study / 'runs' / name))
             for study in (tmp_path / 'local', tmp_path / 'ray')]
    assert files[0] == files[1]
  # Every node saw the study folder (one marker each), and the runs were
  # spread over both.
  markers = os.listdir(tmp_path / 'ray' / '.ray_storage_check')
  assert len(markers) == 3  # the driver's and two nodes'
  assert len({_status(tmp_path / 'ray', n)['ray_node'] for n in local}) == 2
  text = (tmp_path / 'ray' / 'report.md').read_text()
  assert f'{len(local)} finished, 0 failed' in text
  for plot in ('validation_accuracy.png', 'training_loss.png'):
    assert os.path.getsize(tmp_path / 'ray' / 'plots' / plot) > 1000
  return local_secs, ray_secs


@pytest.mark.slow  # ~90 s; the install and local checks stay
def test_two_runs_on_ray_match_the_local_backend(digits, cluster, tmp_path):
  _same_study_on_both_backends(digits, cluster, tmp_path,
                               ['--learning_rate=0.01', '--seeds=0,1'])


@pytest.mark.slow
def test_four_runs_on_ray_match_the_local_backend(digits, cluster, tmp_path):
  local_secs, ray_secs = _same_study_on_both_backends(
      digits, cluster, tmp_path,
      ['--vary=learning_rate=0.01,0.03', '--seeds=0,1'])
  print(f'4-run study: local backend {local_secs:.0f} s, 2-node Ray '
        f'{ray_secs:.0f} s')


@pytest.mark.slow  # ~3.5 min: 120 steps so the stop lands before the end
def test_asha_stops_the_hopeless_learning_rate(digits, cluster, tmp_path):
  # One run at a time: the good one sets the rung at step 20 first, then
  # the hopeless one (an unchanged net: chance accuracy) falls below it.
  study = tmp_path / 'study'
  result = _run(_argv(digits, study, '--vary=learning_rate=0.01,1e-6',
                      '--eval_every_n_steps=20', '--backend=ray',
                      f'--ray_address={cluster.address}', '--parallel=1',
                      '--early_stopping=asha', '--grace_period_steps=20',
                      '--reduction_factor=2', steps=120))
  rows = _rows(study)
  good = rows['learning_rate=0.01,seed=0']
  bad = rows['learning_rate=1e-6,seed=0']
  assert good['state'] == 'finished' and good['global_step'] == '120'
  assert bad['state'] == 'stopped early'
  assert 20 <= int(bad['global_step']) < 120
  status = _status(study, 'learning_rate=1e-6,seed=0')
  assert status['stopped_by'] == 'ASHA' and status['stopped_at'] == 20
  # It keeps its checkpoints and curve, and the report says so.
  run_dir = study / 'runs' / 'learning_rate=1e-6,seed=0'
  assert runs.checkpoint_step(str(run_dir)) == int(bad['global_step'])
  assert float(bad['final_accuracy']) < float(good['final_accuracy'])
  text = (study / 'report.md').read_text()
  assert ('`learning_rate=1e-6,seed=0`: stopped early at step 20 by ASHA'
          in text)
  assert 'stopped early at step 20 by ASHA' in result.stdout
  # Started again with early stopping, the study is done.
  again = _run(_argv(digits, study, '--vary=learning_rate=0.01,1e-6',
                     '--eval_every_n_steps=20', '--backend=ray',
                     f'--ray_address={cluster.address}',
                     '--early_stopping=asha', '--grace_period_steps=20',
                     steps=120))
  assert '2 of 2 runs are done already' in again.stdout


@pytest.mark.slow  # ~3.5 min (loaded 2 cores): 2 runs of 120 steps in turn
def test_the_median_rule_stops_the_hopeless_learning_rate(
    digits, cluster, tmp_path):
  # The good run goes first and to its end; the hopeless one (chance
  # accuracy) is below its accuracy at step 20 and stops there. 120 steps,
  # as for ASHA, so that the stop lands before the run's own end: with 40 a
  # loaded machine let the run finish first (then it is finished, rightly).
  study = tmp_path / 'study'
  result = _run(_argv(digits, study, '--vary=learning_rate=0.01,1e-6',
                      '--eval_every_n_steps=20', '--backend=ray',
                      f'--ray_address={cluster.address}', '--parallel=1',
                      '--early_stopping=median', '--grace_period_steps=20',
                      steps=120))
  rows = _rows(study)
  good = rows['learning_rate=0.01,seed=0']
  bad = rows['learning_rate=1e-6,seed=0']
  assert good['state'] == 'finished' and good['global_step'] == '120'
  assert bad['state'] == 'stopped early', result.stdout[-3000:]
  assert 20 <= int(bad['global_step']) < 120
  status = _status(study, 'learning_rate=1e-6,seed=0')
  assert status['stopped_by'] == 'the median stopping rule'
  assert status['stopped_at'] == 20
  assert 'stopped early at step 20 by the median stopping rule' in (
      result.stdout)
  text = (study / 'report.md').read_text()
  assert ('1 run(s) stopped early by the median stopping rule' in text)
  assert '| 2 | 1e-6 |' in text  # ranked with what it reached


class _Exiting:
  """A training process told to stop while it exits by itself."""

  def __init__(self):
    self.stopped = False

  def poll(self):
    return 0 if self.stopped else None

  def wait(self, timeout=None):
    return 0

  def stop(self):
    self.stopped = True


class _Study:
  """What a `RunFollower` reads of a study."""
  max_number_of_steps = 40

  def __init__(self, directory):
    self.directory = directory

  def run_dir(self, run):
    return os.path.join(self.directory, run.name)

  def argv(self, run):
    return ['train_image_classifier.py', f'--train_dir={self.run_dir(run)}']


@pytest.mark.parametrize('step, state', [(40, 'finished'), (30, 'stopped')])
def test_a_run_stopped_after_its_last_step_is_finished(tmp_path, step,
                                                        state):
  # A scheduler's stop, decided on an earlier point, reaches a run that has
  # trained and validated to its last step and is exiting: it finished.
  study, child = _Study(str(tmp_path)), _Exiting()
  run = grid.Run('learning_rate=0.1,seed=0', (('learning_rate', '0.1'),), 0)
  follower = ray_backend.RunFollower(study, run, lambda argv, run_dir: child)
  with open(os.path.join(study.run_dir(run), 'checkpoint'), 'w') as f:
    f.write(f'model_checkpoint_path: "model.ckpt-{step}"\n')
  follower.close()
  assert child.stopped
  status = runner.read_status(study.run_dir(run))
  assert status['state'] == state and status['global_step'] == step


class _Trial:
  """What Tune's schedulers read of a trial."""

  def __init__(self, name):
    self.config, self.trial_id, self.status = {'run': name}, name, 'RUNNING'


class _Controller:
  """What the median rule asks Tune's controller: the live trials."""

  def __init__(self, live):
    self.live = live

  def get_live_trials(self):
    return self.live


def _median_rule(runs, stopped):
  from ray import tune
  options = ray_backend.RayOptions(early_stopping='median',
                                   grace_period_steps=20)
  return ray_backend._scheduler(tune, options, 60, stopped, runs)


def _report(scheduler, controller, trial, step, accuracy):
  return scheduler.on_trial_result(controller, trial, {
      ray_backend.TIME_ATTR: step, ray_backend.METRIC: accuracy})


def _end(scheduler, controller, trial, step, accuracy):
  """A run's end as the trial reports it: its last point again."""
  result = {ray_backend.TIME_ATTR: step, ray_backend.METRIC: accuracy,
            ray_backend.ENDED: True, 'done': True}
  assert scheduler.on_trial_result(controller, trial, result) == 'CONTINUE'
  scheduler.on_trial_complete(controller, trial, result)


def test_the_median_rule_stops_a_run_below_the_median_of_the_others():
  # Ray's MedianStoppingRule on the steps: a run past the grace period (20)
  # stops when its best accuracy so far is below the median of the other
  # runs' mean accuracy from step 20 to its step, over at least 3 runs.
  stopped = {}
  rule = _median_rule(5, stopped)
  a, b, c, d, e = (_Trial(n) for n in 'abcde')
  waiting = _Controller([_Trial('pending')])
  waiting.live[0].status = 'PENDING'
  # Too few others to judge with runs waiting: Ray would pause the run (its
  # training process stopped and started again); it trains on.
  assert _report(rule, waiting, a, 20, 0.5) == 'CONTINUE'
  for trial, curve in ((a, [(40, 0.8), (60, 0.9)]),
                       (b, [(20, 0.4), (40, 0.7), (60, 0.85)]),
                       (c, [(20, 0.6), (40, 0.75), (60, 0.8)])):
    for step, accuracy in curve:
      assert _report(rule, waiting, trial, step, accuracy) == 'CONTINUE'
    _end(rule, waiting, trial, *curve[-1])
  # Before the grace period nothing stops.
  assert _report(rule, waiting, d, 10, 0.05) == 'CONTINUE'
  # At 20: median of a, b, c at 20 (0.5, 0.4, 0.6) is 0.5 > 0.1.
  assert _report(rule, waiting, d, 20, 0.1) == 'STOP'
  # e at 20: median of 0.5, 0.4, 0.6, 0.1 (d) is 0.45 <= 0.55: on. At 40:
  # the means over steps 20-40 of a, b, c are 0.65, 0.55, 0.675, median
  # 0.65 > 0.6, e's best.
  assert _report(rule, waiting, e, 20, 0.55) == 'CONTINUE'
  assert _report(rule, waiting, e, 40, 0.6) == 'STOP'
  assert stopped == {'d': 20, 'e': 40}


def test_the_median_rule_of_a_two_run_study_compares_with_the_other():
  # Ray's default needs 3 other runs: a study of 2 would never stop one.
  assert [ray_backend.median_min_runs(n) for n in (1, 2, 3, 4, 12)] == [
      1, 1, 2, 3, 3]
  stopped = {}
  rule = _median_rule(2, stopped)
  good, hopeless = _Trial('good'), _Trial('hopeless')
  idle = _Controller([])
  for step, accuracy in ((20, 0.5), (40, 0.8), (60, 0.9)):
    assert _report(rule, idle, good, step, accuracy) == 'CONTINUE'
  _end(rule, idle, good, 60, 0.9)
  assert _report(rule, idle, hopeless, 20, 0.1) == 'STOP'
  assert stopped == {'hopeless': 20}


@pytest.mark.slow  # ~50 s: a Ray cluster and a study
def test_ctrl_c_leaves_no_training_process(digits, cluster, tmp_path):
  study = tmp_path / 'study'
  driver = _start(_argv(digits, study, '--vary=learning_rate=0.01,0.03',
                        '--backend=ray', f'--ray_address={cluster.address}',
                        '--save_interval_secs=1', steps=100000))
  _wait(lambda: len(_training_processes(study)) == 2 and all(
      runs.checkpoint_step(str(study / 'runs' / n)) > 0
      for n in os.listdir(study / 'runs')), driver)
  driver.send_signal(signal.SIGINT)
  output = driver.communicate(timeout=600)[0]
  _wait(lambda: not _training_processes(study))
  for name in os.listdir(study / 'runs'):
    assert _status(study, name)['state'] == 'stopped', output[-3000:]


@pytest.mark.slow
def test_a_lost_node_costs_only_the_steps_since_the_checkpoint(
    digits, cluster, tmp_path):
  study = tmp_path / 'study'
  driver = _start(_argv(digits, study, '--vary=learning_rate=0.01,0.03',
                        '--backend=ray', f'--ray_address={cluster.address}',
                        '--save_interval_secs=1', '--eval_every_n_steps=100',
                        steps=600))
  head = cluster.head_node.node_id
  second = [n for n in cluster.list_all_nodes() if n.node_id != head][0]

  def on_second():
    for name in os.listdir(study / 'runs') if (study / 'runs').exists() else ():
      status = _status(study, name)
      if (status.get('ray_node') == second.node_id and
          runs.checkpoint_step(str(study / 'runs' / name)) >= 60):
        return name
    return None

  _wait(on_second, driver)
  lost = on_second()
  cluster.remove_node(second, allow_graceful=False)
  try:
    output = driver.communicate(timeout=1200)[0]
  finally:
    cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
  assert driver.returncode == 0, output[-3000:]
  rows = _rows(study)
  assert {r['state'] for r in rows.values()} == {'finished'}, output[-3000:]
  log = (study / 'runs' / lost / 'train.log').read_text()
  assert 'Resuming from' in log
  first, second = _status(study, lost)['segments']
  assert first[0] < first[1] <= second[0] < second[1]  # no time counted twice
  assert 'starting it again, from its last checkpoint' in output


@pytest.mark.slow
def test_a_restarted_driver_trains_no_finished_run_again(
    digits, cluster, tmp_path):
  study = tmp_path / 'study'
  argv = _argv(digits, study, '--vary=learning_rate=0.01,0.03',
               '--seeds=0,1', '--backend=ray', '--parallel=1',
               f'--ray_address={cluster.address}', steps=200)
  driver = _start(argv)
  first = 'learning_rate=0.01,seed=0'
  _wait(lambda: _status(study, first).get('state') == 'finished', driver)
  driver.kill()
  driver.wait()
  _wait(lambda: not _training_processes(study))
  log = (study / 'runs' / first / 'train.log').read_text()
  result = _run(argv)
  assert (study / 'runs' / first / 'train.log').read_text() == log
  assert 'of 4 runs are done already' in result.stdout
  assert {r['state'] for r in _rows(study).values()} == {'finished'}
  with open(study / 'runs' / first / runner.STATUS_FILE) as f:
    assert len(json.load(f)['segments']) == 1


@pytest.mark.slow
def test_a_run_of_two_workers_placed_by_ray_train(digits, cluster, tmp_path):
  # One worker per node (1 CPU each), TF_CONFIG from Ray Train; the same
  # run of the local backend trained with --worker_hosts gives the numbers.
  study = tmp_path / 'study'
  result = _run(_argv(digits, study, '--backend=ray', '--workers_per_run=2',
                      f'--ray_address={cluster.address}', steps=20))
  rows = _rows(study)
  assert [r['state'] for r in rows.values()] == ['finished'], result.stdout
  run_dir = study / 'runs' / 'seed=0'
  assert (run_dir / 'train.worker1.log').exists()
  assert runs.checkpoint_step(str(run_dir)) == 20
  assert 'x 2 workers' in result.stdout
