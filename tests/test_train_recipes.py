"""Today's recipes in training: cosine and warmup, adamw, lamb, lion, nadam.

Through the training script (the learning rates it writes to TensorBoard, the
regularization it drops, the warnings it prints) and through the trainer (each
new optimizer trains lenet, seeded).
"""

import glob
import inspect
import math
import os
import sys

import keras
import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit.deployment import model_deploy
from slimkit.training import optimization
from slimkit.training import trainer
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from tests import script_runner
from tests import seeding
from tests import tiny_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run([sys.executable, os.path.join(ROOT, script), *args],
                           env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=600, check=False)


def _scalars(logdir, tag):
  """Returns `{step: value}` of the scalar summary `tag` in `logdir`."""
  values = {}
  for path in glob.glob(os.path.join(str(logdir), 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 64})


# An epoch is the split's declared size (60000 for mnist, whatever the tiny
# file holds), as in TF-Slim: 0.00055 epochs are 33 images.
EPOCH_IMAGES, WARMUP_EPOCHS = 60000, 0.00055
BATCH, STEPS, LR, END_LR = 4, 12, 0.01, 0.001


# The epsilon flags.txt records: adamw's own default when not given
# (inspect.signature(keras.optimizers.AdamW)), else the value given.
@pytest.mark.parametrize('num_clones, optimizer_flags, warns, epsilon', [
    # TF-Slim's --weight_decay: the script warns about it. The epsilon is
    # adamw's own (Keras's), so Adam does not crawl.
    (1, ['--optimizer=adamw'], True,
     inspect.signature(keras.optimizers.AdamW).parameters['epsilon'].default),
    (2, ['--optimizer=lamb', '--opt_epsilon=1e-6', '--weight_decay=0.02'],
     False, 1e-6),
])
def test_script_trains_with_the_cosine_warmup_rates_it_summarizes(
    mnist_dir, tmp_path, num_clones, optimizer_flags, warns, epsilon):
  train_dir = tmp_path / 'train'
  result = _run_script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=mnist', f'--dataset_dir={mnist_dir}',
      '--model_name=lenet', f'--batch_size={BATCH}',
      f'--num_clones={num_clones}', '--clone_on_cpu',
      f'--max_number_of_steps={STEPS}', '--learning_rate_decay_type=cosine',
      f'--learning_rate={LR}', f'--end_learning_rate={END_LR}',
      f'--warmup_epochs={WARMUP_EPOCHS}', '--save_summaries_secs=0',
      '--log_every_n_steps=4', '--num_readers=1', *optimizer_flags)
  assert result.returncode == 0, result.stderr[-3000:]
  # TF-Slim's epoch: the split over the global batch of every clone, so two
  # clones warm up over half the steps.
  assert dataset_factory.get_split('mnist', 'train',
                                   mnist_dir).num_samples == EPOCH_IMAGES
  warmup = int(EPOCH_IMAGES * WARMUP_EPOCHS / (BATCH * num_clones))
  assert warmup == {1: 8, 2: 4}[num_clones]
  assert f'Warming the learning rate up over {warmup} steps' in result.stderr
  rates = _scalars(train_dir, 'learning_rate')
  assert sorted(rates) == list(range(1, STEPS + 1))
  for step, rate in rates.items():
    # The summary at step t is the rate of the update from t.
    cosine = END_LR + (LR - END_LR) * (1 + math.cos(math.pi * step / STEPS)) / 2
    assert rate == pytest.approx(cosine * min(1.0, step / warmup), rel=1e-6,
                                 abs=1e-7 * LR), step
  # Decoupled decay: the nets are built without their L2 regulariser.
  regularization = _scalars(train_dir, 'losses/regularization_loss')
  assert len(regularization) == STEPS and set(regularization.values()) == {0.0}
  assert 'Adam crawls' not in result.stderr
  assert ('--weight_decay=4e-05' in result.stderr) == warns
  # flags.txt records the epsilon used: --flagfile repeats the run.
  recorded = [line for line in (train_dir / 'flags.txt').read_text().split()
              if line.startswith('--opt_epsilon=')]
  assert len(recorded) == 1
  assert float(recorded[0].split('=')[1]) == epsilon


def test_helpfull_states_the_weight_decay_convention_and_the_new_choices():
  result = _run_script('train_image_classifier.py', '--helpfull')
  text = ' '.join(result.stdout.split())
  assert 'With adamw, lamb, lion it is the optimizer\'s decoupled decay' in text
  assert 'the nets\' L2 regulariser is off' in text
  assert 'weight_decay * sum(w ** 2) / 2' in text
  assert '--warmup_epochs' in text and '--lion_beta1' in text
  assert 'cosine: half a cosine to --end_learning_rate at ' \
         '--max_number_of_steps' in text
  for name in ('adamw', 'lamb', 'lion', 'nadam'):
    assert name in text.split('--optimizer:')[1].split('--')[0]
  # --opt_epsilon's default is the optimizer's own.
  epsilon = text.split('--opt_epsilon:')[1].split('--')[0]
  assert 'adadelta, adam, rmsprop: 1;' in epsilon
  assert 'adamw, lamb, nadam: 1e-07' in epsilon


# Learning rates of a fast fall on the tiny digits; Lion's is 3x smaller than
# AdamW's, as its authors advise.
RECIPES = {
    'adamw': (1e-3, dict(opt_epsilon=1e-8, weight_decay=0.05)),
    'lamb': (1e-2, dict(opt_epsilon=1e-6, weight_decay=0.02)),
    'lion': (3e-4, dict(weight_decay=0.5)),
    'nadam': (1e-3, dict(opt_epsilon=1e-8)),
}


# adamw and nadam take ~2 min together: slow; lamb and lion stay (each
# optimizer's update equals Keras's in test_optimization.py).
@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in ('adamw', 'nadam') else n
    for n in sorted(RECIPES)])
def test_each_new_optimizer_trains_lenet_with_a_falling_loss(
    mnist_dir, tmp_path, name):
  # Seeded by conftest; seeds 0-4 all fall below 0.07 of the first loss.
  learning_rate, values = RECIPES[name]
  hparams = optimization.OptimizerHParams(**values)
  split = dataset_factory.get_split('mnist', 'train', mnist_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', True)
  steps = 20
  result = trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', 10, is_training=True,
          weight_decay=optimization.net_weight_decay(name,
                                                     hparams.weight_decay)),
      dataset_fn=lambda ctx: input_pipeline.make_dataset(
          split, preprocess, batch_size=16, is_training=True, image_size=28,
          input_context=ctx, seed=seeding.SEED),
      optimizer_fn=lambda lr: optimization.build_optimizer(name, lr, hparams),
      learning_rate=optimization.build_learning_rate(
          'cosine', learning_rate, end_learning_rate=0.0, total_steps=steps,
          warmup_steps=3),
      options=trainer.TrainOptions(
          train_dir=str(tmp_path), batch_size=16, max_number_of_steps=steps,
          log_every_n_steps=steps, save_summaries_secs=10 ** 6))
  # The first step is summarized: its loss is the initial net's (the warmup
  # gives step 0 a rate of 0). The last logged loss is step 20's.
  first = _scalars(tmp_path, 'total_loss')[1]
  assert result.global_step == steps
  assert result.loss < 0.5 * first, (first, result.loss)
