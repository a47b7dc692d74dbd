"""TFLite export, evaluation and classification of a LeNet trained on digits."""

import builtins
import glob
import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit.export import tflite
from tests import digits_lenet
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALIBRATION_IMAGES = 200


@pytest.fixture(scope='module')
def trained(tmp_path_factory, digits_dir, digits_lenet_run):
  """Digits converted, lenet trained, every variant exported once."""
  root = tmp_path_factory.mktemp('tflite')
  data = digits_dir
  result = digits_lenet_run
  net = digits_lenet.restored_net(result.checkpoint)
  train_images, _ = digits_lenet.images(data, 'train')
  test_images, test_labels = digits_lenet.images(data, 'test')
  labels = {i: f'digit {i}' for i in range(10)}
  files = {}
  for quantize, io_type in (('none', 'float32'), ('float16', 'float32'),
                            ('dynamic', 'float32'), ('int8', 'float32'),
                            ('int8', 'uint8')):
    name = quantize if io_type == 'float32' else f'{quantize}_{io_type}'
    files[name] = tflite.export_tflite(
        net, str(root / f'lenet_{name}.tflite'), image_size=28, channels=1,
        quantize=quantize, io_type=io_type,
        calibration_images=(train_images[:CALIBRATION_IMAGES]
                            if quantize == 'int8' else None),
        labels_to_names=labels, model_name='lenet',
        global_step=result.global_step).path
  return dict(root=root, data=data, net=net, files=files, labels=labels,
              checkpoint=result.checkpoint, step=result.global_step,
              test_images=test_images, test_labels=test_labels)


def _raw_interpreter(path):
  """TF's own interpreter, used directly: the reference for our wrapper."""
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    interpreter = tf.lite.Interpreter(model_path=path)
  interpreter.allocate_tensors()
  return interpreter


def _direct_probabilities(path, images):
  """One image at a time through the raw interpreter, (de)quantizing by hand."""
  interpreter = _raw_interpreter(path)
  inp = interpreter.get_input_details()[0]
  out = interpreter.get_output_details()[0]
  rows = []
  for image in images:
    x = image[np.newaxis]
    if inp['dtype'] == np.uint8:
      scale, zero = inp['quantization']
      x = np.clip(np.round(x / scale + zero), 0, 255).astype(np.uint8)
    interpreter.set_tensor(inp['index'], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out['index'])[0]
    if out['dtype'] == np.uint8:
      scale, zero = out['quantization']
      y = (y.astype(np.float32) - zero) * scale
    rows.append(y)
  return np.stack(rows)


def test_every_variant_exports_loads_and_classifies(trained):
  net, images = trained['net'], trained['test_images'][:64]
  keras_probabilities = tf.nn.softmax(net(images, training=False)[0]).numpy()
  tolerance = {'none': 1e-5, 'float16': 1e-2, 'dynamic': 0.1, 'int8': 0.1,
               'int8_uint8': 0.1}
  for name, path in trained['files'].items():
    classifier = tflite.TFLiteClassifier(path)
    assert classifier.image_size == (28, 28) and classifier.channels == 1
    assert classifier.class_names == [f'digit {i}' for i in range(10)]
    assert classifier.metadata['global_step'] == trained['step']
    probabilities = classifier.predict(images)
    assert probabilities.shape == (64, 10), name
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=0.02)
    np.testing.assert_allclose(probabilities, keras_probabilities,
                               atol=tolerance[name], err_msg=name)
    agree = np.mean(probabilities.argmax(-1) ==
                    keras_probabilities.argmax(-1))
    assert agree >= 0.95, (name, agree)
  assert tflite.TFLiteClassifier(
      trained['files']['int8_uint8']).input_dtype == np.uint8


def test_int8_is_full_integer_and_small(trained):
  files = trained['files']
  float_size = os.path.getsize(files['none'])
  for name in ('int8', 'int8_uint8'):
    assert os.path.getsize(files[name]) <= 0.3 * float_size
    interpreter = _raw_interpreter(files[name])
    details = interpreter.get_tensor_details()
    io = {d['index'] for d in interpreter.get_input_details() +
          interpreter.get_output_details()}
    kinds = {np.dtype(d['dtype']).name for d in details}
    assert 'int8' in kinds
    # Full integer: only the float I/O (and none with uint8 I/O) is float.
    floats = {d['index'] for d in details if d['dtype'] == np.float32}
    assert floats <= io, [d['name'] for d in details
                          if d['index'] in floats - io]
  assert 'int8' not in tflite.tensor_types(files['none'])
  assert 'float16' in tflite.tensor_types(files['float16'])


