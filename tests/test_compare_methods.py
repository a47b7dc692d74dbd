"""compare_methods.py on the bundled digits: grid, resume, report, errors."""

import csv
import dataclasses
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from slimkit import runs
from slimkit.study import grid
from slimkit.study import runner
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'compare_methods.py')


@pytest.fixture(scope='module')
def digits(digits_dir):
  return digits_dir


def _base(digits, study_dir, steps=4):
  return [sys.executable, SCRIPT, f'--study_dir={study_dir}',
          '--dataset_name=digits', f'--dataset_dir={digits}',
          '--model_name=lenet', '--batch_size=4', '--optimizer=momentum',
          '--learning_rate=0.01', '--learning_rate_decay_type=fixed',
          '--weight_decay=0', f'--max_number_of_steps={steps}',
          '--log_every_n_steps=2', '--eval_every_n_steps=2',
          '--validation_max_batches=3', '--num_readers=1',
          '--num_preprocessing_threads=1', '--save_summaries_secs=100000']


def _run(argv, expect=0, timeout=900):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(argv, capture_output=True, text=True, env=env,
                             cwd=ROOT, timeout=timeout, check=False)
  assert result.returncode == expect, (result.stdout[-2000:] +
                                       result.stderr[-3000:])
  return result


def _rows(study_dir):
  with open(os.path.join(study_dir, 'results.csv')) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow  # ~120 s: 8 runs; recipes, dir and vary tests stay
def test_a_two_by_two_grid_with_two_seeds(digits, tmp_path):
  study = tmp_path / 'study'
  argv = _base(digits, study, steps=2) + [
      '--vary=optimizer=momentum,adam', '--vary=activation=relu,elu',
      '--seeds=0,1', '--parallel=2']
  result = _run(argv)
  assert 'Report: ' in result.stdout and '[study 8/8 done]' in result.stdout
  runs = sorted(os.listdir(study / 'runs'))
  assert len(runs) == 8
  assert 'optimizer=adam,activation=elu,seed=1' in runs
  for run in runs:  # ordinary runs: flags.txt, checkpoints, validation
    flags = (study / 'runs' / run / 'flags.txt').read_text()
    seed = run.rsplit('seed=', 1)[1]
    assert f'--random_seed={seed}\n' in flags
    assert ('--model_options=activation=elu' in flags) == ('=elu' in run)
    assert os.path.exists(study / 'runs' / run / 'model.ckpt-2.index')
  rows = _rows(study)
  assert len(rows) == 8
  assert {r['state'] for r in rows} == {'finished'}
  for row in rows:
    assert 0.0 <= float(row['final_accuracy']) <= 1.0
    assert float(row['best_accuracy']) >= float(row['final_accuracy'])
    assert int(row['parameters']) == 3274634  # LeNet's, either activation
  # report.md: one row per configuration, mean and spread over two seeds,
  # sorted by the mean final accuracy.
  text = (study / 'report.md').read_text()
  table = [l for l in text.splitlines() if l.startswith('| ') and
           l[2].isdigit()]
  assert len(table) == 4
  means = [float(l.split('|')[4].split()[0]) for l in table]
  assert means == sorted(means, reverse=True)
  assert all('n=2)' in l.split('|')[4] for l in table)
  expected = {}
  for row in rows:
    expected.setdefault((row['optimizer'], row['activation']), []).append(
        float(row['final_accuracy']))
  for line in table:
    cells = [c.strip() for c in line.split('|')]
    assert abs(float(cells[4].split()[0]) -
               np.mean(expected[(cells[2], cells[3])])) < 1e-4
  assert '--opt_epsilon=1.0' in text  # the note on Adam's epsilon
  for name in ('validation_accuracy.png', 'training_loss.png',
               'accuracy_vs_time.png'):
    image = tf.io.decode_png(tf.io.read_file(str(study / 'plots' / name)))
    assert image.shape[0] > 100 and image.shape[1] > 100
  _check_hparams(study, runs)
  # The same command again trains nothing.
  logs = {r: (study / 'runs' / r / 'train.log').read_text() for r in runs}
  again = _run(argv)
  assert '8 of 8 runs are finished already' in again.stdout
  assert logs == {r: (study / 'runs' / r / 'train.log').read_text()
                  for r in runs}
  assert len(_rows(study)) == 8


