"""The study's statistics on real training: LeNet on the bundled digits.

A learning rate of 1e-5 against 0.01 over 4 seeds is `worse` (p < 0.05),
runs trained in this process and read back from their folders; momentum at
0.01 with ELU diverges near step 22 (the fast default), and the whole path
(compare_methods.py's runs as processes, the runner recording the
divergence, the report ranking it last) is a slow test, as is the
4-seed learning-rate study; the statistics on built results are in
test_study_report.py. Seeds come from SLIMKIT_TEST_SEED: the
assertions hold for other seeds too.
"""

import csv
import os
import sys

import pytest

from slimkit import seeds
from slimkit.datasets import dataset_factory
from slimkit.datasets import digits as digits_lib
from slimkit.datasets import input_pipeline
from slimkit.deployment import model_deploy
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from slimkit.study import grid
from slimkit.study import ranking
from slimkit.study import report
from slimkit.study import results
from slimkit.training import optimization
from slimkit.training import trainer
from tests import script_runner
from tests import seeding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 32


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('digits'))
  digits_lib.run(directory)
  return directory


def _train(dataset_dir, train_dir, *, seed, learning_rate, steps,
           activation='relu', validate=True):
  """Trains LeNet with momentum as `train_image_classifier.py` would with
  `--random_seed=seed`, validating on the test split at the last step."""
  seeds.seed_everything(seed, op_determinism=False)  # not for the process
  train = dataset_factory.get_split('digits', 'train', dataset_dir)
  test = dataset_factory.get_split('digits', 'test', dataset_dir)
  preprocess = lambda training: preprocessing_factory.get_preprocessing(
      'lenet', is_training=training)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', 10, weight_decay=0.0, is_training=True,
          activation=activation),
      dataset_fn=lambda ctx, seed=None, records_consumed=0: (
          input_pipeline.make_dataset(
              train, preprocess(True), batch_size=BATCH, is_training=True,
              image_size=28, input_context=ctx, seed=seed, num_readers=1,
              records_consumed=records_consumed)),
      optimizer_fn=lambda lr: optimization.build_optimizer('momentum', lr),
      learning_rate=optimization.build_learning_rate('fixed', learning_rate),
      validation_dataset_fn=(lambda: input_pipeline.make_dataset(
          test, preprocess(False), batch_size=BATCH, is_training=False,
          image_size=28)) if validate else None,
      options=trainer.TrainOptions(
          train_dir=str(train_dir), batch_size=BATCH,
          max_number_of_steps=steps, log_every_n_steps=10 ** 6,
          save_summaries_secs=10 ** 6, save_interval_secs=10 ** 6,
          random_seed=seed, eval_every_n_steps=steps if validate else None,
          validation_max_batches=4))


@pytest.mark.slow  # 8 trainings: about 4 minutes on a loaded 2-core CPU
def test_a_learning_rate_of_1e_5_is_worse_than_0_01_over_4_seeds(digits,
                                                                  tmp_path):
  axes = [grid.Axis('learning_rate', ('0.01', '1e-5'))]
  study_seeds = tuple(seeding.SEED + i for i in range(4))
  runs = grid.build_runs(axes, study_seeds)
  for run in runs:
    _train(digits, tmp_path / 'runs' / run.name, seed=run.seed,
           learning_rate=float(dict(run.values)['learning_rate']), steps=20)
  found = results.read_study(str(tmp_path), runs)
  info = report.StudyInfo(name='lr', axes=axes, seeds=study_seeds,
                          fixed_flags={'optimizer': 'momentum'})
  analysis = report.analyze(info, found)
  best, slow = analysis.rows
  assert dict(best.summary.values)['learning_rate'] == '0.01'
  assert slow.verdict == ranking.WORSE, report.markdown(info, analysis, found)
  assert slow.adjusted_p < 0.05 and slow.comparison.n == 4
  assert slow.comparison.high < 0  # the whole interval below the best


def test_momentum_0_01_with_elu_diverges_near_step_22(digits, tmp_path):
  with pytest.raises(trainer.NonFiniteLossError) as error:
    _train(digits, tmp_path / 'elu', seed=seeding.SEED, learning_rate=0.01,
           steps=60, activation='elu', validate=False)
  assert 10 <= error.value.step <= 45
  # What the study reads from the run's error line.
  line = f'train_image_classifier.py: error: {error.value}'
  assert results.diverged_step(line) == error.value.step


@pytest.mark.slow  # 2 runs as processes: about 2 minutes
def test_a_diverging_configuration_is_shown_diverged_and_ranked_last(
    digits, tmp_path):
  study = tmp_path / 'study'
  argv = [sys.executable, os.path.join(ROOT, 'compare_methods.py'),
          f'--study_dir={study}', '--dataset_name=digits',
          f'--dataset_dir={digits}', '--model_name=lenet',
          f'--batch_size={BATCH}', '--optimizer=momentum',
          '--learning_rate=0.01', '--learning_rate_decay_type=fixed',
          '--weight_decay=0', '--max_number_of_steps=45',
          '--eval_every_n_steps=45', '--log_every_n_steps=45',
          '--validation_max_batches=2', '--num_readers=1',
          '--save_summaries_secs=100000', '--vary=activation=elu,relu',
          f'--seeds={seeding.SEED}', '--parallel=2']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(argv, capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=1800, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(study / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['activation'] for r in rows] == ['relu', 'elu']  # elu last
  assert rows[0]['verdict'] == 'best'
  assert rows[1]['verdict'].startswith('diverged 1/1 (step ')
  assert 10 <= int(rows[1]['diverged_steps']) <= 45
  text = (study / 'report.md').read_text()
  table = [line for line in text.splitlines() if line.startswith('| 2 |')]
  assert 'diverged 1/1 (step' in table[0]
