"""SavedModel export and classification: bytes in, the Python model's top 5."""

import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from slimkit import checkpoints
from slimkit.export import saved_model
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory

from tests import script_runner
from tests.tf1_checkpoints import build, random_values, write_tf1_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_images(directory, channels=3, size=(45, 37)):
  """A JPEG and a PNG of random pixels, of a size other than the net's."""
  rng = np.random.default_rng(5)
  pixels = rng.integers(0, 256, size + (channels,), dtype=np.uint8)
  paths = {}
  for kind, encode in (('jpg', tf.io.encode_jpeg), ('png', tf.io.encode_png)):
    paths[kind] = os.path.join(directory, f'image.{kind}')
    tf.io.write_file(paths[kind], encode(pixels))
  return paths


def _python_top5(net, model_name, path, size, channels):
  """What the Python model says: decode, eval preprocessing, net, softmax."""
  image = tf.io.decode_image(tf.io.read_file(path), channels=channels)
  preprocess = preprocessing_factory.get_preprocessing(model_name,
                                                       is_training=False)
  logits, _ = net(preprocess(image, size, size)[tf.newaxis], training=False)
  probabilities = tf.nn.softmax(logits)[0].numpy()
  return list(np.argsort(-probabilities)[:5]), probabilities


def _restored(tmp_path, model_name, channels):
  values = random_values(build(model_name, channels=channels), seed=11)
  # Larger logits weights spread the probabilities, so the top 5 has no ties.
  for name in values:
    if name.endswith(('logits/weights', 'fc4/weights')):
      values[name] = values[name] * 20.0
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build(model_name, channels=channels)
  checkpoints.restore(net, prefix)
  return net, prefix


@pytest.mark.parametrize('model_name,channels', [('cifarnet', 3),
                                                 ('lenet', 1)])
def test_saved_model_round_trip_matches_python_model(tmp_path, model_name,
                                                     channels):
  net, _ = _restored(tmp_path, model_name, channels)
  size = net.default_image_size
  names = {i: f'class_{i}' for i in range(10)}
  preprocess = preprocessing_factory.get_preprocessing(model_name,
                                                       is_training=False)
  export_dir = str(tmp_path / 'export')
  saved_model.export_saved_model(net, preprocess, export_dir, image_size=size,
                            channels=channels, labels_to_names=names)
  paths = _write_images(str(tmp_path), channels)

  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures['serving_default']
  out = serve(images=tf.constant([open(paths['jpg'], 'rb').read(),
                                  open(paths['png'], 'rb').read()]))

  for i, kind in enumerate(('jpg', 'png')):
    top5, probabilities = _python_top5(net, model_name, paths[kind], size,
                                       channels)
    assert list(out['top_5_ids'][i].numpy()) == top5
    assert [n.decode() for n in out['top_5_names'][i].numpy()] == [
        names[k] for k in top5]
    np.testing.assert_allclose(out['probabilities'][i], probabilities,
                               rtol=1e-5, atol=1e-6)

  # The float signature takes preprocessed batches.
  batch = tf.random.uniform([3, size, size, channels], -1, 1, seed=2)
  predicted = loaded.signatures['predict_images'](images=batch)
  logits, _ = net(batch, training=False)
  np.testing.assert_allclose(predicted['probabilities'], tf.nn.softmax(logits),
                             rtol=1e-5, atol=1e-6)
  assert predicted['top_5_ids'].shape == (3, 5)


def test_class_names_fall_back_to_ids():
  assert saved_model.class_names(3, {1: 'daisy'}) == ['0', 'daisy', '2']


def test_export_needs_logits():
  net = nets_factory.get_network_fn('lenet', num_classes=0)
  net(tf.zeros([1, 28, 28, 1]))
  with pytest.raises(ValueError, match='num_classes'):
    saved_model.export_saved_model(net, lambda image, h, w: image,
                                   '/nonexistent', image_size=28, channels=1)


def _run(script, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run([sys.executable, os.path.join(ROOT, script),
                              *args], cwd=ROOT, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_export_and_classify_scripts(tmp_path):
  # LeNet's checkpoint takes 1 channel: the script follows the checkpoint.
  net, _ = _restored(tmp_path, 'lenet', channels=1)
  labels = tmp_path / 'labels.txt'
  labels.write_text(''.join(f'{i}:digit {i}\n' for i in range(10)))
  export_dir = str(tmp_path / 'export')
  out = _run('export_inference_graph.py', '--model_name=lenet',
             '--num_classes=10', f'--checkpoint_path={tmp_path}/model.ckpt',
             f'--labels_file={labels}', f'--output_dir={export_dir}')
  assert 'Restored 8 variables' in out
  assert os.path.exists(os.path.join(export_dir, 'saved_model.pb'))

  paths = _write_images(str(tmp_path), channels=1)
  out = _run('classify_image.py', f'--saved_model_dir={export_dir}',
             paths['png'], paths['jpg'])

  lines = out.splitlines()
  for kind in ('png', 'jpg'):
    start = lines.index(paths[kind])
    top5, probabilities = _python_top5(net, 'lenet', paths[kind], 28, 1)
    printed = [re.fullmatch(r'  (.+) \((\d+)\): ([0-9.]+)', line).groups()
               for line in lines[start + 1:start + 6]]
    assert [(name, int(k)) for name, k, _ in printed] == [
        (f'digit {k}', k) for k in top5]
    np.testing.assert_allclose([float(p) for _, _, p in printed],
                               probabilities[top5], atol=2e-4)