def _check_hparams(study, runs):
  from tensorboard.plugins.hparams import metadata
  def plugin_data(directory):
    found = []
    for path in glob.glob(str(directory / 'events.out.*.hparams')):
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.metadata.plugin_data.plugin_name == 'hparams':
            found.append(value.metadata.plugin_data.content)
    return found
  experiment = metadata.parse_experiment_plugin_data(plugin_data(study)[0])
  assert {h.name for h in experiment.hparam_infos} == {
      'optimizer', 'activation', 'seed'}
  for run in runs:
    contents = plugin_data(study / 'runs' / run)
    starts = [metadata.parse_session_start_info_plugin_data(c)
              for c in contents if b'optimizer' in c]
    assert len(starts) == 1, run
    assert starts[0].hparams['optimizer'].string_value in run


@pytest.mark.slow  # ~60 s
def test_a_killed_study_resumes_to_the_uninterrupted_result(digits, tmp_path):
  # One run, a checkpoint at every step; the study is killed outright
  # mid-run (its run gets SIGTERM and saves), then started again.
  def argv(study):
    return _base(digits, study, steps=16) + ['--save_interval_secs=0',
                                            '--eval_every_n_steps=4',
                                            '--seeds=3']
  _run(argv(tmp_path / 'whole'))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen(argv(tmp_path / 'killed'), env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  run_dir = tmp_path / 'killed' / 'runs' / 'seed=3'
  deadline = time.time() + 300
  while runs.checkpoint_step(str(run_dir)) < 6:
    assert process.poll() is None and time.time() < deadline
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  # The run gets SIGTERM from the kernel (its parent died), saves and says so.
  deadline = time.time() + 120
  while 'Stopped by SIGTERM' not in (run_dir / 'train.log').read_text():
    assert time.time() < deadline, (run_dir / 'train.log').read_text()[-3000:]
    time.sleep(0.2)
  stopped = runs.checkpoint_step(str(run_dir))
  assert 6 <= stopped < 16
  resumed = _run(argv(tmp_path / 'killed'))
  assert 'Resuming from' in (run_dir / 'train.log').read_text()
  assert '[study 1/1 done]' in resumed.stdout
  whole, killed = _rows(tmp_path / 'whole'), _rows(tmp_path / 'killed')
  for key in ('final_accuracy', 'best_accuracy', 'best_step', 'final_loss',
              'global_step'):
    assert whole[0][key] == killed[0][key], key
  a = tf.train.load_checkpoint(str(tmp_path / 'whole' / 'runs' / 'seed=3' /
                                   'model.ckpt-16'))
  b = tf.train.load_checkpoint(str(run_dir / 'model.ckpt-16'))
  for key in a.get_variable_to_shape_map():
    if key.startswith('model_variables/'):
      np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key))


def test_recipes_as_flag_files_and_a_failed_run(digits, tmp_path):
  # Each value of --vary=flagfile is a whole recipe over the base flags; the
  # one that diverges is reported and does not stop the other.
  (tmp_path / 'sgd.flags').write_text('# plain SGD\n--optimizer=sgd\n')
  (tmp_path / 'blowup.flags').write_text('--learning_rate=1e30\n')
  study = tmp_path / 'study'
  result = _run(_base(digits, study) + [
      f'--vary=flagfile={tmp_path / "sgd.flags"},{tmp_path / "blowup.flags"}'])
  rows = {r['flagfile']: r for r in _rows(study)}
  assert rows['sgd']['state'] == 'finished'
  assert '--optimizer=sgd\n' in (study / 'runs' / 'flagfile=sgd,seed=0' /
                                  'flags.txt').read_text()
  assert rows['blowup']['state'] == 'failed'
  assert 'NaN or infinite' in rows['blowup']['error']
  assert '1 failed' in result.stdout
  text = (study / 'report.md').read_text()
  assert '## Failed runs' in text and 'flagfile=blowup,seed=0' in text
  assert '- `sgd`: `--optimizer=sgd`' in text  # the recipes section


