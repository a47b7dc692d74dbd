"""--random_seed: the same flags and seed give bit-identical checkpoints.

On the bundled digits with LeNet (which has dropout) and a random
augmentation style: the script in subprocesses where the script itself is
under test, the same wiring in this process elsewhere.
"""

import glob
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit import seeds
from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit import evaluator
from slimkit.training import loss_watch
from slimkit.deployment import model_deploy
from slimkit.training import optimization
from slimkit.training import trainer
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def digits(digits_dir):
  return digits_dir


def _script(name, *args, new_interpreter=False):
  """Runs a script; returns its CompletedProcess after checking it passed.

  By default the script runs forked from a process that imported TensorFlow
  (tests/script_runner.py). A run that must repeat another bit for bit is
  given `new_interpreter=True`: a new Python process, with its own hash seed
  and its own TensorFlow import, so nothing shared by the forked runs can
  make two runs agree.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  run = subprocess.run if new_interpreter else script_runner.run
  result = run([sys.executable, os.path.join(ROOT, name), *args],
               capture_output=True, text=True, env=env, cwd=ROOT,
               timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _train_script(digits, train_dir, *extra, steps=4, new_interpreter=False):
  # A checkpoint at every step; inception-style augmentation (random crop,
  # flip, brightness) so that the input's random draws count too.
  return _script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=digits', f'--dataset_dir={digits}',
      '--model_name=lenet', '--preprocessing_name=inception',
      '--train_image_size=28', '--batch_size=8', '--optimizer=momentum',
      '--learning_rate=0.01', '--learning_rate_decay_type=fixed',
      '--weight_decay=0', f'--max_number_of_steps={steps}',
      '--log_every_n_steps=2', '--save_interval_secs=0', '--num_readers=2',
      '--num_preprocessing_threads=3', *extra,
      new_interpreter=new_interpreter)


def _train(train_dir, steps, random_seed, split=None, augmented=False):
  """The script's wiring in this process (TF starts once per test file).

  Seeds Keras's initialisers as the script does; without TF's op
  determinism, which is switched on per process for good (CPU kernels do
  not need it; tf.data's order is fixed by the seed). `augmented` adds
  RandAugment, MixUp and CutMix (with soft labels and label smoothing).
  """
  keras.utils.set_random_seed(random_seed)
  if split is None:  # synthetic: one fixed batch of the run's seed
    split = dataset_factory.get_split('synthetic', 'train', None)
    dataset_fn = lambda ctx, seed, records_consumed: split.make_dataset(
        batch_size=4, image_size=28, channels=1, seed=random_seed,
        input_context=ctx)
  else:
    preprocess = preprocessing_factory.get_preprocessing(
        'inception', True, randaugment=(2, 9) if augmented else None)
    mixing = dict(mixup_alpha=0.4, cutmix_alpha=1.0) if augmented else {}
    dataset_fn = lambda ctx, seed, records_consumed: (
        input_pipeline.make_dataset(
            split, preprocess, batch_size=4, is_training=True, image_size=28,
            num_readers=2, num_preprocessing_threads=3, input_context=ctx,
            seed=seed, records_consumed=records_consumed, **mixing))
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10,
                                                     is_training=True),
      dataset_fn=dataset_fn,
      optimizer_fn=lambda lr: optimization.build_optimizer('momentum', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(
          train_dir=str(train_dir), batch_size=4, max_number_of_steps=steps,
          save_interval_secs=0, save_summaries_secs=10 ** 6,
          random_seed=random_seed,
          # A checkpoint after every step, compared step by step (groups of
          # steps: tests/test_steps_per_loop.py).
          steps_per_loop=1,
          label_smoothing=0.1 if augmented else 0.0))


def _checkpoints(train_dir):
  """{step: {key: value}} of every checkpoint kept in `train_dir`."""
  result = {}
  for index in glob.glob(os.path.join(train_dir, 'model.ckpt-*.index')):
    prefix = index[:-len('.index')]
    reader = tf.train.load_checkpoint(prefix)
    result[int(prefix.rsplit('-', 1)[1])] = {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if not key.startswith('_CHECKPOINTABLE')}
  return result


def _assert_identical(a, b):
  assert sorted(a) == sorted(b) and a
  for step in a:
    assert sorted(a[step]) == sorted(b[step])
    for key in a[step]:
      np.testing.assert_array_equal(a[step][key], b[step][key],
                                    err_msg=f'step {step}: {key}')


def _weights_differ(a, b):
  step = max(a)
  keys = [k for k in a[step] if k.startswith('model_variables/')]
  return any(not np.array_equal(a[step][k], b[step][k]) for k in keys)


def test_a_drawn_seed_is_logged_and_the_flagfile_repeats_the_run(digits,
                                                                tmp_path):
  # Summaries at every step in the first run, only at the first step in
  # the repeat: which traced step ran must not matter.
  result = _train_script(digits, tmp_path / 'a', '--save_summaries_secs=0')
  found = re.search(r'Random seed (\d+) \(drawn', result.stderr)
  assert found, result.stderr[-2000:]
  with open(tmp_path / 'a' / 'flags.txt') as f:
    written = f.read()
  assert f'--random_seed={found.group(1)}\n' in written
  # So the repeat runs with the augmentations explicitly off: bit-identical
  # to the run without those flags (the TF-Slim path is unchanged).
  assert '--mixup_alpha=0.0\n' in written and '--cutmix_alpha=0.0\n' in written
  # Resumed without --random_seed, the run keeps its seed (and so its
  # input stream): it ends where one uninterrupted run of that seed does.
  resumed = _train_script(digits, tmp_path / 'a', steps=6)
  assert f'Random seed {found.group(1)} (the resumed run' in resumed.stderr
  with open(tmp_path / 'a' / 'flags.txt') as f:
    assert f'--random_seed={found.group(1)}\n' in f.read()
  _script('train_image_classifier.py',
          f'--flagfile={tmp_path / "a" / "flags.txt"}',
          f'--train_dir={tmp_path / "b"}', '--save_summaries_secs=100000',
          new_interpreter=True)
  first = _checkpoints(tmp_path / 'a')
  assert 6 in first and 4 in first
  _assert_identical(first, _checkpoints(tmp_path / 'b'))


def _scalars(directory, tag):
  """{step: value} of `tag` in the event files of `directory`."""
  values = {}
  for path in glob.glob(os.path.join(directory, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


@pytest.mark.slow  # ~60 s; one clone stays
def test_two_clones_are_reproducible_and_validation_changes_nothing(
    digits, tmp_path):
  # The same seed twice on two clones, once with validation during training
  # (every 3 steps and at the last): bit-identical checkpoints.
  # One step per call: a checkpoint after every step in both runs (groups
  # of steps end at validations too, which would change which steps save).
  clones = ['--random_seed=7', '--num_clones=2', '--clone_on_cpu',
            '--batch_size=4', '--max_number_of_steps=7',
            '--steps_per_loop=1']
  result = _train_script(digits, tmp_path / 'a', *clones,
                         '--eval_every_n_steps=3')
  _train_script(digits, tmp_path / 'b', *clones, new_interpreter=True)
  _assert_identical(_checkpoints(tmp_path / 'a'), _checkpoints(tmp_path / 'b'))
  # Groups of steps on two clones train the same weights.
  _train_script(digits, tmp_path / 'c', *clones, '--steps_per_loop=4')
  grouped, single = (
      {k: v for k, v in _checkpoints(tmp_path / run)[7].items()
       if not k.startswith('save_counter')} for run in ('c', 'b'))
  _assert_identical({7: grouped}, {7: single})
  validation = str(tmp_path / 'a' / 'validation')
  accuracy = _scalars(validation, 'eval/Accuracy')
  assert sorted(accuracy) == [3, 6, 7]
  assert 'Validation at global step 7: eval/Accuracy[' in result.stderr
  # The last validation is what the evaluation script gives for the final
  # checkpoint on the same split (digits has no validation split: test).
  _script('eval_image_classifier.py', f'--checkpoint_path={tmp_path / "a"}',
          f'--eval_dir={tmp_path / "eval"}', '--dataset_name=digits',
          f'--dataset_dir={digits}', '--model_name=lenet',
          '--preprocessing_name=inception', '--eval_image_size=28')
  for tag in ('eval/Accuracy', 'eval/Recall_5', 'eval/loss'):
    expected = _scalars(str(tmp_path / 'eval'), tag)[7]
    assert abs(_scalars(validation, tag)[7] - expected) < 1e-6, tag


def test_a_bad_validation_split_is_refused_before_anything_is_written(
    digits, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, 'train_image_classifier.py'),
       f'--train_dir={tmp_path / "t"}', '--dataset_name=digits',
       f'--dataset_dir={digits}', '--model_name=lenet',
       '--eval_every_n_steps=5', '--validation_split_name=validaton'],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert '--validation_split_name=validaton' in result.stderr
  assert 'Valid splits: test, train' in result.stderr
  assert not (tmp_path / 't').exists()


def test_the_same_seed_gives_the_same_weights_another_seed_others(digits,
                                                                  tmp_path):
  split = dataset_factory.get_split('digits', 'train', digits)
  for run, seed in (('a', 7), ('b', 7), ('c', 8)):
    _train(tmp_path / run, 3, seed, split)
  first = _checkpoints(tmp_path / 'a')
  _assert_identical(first, _checkpoints(tmp_path / 'b'))
  assert _weights_differ(first, _checkpoints(tmp_path / 'c'))


# The augmented run covers records and every stream at once; the plainer
# two are slow variants.
@pytest.mark.parametrize('records, augmented', [
    pytest.param(False, False, marks=pytest.mark.slow),
    pytest.param(True, False, marks=pytest.mark.slow), (True, True)],
                         ids=['synthetic', 'records', 'augmented'])
def test_a_resumed_run_ends_where_the_uninterrupted_one_does(
    digits, tmp_path, records, augmented):
  # Stopped and resumed at step 2, the run must continue every stream:
  # dropout (keyed on the step), the optimizer's state, and the input
  # (replayed up to where it stopped, RandAugment keyed on the image's and
  # MixUp/CutMix on the batch's place in the stream; synthetic input is one
  # fixed batch).
  split = (dataset_factory.get_split('digits', 'train', digits) if records
           else None)
  _train(tmp_path / 'whole', 4, 3, split, augmented)
  _train(tmp_path / 'resumed', 2, 3, split, augmented)
  _train(tmp_path / 'resumed', 4, 3, split, augmented)
  whole, resumed = _checkpoints(tmp_path / 'whole'), _checkpoints(
      tmp_path / 'resumed')
  assert sorted(resumed) == [1, 2, 3, 4]
  _assert_identical({4: whole[4]}, {4: resumed[4]})


def test_a_stream_too_long_to_replay_resumes_as_a_new_reproducible_one(
    digits, monkeypatch):
  split = dataset_factory.get_split('digits', 'train', digits)
  preprocess = preprocessing_factory.get_preprocessing('inception', True)

  def first_batch(consumed):
    dataset = input_pipeline.make_dataset(
        split, preprocess, batch_size=8, is_training=True, image_size=24,
        seed=4, records_consumed=consumed)
    return next(iter(dataset))[0].numpy()

  stream = input_pipeline.make_dataset(
      split, preprocess, batch_size=8, is_training=True, image_size=24,
      seed=4)
  third = [b for b, _ in stream.take(3)][2].numpy()
  np.testing.assert_array_equal(first_batch(16), third)  # replayed
  monkeypatch.setattr(input_pipeline, 'MAX_REPLAY_BYTES', 0)
  fresh = first_batch(16)
  assert not np.array_equal(fresh, third)
  np.testing.assert_array_equal(first_batch(16), fresh)


def test_evaluation_is_deterministic(digits, tmp_path):
  split = dataset_factory.get_split('digits', 'train', digits)
  _train(tmp_path / 'train', 2, 1, split)
  test_split = dataset_factory.get_split('digits', 'test', digits)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  metrics = [evaluator.evaluate_checkpoint(
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10),
      dataset_fn=lambda: input_pipeline.make_dataset(
          test_split, preprocess, batch_size=50, is_training=False,
          image_size=28, num_preprocessing_threads=4),
      checkpoint_path=str(tmp_path / 'train')) for _ in range(2)]
  assert metrics[0] == metrics[1]


# --- The seeded draws, in the library. ---


@pytest.mark.parametrize('style', ['inception', 'vgg', 'cifarnet'])
def test_seeded_preprocessing_draws_the_same_for_the_same_seed(style):
  image = tf.constant(np.random.RandomState(0).randint(0, 256, (60, 70, 3)),
                      tf.uint8)
  train = preprocessing_factory.get_preprocessing(style, is_training=True)
  size = 32
  options = ({'resize_side_min': 40, 'resize_side_max': 80}
             if style == 'vgg' else {})
  run = lambda seed: train(image, size, size, seed=seed, **options).numpy()
  a, b = run(seeds.fold(1, 2)), run(seeds.fold(1, 2))
  np.testing.assert_array_equal(a, b)
  others = [run(seeds.fold(1, 3 + i)) for i in range(4)]
  assert all(not np.array_equal(a, other) for other in others)
  # The encoded path draws what the decoded one does.
  from_png = train.from_encoded(tf.io.encode_png(image), size, size,
                                seed=seeds.fold(1, 2), **options)
  np.testing.assert_allclose(from_png.numpy(), a, atol=1e-4)


def test_seeded_dropout_is_a_function_of_the_seed():
  net = nets_factory.get_network_fn('lenet', num_classes=10)
  images = tf.random.stateless_uniform([4, 28, 28, 1], [0, 0])
  run = lambda seed: net(images, training=True, seed=seed)[0].numpy()
  a = run(seeds.fold(9, 1))
  np.testing.assert_array_equal(a, run(seeds.fold(9, 1)))
  assert not np.array_equal(a, run(seeds.fold(9, 2)))
  # Without a seed: TF's stateful dropout, as before.
  assert not np.array_equal(run(None), run(None))


def test_the_seeded_input_does_not_depend_on_the_parallelism(digits):
  split = dataset_factory.get_split('digits', 'train', digits)
  train = preprocessing_factory.get_preprocessing('inception', True)

  def batches(threads, seed):
    dataset = input_pipeline.make_dataset(
        split, train, batch_size=16, is_training=True, image_size=24,
        num_readers=2, num_preprocessing_threads=threads, seed=seed)
    return [(images.numpy(), labels.numpy())
            for images, labels in dataset.take(3)]

  one, four = batches(1, 11), batches(4, 11)
  for (images_a, labels_a), (images_b, labels_b) in zip(one, four):
    np.testing.assert_array_equal(labels_a, labels_b)
    np.testing.assert_array_equal(images_a, images_b)
  assert not np.array_equal(one[0][0], batches(4, 12)[0][0])


# --- Warnings for a run that failed quietly. ---


def test_a_diverged_start_and_a_dead_net_are_warned_about():
  watch = loss_watch.LossWatch(num_classes=10)
  chance = np.log(10)
  message = watch.check(10, 20.8)  # the quickstart's bad start
  assert 'global step 10' in message and '--learning_rate' in message
  assert watch.check(20, 25.0) is None  # said once
  messages = [watch.check(step, chance + 1e-5)
              for step in range(20, 80, 10)]
  stuck = [m for m in messages if m]
  assert len(stuck) == 1 and 'from global step 20 to 60' in stuck[0]
  assert '2.3026' in stuck[0]


def test_a_healthy_run_gets_no_warning():
  for aux_weight, start in ((0.0, 1.0), (0.4, 1.4)):
    watch = loss_watch.LossWatch(num_classes=1001, aux_weight=aux_weight)
    chance = np.log(1001) * start
    losses = chance * (1.0 + 0.02 * np.random.RandomState(0).randn(30)) - \
        np.linspace(0, 3, 30)
    assert [watch.check(10 * i, float(x)) for i, x in enumerate(losses)] == [
        None] * 30


def test_a_late_blow_up_is_not_called_a_diverged_start():
  watch = loss_watch.LossWatch(num_classes=10)
  for step, loss in ((10, 2.4), (20, 2.0), (30, 1.5), (40, 30.0)):
    assert watch.check(step, loss) is None
