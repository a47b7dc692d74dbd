"""classify_image.py on files that are not images (issue 25 item 3).

A file that is not an image and a missing file are each named in one line
with the reason, the good image is still classified (as the net itself
classifies it), and the exit status is non-zero at the end: with a
SavedModel and with a TFLite file. No TensorFlow traceback.
"""

import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from slimkit.export import saved_model
from slimkit.export import tflite
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A LeNet (initial weights) as a SavedModel and a TFLite file, and files.

  Returns:
    `{'net', 'saved_model', 'tflite', 'good', 'text', 'missing'}`.
  """
  base = tmp_path_factory.mktemp('classify_errors')
  net = nets_factory.get_network_fn('lenet', num_classes=10,
                                    is_training=False)
  net(tf.zeros([1, 28, 28, 1]))
  preprocess = preprocessing_factory.get_preprocessing('lenet',
                                                       is_training=False)
  saved_model.export_saved_model(net, preprocess, str(base / 'saved_model'),
                                 image_size=28, channels=1)
  tflite.export_tflite(net, str(base / 'lenet.tflite'), image_size=28,
                       channels=1, model_name='lenet')
  rng = np.random.default_rng(3)
  good = str(base / 'digit.png')
  # Mid-grey pixels: the initial net's probabilities stay apart (no ties in
  # the top 5, none saturated at 0 or 1).
  tf.io.write_file(good, tf.io.encode_png(
      rng.integers(96, 160, (28, 28, 1), dtype=np.uint8)))
  text = base / 'notes.png'  # an image's name, a text's content
  text.write_text('not an image\n')
  return {'net': net, 'saved_model': str(base / 'saved_model'),
          'tflite': str(base / 'lenet.tflite'), 'good': good,
          'text': str(text), 'missing': str(base / 'missing.jpg')}


def _probabilities(net, path):
  """What the net itself says: decode, lenet's eval preprocessing, softmax."""
  image = tf.io.decode_png(tf.io.read_file(path), channels=1)
  pixels = (tf.cast(image, tf.float32) - 128.0) / 128.0  # lenet's eval
  logits, _ = net(pixels[tf.newaxis], training=False)
  return tf.nn.softmax(logits)[0].numpy()


def _check_top(net, path, top):
  probabilities = _probabilities(net, path)
  expected = list(np.argsort(-probabilities)[:5])
  assert [class_id for _, class_id, _ in top] == expected
  np.testing.assert_allclose([p for _, _, p in top],
                             probabilities[expected], atol=1e-4)


@pytest.mark.parametrize('kind', ['saved_model', 'tflite'])
def test_bad_files_are_named_and_the_rest_classified(exported, kind):
  classify = (saved_model.saved_model_classifier(exported['saved_model'])
              if kind == 'saved_model' else
              tflite.file_classifier(exported['tflite']))
  paths = [exported['text'], exported['missing'], exported['good']]
  items = list(saved_model.classify_each(classify, paths))
  assert [item.path for item in items] == paths
  assert items[0].error.startswith(f'{exported["text"]}: not an image file')
  assert items[1].error == f'{exported["missing"]}: no such file'
  assert items[2].error is None
  _check_top(exported['net'], exported['good'], items[2].top)


def test_classify_files_names_the_bad_file(exported):
  with pytest.raises(saved_model.ImageFileError, match=re.escape(
      exported['missing'])):
    saved_model.classify_files(exported['saved_model'],
                               [exported['good'], exported['missing']])
  with pytest.raises(saved_model.ImageFileError, match=re.escape(
      exported['text'])):
    tflite.classify_files(exported['tflite'], [exported['text']])


@pytest.mark.parametrize('flag', ['saved_model_dir', 'tflite_model'])
def test_script_exit_status_and_one_line_per_bad_file(exported, flag):
  model = exported['saved_model' if flag == 'saved_model_dir' else 'tflite']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, 'classify_image.py'),
       f'--{flag}={model}', exported['text'], exported['missing'],
       exported['good']],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  errors = result.stderr.splitlines()
  for path, reason in ((exported['text'], 'not an image file'),
                       (exported['missing'], 'no such file')):
    named = [line for line in errors if path in line]
    assert len(named) == 1 and reason in named[0], errors
  assert '2 of 3 files could not be classified' in result.stderr
  lines = result.stdout.splitlines()
  start = lines.index(exported['good'])
  top = [re.fullmatch(r'  (.+) \((\d+)\): ([0-9.]+)', line).groups()
         for line in lines[start + 1:start + 6]]
  _check_top(exported['net'], exported['good'],
             [(name, int(k), float(p)) for name, k, p in top])