@pytest.mark.parametrize('vary,message', [
    ('optimiser=sgd,adam', "'optimiser' is neither a flag"),
    ('optimizer=momentum,adamx', "'adamx' is not a valid --optimizer"),
    ('activation=relu,swishy', 'swishy'),
    ('train_dir=a,b', 'each run trains in study_dir/runs/<name>'),
])
def test_a_bad_vary_fails_at_once_naming_the_valid_ones(digits, tmp_path,
                                                        vary, message):
  result = _run(_base(digits, tmp_path / 'study') + [f'--vary={vary}'],
                expect=2, timeout=300)
  assert message in result.stderr
  if vary.startswith('optimiser'):
    assert 'Did you mean optimizer' in result.stderr
  if vary.startswith('activation'):
    assert 'gelu' in result.stderr  # the valid activations are listed
  assert not (tmp_path / 'study').exists()


# --- The library's parts that the runs above do not reach. ---


def test_grid_names_and_order():
  axes = [grid.Axis('optimizer', ('momentum', 'adam')),
          grid.Axis('activation', ('relu', 'elu'), is_model_option=True)]
  runs = grid.build_runs(axes, seeds=(0, 1))
  assert [r.name for r in runs[:3]] == [
      'optimizer=momentum,activation=relu,seed=0',
      'optimizer=momentum,activation=relu,seed=1',
      'optimizer=momentum,activation=elu,seed=0']
  assert runs[2].flag_values(axes) == {'optimizer': 'momentum'}
  assert runs[2].model_option_values(axes) == {'activation': 'elu'}
  assert grid.run_name((('checkpoint_path', '/a b'),), 0) == (
      'checkpoint_path=_a_b,seed=0')
  assert grid.merge_model_options('lrn=false,activation=relu',
                                  {'activation': 'elu'}) == (
                                      'lrn=false,activation=elu')
  with pytest.raises(grid.GridError, match='given twice'):
    grid.parse_vary('optimizer=adam,adam')
  with pytest.raises(grid.GridError, match='distinct'):
    grid.parse_seeds('0,0')


def test_the_report_notes_what_the_table_does_not_say():
  from slimkit.study import report
  from slimkit.study import results
  axes = [grid.Axis('optimizer', ('momentum', 'adam')),
          grid.Axis('opt_epsilon', ('1.0', '1e-8'))]
  info = report.StudyInfo(name='s', axes=axes, seeds=(0,), fixed_flags={})
  runs = [results.RunResult(name=r.name, values=tuple(
      r.flag_values(axes).items()), seed=r.seed, state='finished',
                            final_accuracy=0.5)
          for r in grid.build_runs(axes, seeds=(0,))]
  said = ' '.join(report.notes(info, report.summarize(runs)))
  # TF-Slim's momentum has no epsilon; Adam's epsilon 1.0 makes it crawl.
  assert '`--opt_epsilon` does not enter `momentum`' in said
  assert 'crawls' in said and 'One seed per configuration' in said
  info = dataclasses.replace(info, axes=axes[:1], seeds=(0, 1),
                             fixed_flags={'opt_epsilon': '1e-8'})
  runs = [dataclasses.replace(r, values=r.values[:1]) for r in runs]
  said = ' '.join(report.notes(info, report.summarize(runs)))
  assert 'does not enter' not in said and 'crawls' not in said
  # Without --opt_epsilon: adam keeps TF-Slim's 1.0 and crawls, adamw takes
  # its own epsilon (Keras's), as the runs do.
  for optimizer, crawls in (('adam', True), ('adamw', False)):
    info = report.StudyInfo(name='s', axes=axes[:1], seeds=(0, 1),
                            fixed_flags={'optimizer': optimizer})
    runs = [dataclasses.replace(r, values=()) for r in runs]
    said = ' '.join(report.notes(info, report.summarize(runs)))
    assert ('crawls' in said) == crawls, optimizer