def test_int8_accuracy_is_within_a_point_of_the_float_model(trained):
  images, labels = trained['test_images'], trained['test_labels']
  float_accuracy = digits_lenet.keras_accuracy(trained['net'], images, labels)
  assert float_accuracy > 0.9  # The net learned digits.
  for name in ('int8', 'int8_uint8'):
    probabilities = tflite.TFLiteClassifier(
        trained['files'][name]).predict(images)
    accuracy = float(np.mean(probabilities.argmax(-1) == labels))
    assert abs(accuracy - float_accuracy) <= 0.01, (name, accuracy,
                                                    float_accuracy)


def _run(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run([sys.executable, os.path.join(ROOT, script), *args],
                           cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600, check=False)


def _event_values(logdir):
  values = {}
  for path in glob.glob(os.path.join(str(logdir), 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values[value.tag] = (event.step,
                             float(tf.make_ndarray(value.tensor)))
  return values


def test_eval_script_equals_a_direct_interpreter_loop(trained, tmp_path):
  path = trained['files']['int8_uint8']
  eval_dir = tmp_path / 'eval'
  result = _run('eval_image_classifier.py', f'--tflite_model={path}',
                '--dataset_name=digits', f'--dataset_dir={trained["data"]}',
                '--dataset_split_name=test', f'--eval_dir={eval_dir}',
                '--batch_size=50')
  assert result.returncode == 0, result.stderr[-3000:]

  labels = trained['test_labels']
  probabilities = _direct_probabilities(path, trained['test_images'])
  top5 = np.argsort(-probabilities, axis=-1, kind='stable')[:, :5]
  expected = {
      'Accuracy': np.mean(probabilities.argmax(-1) == labels),
      'Recall_5': np.mean(np.any(top5 == labels[:, None], axis=-1)),
      # Keras's cross-entropy of probabilities (clipped at its epsilon).
      'loss': float(np.mean(keras.losses.sparse_categorical_crossentropy(
          labels, probabilities))),
  }
  printed = re.search(r'eval/Accuracy\[([0-9.]+)\] eval/Recall_5\[([0-9.]+)\] '
                      r'eval/loss\[([0-9.]+)\] \((\d+) examples\)',
                      result.stdout)
  assert printed, result.stdout
  assert int(printed.group(4)) == len(labels)
  summaries = _event_values(eval_dir)
  for tag, value in expected.items():
    step, logged = summaries[f'eval/{tag}']
    assert step == trained['step']
    np.testing.assert_allclose(logged, value, rtol=1e-4, err_msg=tag)
  assert f'(global step {trained["step"]})' in result.stdout
  # Flags that configure a checkpoint's net are refused, not ignored.
  for flag, message in (('--eval_image_size=32', 'takes 28x28 images'),
                        ('--model_options=activation=elu', 'built in')):
    refused = _run('eval_image_classifier.py', f'--tflite_model={path}',
                   '--dataset_name=digits', f'--dataset_dir={trained["data"]}',
                   f'--eval_dir={tmp_path / "refused"}', flag)
    assert refused.returncode == 2 and message in refused.stderr, flag
    assert not os.path.exists(tmp_path / 'refused')


def _write_png(path, image):
  pixels = np.clip(np.round(image * 128.0 + 128.0), 0, 255).astype(np.uint8)
  tf.io.write_file(str(path), tf.io.encode_png(pixels))
  return str(path)


def test_export_and_classify_scripts(trained, tmp_path):
  output = tmp_path / 'lenet_int8.tflite'
  labels_file = os.path.join(trained['data'], 'labels.txt')
  result = _run('export_inference_graph.py', '--model_name=lenet',
                '--num_classes=10',
                f'--checkpoint_path={trained["checkpoint"]}',
                f'--labels_file={labels_file}', '--output_format=tflite',
                f'--output_file={output}', '--quantize=int8',
                '--dataset_name=digits', f'--dataset_dir={trained["data"]}',
                '--num_calibration_images=100')
  assert result.returncode == 0, result.stderr[-3000:]
  metadata = tflite.read_metadata(str(output))
  assert metadata['labels'][7] == 'seven' and metadata['quantize'] == 'int8'
  assert metadata['preprocessing_name'] == 'lenet'

  # lenet's eval preprocessing maps pixels p to (p - 128) / 128 (no resize):
  # PNGs of the preprocessed test images decode back to the same input.
  images = trained['test_images'][:2]
  paths = [_write_png(tmp_path / f'{i}.png', image[..., 0:1])
           for i, image in enumerate(images)]
  result = _run('classify_image.py', f'--tflite_model={output}', *paths)
  assert result.returncode == 0, result.stderr[-3000:]
  probabilities = _direct_probabilities(str(output), images)
  lines = result.stdout.splitlines()
  for i, path in enumerate(paths):
    start = lines.index(path)
    first = re.fullmatch(r'  (.+) \((\d+)\): ([0-9.]+)', lines[start + 1])
    best = int(np.argmax(probabilities[i]))
    assert first.groups()[:2] == (metadata['labels'][best], str(best))
    assert abs(float(first.group(3)) - probabilities[i][best]) < 1e-3


def _foreign_model(tmp_path):
  """A valid TFLite file that is not a classifier: two inputs, a sum."""
  @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)] * 2)
  def add(a, b):
    return a + b
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [add.get_concrete_function()])
  path = tmp_path / 'add.tflite'
  path.write_bytes(converter.convert())
  return str(path)


