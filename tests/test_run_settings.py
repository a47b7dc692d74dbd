"""A run remembers its settings: eval, export and classify of a train dir.

One LeNet is trained for a few steps on the bundled digits by
train_image_classifier.py itself (its flags.txt is the point), with a moving
average and validation. Its settings, the scripts that read them and the
results reader are checked against what the training command said and what
the checkpoint and event files hold, read independently here.
"""

import os
import re
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from slimkit import checkpoints
from slimkit import runs
from slimkit.datasets import dataset_factory
from slimkit.datasets import digits
from slimkit.datasets import input_pipeline
from slimkit.export import tflite
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from slimkit.study import grid
from slimkit.study import results as study_results
from tests import event_files
from tests import script_runner
from tests import seeding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
EVAL_IMAGES = 100


def _run(script, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run(
      [sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """The digits and a lenet run: `{'data', 'train_dir', 'checkpoint'}`."""
  base = tmp_path_factory.mktemp('run_settings')
  data = str(base / 'digits')
  digits.run(data)
  train_dir = str(base / 'train')
  result = _run('train_image_classifier.py', f'--train_dir={train_dir}',
                '--model_name=lenet', '--dataset_name=digits',
                f'--dataset_dir={data}', '--batch_size=8',
                f'--max_number_of_steps={STEPS}', '--optimizer=sgd',
                '--learning_rate=0.05', '--moving_average_decay=0.9',
                '--eval_every_n_steps=3', '--validation_max_batches=2',
                '--log_every_n_steps=2', '--weight_decay=0',
                f'--random_seed={seeding.SEED}')
  assert result.returncode == 0, result.stderr[-3000:]
  return {'data': data, 'train_dir': train_dir,
          'checkpoint': os.path.join(train_dir, f'model.ckpt-{STEPS}')}


def _net(checkpoint, use_moving_average):
  """LeNet restored directly (10 classes, 28x28x1), no run settings."""
  net = nets_factory.get_network_fn('lenet', num_classes=10,
                                    is_training=False)
  net(tf.zeros([1, 28, 28, 1]))
  checkpoints.restore(net, checkpoint, use_moving_average=use_moving_average)
  return net


def _test_images(data, count):
  split = dataset_factory.get_split('digits', 'test', data)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  dataset = input_pipeline.make_dataset(split, preprocess, batch_size=count,
                                        is_training=False, image_size=28)
  images, labels = next(iter(dataset))
  return images.numpy(), labels.numpy()


def _accuracy(net, data):
  images, labels = _test_images(data, EVAL_IMAGES)
  logits, _ = net(images, training=False)
  return float(np.mean(np.argmax(logits.numpy(), axis=1) == labels))


def _printed_accuracy(stdout):
  return float(re.search(r'eval/Accuracy\[([0-9.]+)\]', stdout).group(1))


def test_settings_are_those_of_the_training_command(run):
  for path in (run['train_dir'], run['checkpoint'],
               run['checkpoint'] + '.index'):
    settings = runs.read_settings(path)
    assert settings.train_dir == run['train_dir']
    assert (settings.model_name, settings.dataset_name,
            settings.dataset_dir) == ('lenet', 'digits', run['data'])
    assert settings.moving_average_decay == 0.9
    assert (settings.model_options, settings.labels_offset,
            settings.image_size, settings.preprocessing_name,
            settings.quantize_delay) == ('', 0, None, None, -1)
    # DESIGN.md: the digits have 10 classes.
    assert settings.num_classes == 10


def test_typed_flags_win_and_conflicts_take_one_line(run):
  names = runs.EVAL_FLAGS
  defaults = {'model_name': 'inception_v3', 'model_options': '',
              'dataset_name': 'imagenet', 'dataset_dir': None,
              'labels_offset': 0, 'image_size': None,
              'preprocessing_name': None, 'use_grayscale': False,
              'moving_average_decay': None, 'quantize': False}
  values = dict(defaults, model_name='cifarnet', image_size=28,
                dataset_dir='/elsewhere')
  resolved = runs.resolve(run['checkpoint'], values,
                          {'model_name', 'image_size', 'dataset_dir'}, names)
  assert resolved.values['model_name'] == 'cifarnet'
  assert resolved.values['dataset_dir'] == '/elsewhere'
  assert resolved.values['dataset_name'] == 'digits'
  assert resolved.values['moving_average_decay'] == 0.9
  line = resolved.conflict_line()
  assert '\n' not in line
  # The typed 28 is the size the run trained at (lenet's default, DESIGN.md),
  # though cifarnet's default is 32: no conflict. A moved dataset is none.
  assert '--model_name=cifarnet (run: lenet)' in line
  assert 'dataset_dir' not in line and 'eval_image_size' not in line

  agreeing = runs.resolve(run['checkpoint'], dict(defaults, model_name='lenet',
                                                  image_size=28),
                          {'model_name', 'image_size'}, names)
  assert agreeing.conflict_line() is None


def test_a_checkpoint_without_flags_txt_keeps_the_flags(run, tmp_path):
  for name in os.listdir(run['train_dir']):
    if name.startswith(f'model.ckpt-{STEPS}'):
      shutil.copy(os.path.join(run['train_dir'], name), tmp_path)
  published = str(tmp_path / f'model.ckpt-{STEPS}')
  assert runs.read_settings(published) is None
  values = {'model_name': 'lenet', 'dataset_name': 'imagenet',
            'labels_offset': 1, 'num_classes': None, 'dataset_dir': None}
  resolved = runs.resolve(published, values, {'model_name'},
                          runs.EXPORT_FLAGS)
  assert resolved.values == values and resolved.conflict_line() is None
  # TF-Slim's export: the dataset's classes minus the offset (DESIGN.md:
  # ImageNet has 1001 with the background class, the digits 10).
  assert resolved.num_classes() == 1000
  values.update(dataset_name='digits', labels_offset=0)
  assert runs.resolve(published, values, set(),
                      runs.EXPORT_FLAGS).num_classes() == 10


def test_eval_needs_no_model_flags_and_a_typed_flag_wins(run, tmp_path):
  common = [f'--checkpoint_path={run["train_dir"]}',
            f'--dataset_dir={run["data"]}', f'--batch_size={EVAL_IMAGES}',
            '--max_num_batches=1', f'--eval_dir={tmp_path}']
  plain = _run('eval_image_classifier.py', *common)
  assert plain.returncode == 0, plain.stderr[-3000:]
  assert 'differ from the run' not in plain.stderr
  # The run trained with a moving average: its averages are evaluated.
  averaged = _accuracy(_net(run['checkpoint'], True), run['data'])
  assert abs(_printed_accuracy(plain.stdout) - averaged) < 1e-6

  typed = _run('eval_image_classifier.py', *common,
               '--moving_average_decay=0')
  assert typed.returncode == 0, typed.stderr[-3000:]
  conflicts = [line for line in typed.stderr.splitlines()
               if 'differ from the run' in line]
  assert len(conflicts) == 1
  assert '--moving_average_decay=0.0 (run: 0.9)' in conflicts[0]
  weights = _accuracy(_net(run['checkpoint'], False), run['data'])
  assert abs(_printed_accuracy(typed.stdout) - weights) < 1e-6


def test_export_without_num_classes_counts_the_dataset(run, tmp_path):
  # The command of issue 21, which built 1001 classes and failed.
  output = str(tmp_path / 'lenet.tflite')
  result = _run('export_inference_graph.py', '--model_name=lenet',
                '--dataset_name=digits', f'--dataset_dir={run["data"]}',
                f'--checkpoint_path={run["train_dir"]}',
                '--output_format=tflite', f'--output_file={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  classifier = tflite.TFLiteClassifier(output)
  assert classifier.num_classes == 10
  assert (classifier.image_size, classifier.channels) == ((28, 28), 1)
  # The digits' labels.txt names the classes without --labels_file.
  with open(os.path.join(run['data'], 'labels.txt')) as f:
    names = [line.strip().split(':', 1)[1] for line in f if line.strip()]
  assert classifier.class_names == names
  images, _ = _test_images(run['data'], 8)
  logits, _ = _net(run['checkpoint'], True)(images, training=False)
  np.testing.assert_allclose(classifier.predict(images),
                             tf.nn.softmax(logits).numpy(), atol=1e-5)


def test_classify_a_run_checkpoint(run, tmp_path):
  images, _ = _test_images(run['data'], 1)
  # lenet's eval preprocessing maps pixels p to (p - 128) / 128.
  pixels = np.clip(np.round(images[0] * 128.0 + 128.0), 0, 255)
  path = str(tmp_path / 'digit.png')
  tf.io.write_file(path, tf.io.encode_png(pixels.astype(np.uint8)))
  result = _run('classify_image.py', f'--checkpoint_path={run["checkpoint"]}',
                path)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  top = re.fullmatch(r'  (.+) \((\d+)\): ([0-9.]+)',
                     lines[lines.index(path) + 1]).groups()
  logits, _ = _net(run['checkpoint'], True)(
      (pixels[np.newaxis] - 128.0) / 128.0, training=False)
  probabilities = tf.nn.softmax(logits)[0].numpy()
  best = int(np.argmax(probabilities))
  assert int(top[1]) == best
  assert abs(float(top[2]) - probabilities[best]) < 1e-3


def test_results_are_what_the_event_files_say(run):
  read = runs.read_results(run['train_dir'])
  validation = os.path.join(run['train_dir'], 'validation')
  accuracy = event_files.scalars(validation, 'eval/Accuracy')
  assert sorted(accuracy) == [3, 6]  # --eval_every_n_steps=3, 6 steps
  assert [p.step for p in read.validation] == [3, 6]
  for point in read.validation:
    assert point.metrics['Accuracy'] == pytest.approx(accuracy[point.step])
    assert point.metrics['loss'] == pytest.approx(
        event_files.scalars(validation, 'eval/loss')[point.step])
  losses = event_files.scalars(run['train_dir'], 'total_loss')
  assert {s.step: s.value for s in read.losses} == pytest.approx(losses)
  reader = tf.train.load_checkpoint(run['checkpoint'])
  assert read.global_step == STEPS == int(
      reader.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE'))
  # DESIGN.md: lenet has 3274634 trainable parameters at 10 classes.
  assert read.parameters == 3274634

  # The study reads the same.
  result = study_results.read_run(
      run['train_dir'], grid.Run(name='train', values=(), seed=0))
  assert result.global_step == STEPS and result.parameters == 3274634
  assert result.accuracy == tuple((s, pytest.approx(v))
                                  for s, v in sorted(accuracy.items()))
  assert result.final_loss == pytest.approx(losses[max(losses)])