def test_vary_values_flag_files_and_their_checks(tmp_path):
  from absl import flags
  values = flags.FlagValues()
  flags.DEFINE_string('optimizer', 'rmsprop', '', flag_values=values)
  flags.DEFINE_float('learning_rate', 0.01, '', flag_values=values)
  flags.DEFINE_string('randaugment', '', '', flag_values=values)
  training = {name: values[name] for name in values}
  # A value holding a comma: semicolons separate the values.
  assert grid.parse_vary('randaugment=0,0;2,9').values == ('0,0', '2,9')
  recipe = tmp_path / 'fast.flags'
  recipe.write_text('--optimizer=adam\n--learning_rate=0.001\n')
  axes = grid.check_axes([grid.parse_vary(f'flagfile={recipe}')],
                         flag_values=training, model_name='lenet')
  assert axes[0].values == (str(recipe),)
  assert grid.build_runs(axes, (0,))[0].name == 'flagfile=fast,seed=0'
  for text, message in (('--learning_rate=fast\n', "'fast' is not a valid"),
                        ('--train_dir=/x\n', 'not a training flag'),
                        ('optimizer=sgd\n', 'not a --flag=value line')):
    recipe.write_text(text)
    with pytest.raises(grid.GridError, match=message):
      grid.check_axes([grid.parse_vary(f'flagfile={recipe}')],
                      flag_values=training, model_name='lenet')
  with pytest.raises(grid.GridError, match='cannot read'):
    grid.check_axes([grid.parse_vary('flagfile=/no/such.flags')],
                    flag_values=training, model_name='lenet')


def test_each_run_gets_its_own_gpus():
  assert runner.gpu_slots(0, 1, None) == [None]
  assert runner.gpu_slots(0, 1, 3) == [None, None, None]
  assert runner.gpu_slots(4, 1, None) == ['0', '1', '2', '3']
  assert runner.gpu_slots(4, 2, None) == ['0,1', '2,3']
  assert runner.gpu_slots(4, 1, 2) == ['0', '1']
  assert runner.gpu_slots(2, 1, 8) == ['0', '1']  # no more than the GPUs
  with pytest.raises(ValueError, match='needs 4 GPUs'):
    runner.gpu_slots(2, 4, None)


def test_the_ready_studies_are_valid(tmp_path):
  # Every studies/*.flags: its flags exist with valid values, its --vary
  # axes check, its recipes are valid; checked by the study's own parser.
  code = '''
import glob, sys
from slimkit import flags as slim_flags
from slimkit.study import grid
slim_flags.define_train_flags()
slim_flags.define_study_flags()
training = slim_flags.training_flags(slim_flags.FLAGS)
for path in sorted(glob.glob('studies/*.flags')):
  axes, model = [], 'inception_v3'
  for name, value in grid.read_flagfile(path):
    if name == 'vary':
      axes.append(grid.parse_vary(value))
    elif name == 'seeds':
      grid.parse_seeds(value)
    else:
      assert name in training, (path, name)
      training[name].parser.parse(value)
      model = value if name == 'model_name' else model
  axes = grid.check_axes(axes, flag_values=training, model_name=model)
  runs = grid.build_runs(axes, (0,))
  print(path, len(runs))
'''
  result = _run([sys.executable, '-c', code], timeout=300)
  counts = dict(line.split() for line in result.stdout.splitlines())
  assert counts == {'studies/activations.flags': '10',
                    'studies/architectures.flags': '5',
                    'studies/kernels.flags': '3',
                    'studies/optimizers.flags': '4',
                    'studies/recipes.flags': '5'}