def test_corrupt_or_foreign_files_give_a_clear_error(trained, tmp_path):
  content = open(trained['files']['int8'], 'rb').read()
  cut = tmp_path / 'cut.tflite'
  cut.write_bytes(content[:len(content) // 3])
  png = tmp_path / 'photo.tflite'
  png.write_bytes(tf.io.encode_png(np.zeros([4, 4, 1], np.uint8)).numpy())
  garbage = tmp_path / 'garbage.tflite'
  garbage.write_bytes(b'\0\0\0\0TFL3' + bytes(range(256)) * 8)
  cases = {str(cut): 'not a loadable TFLite model',
           str(png): 'is not a TFLite model',
           str(garbage): 'not a loadable TFLite model',
           _foreign_model(tmp_path): '2 input'}
  for path, message in cases.items():
    with pytest.raises(tflite.TFLiteModelError, match=message) as e:
      tflite.TFLiteClassifier(path)
    assert path in str(e.value)
  with pytest.raises(FileNotFoundError, match='nothing.tflite'):
    tflite.TFLiteClassifier(str(tmp_path / 'nothing.tflite'))
  with pytest.raises(tflite.TFLiteModelError, match='damaged'):
    tflite.read_metadata(str(cut))
  result = _run('classify_image.py', f'--tflite_model={cut}', str(png))
  assert result.returncode == 1
  assert 'not a loadable TFLite model' in result.stderr
  assert 'Traceback' not in result.stderr


def test_missing_runtime_names_the_extra(monkeypatch):
  real_import = builtins.__import__

  def no_litert(name, *args, **kwargs):
    if name.startswith('ai_edge_litert'):
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', no_litert)
  with pytest.raises(tflite.MissingRuntimeError, match=r'slimkit\[tflite\]'):
    tflite.interpreter_class('litert')
  assert tflite.interpreter_class('auto')[1] == 'tensorflow'
  monkeypatch.delattr(tf.lite, 'Interpreter')
  with pytest.raises(tflite.MissingRuntimeError, match=r'slimkit\[tflite\]'):
    tflite.interpreter_class('auto')


def test_runtimes_agree(trained):
  try:
    tflite.interpreter_class('litert')
  except tflite.MissingRuntimeError:
    pytest.skip('LiteRT (ai-edge-litert) is not installed')
  images = trained['test_images'][:16]
  for path in (trained['files']['none'], trained['files']['int8']):
    litert = tflite.TFLiteClassifier(path, runtime='litert').predict(images)
    ours = tflite.TFLiteClassifier(path, runtime='tensorflow').predict(images)
    np.testing.assert_allclose(litert, ours, atol=1e-5)


def test_convert_refuses_bad_options(trained):
  net = trained['net']
  with pytest.raises(ValueError, match='int4.*none, float16, dynamic, int8'):
    tflite.convert(net, image_size=28, channels=1, quantize='int4')
  with pytest.raises(ValueError, match='needs quantize=.int8'):
    tflite.convert(net, image_size=28, channels=1, quantize='dynamic',
                   io_type='uint8')
  with pytest.raises(ValueError, match='calibration images'):
    tflite.convert(net, image_size=28, channels=1, quantize='int8')


@pytest.mark.parametrize('args,message', [
    (['--quantize=dynamic', '--tflite_io=uint8'], 'needs --quantize=int8'),
    (['--quantize=int8'], 'pass --dataset_name and --dataset_dir'),
    (['--output_format=saved_model', '--output_dir=/tmp/x',
      '--quantize=float16'], 'apply to --output_format=tflite'),
])
def test_export_flags_are_checked_first(trained, tmp_path, args, message):
  output = tmp_path / 'never.tflite'
  result = _run('export_inference_graph.py', '--model_name=lenet',
                '--num_classes=10',
                f'--checkpoint_path={trained["checkpoint"]}',
                '--output_format=tflite', f'--output_file={output}', *args)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  assert not output.exists()
