"""TFLite variants: file size, single-image latency, and accuracy drop.

For each variant of `export_inference_graph.py --output_format=tflite`
(`--quantize=none|float16|dynamic|int8`):

  size      mobilenet_v1 at 224 (1001 classes) and lenet at 28 (10 classes):
  latency   the .tflite file's bytes, and the median time of one
            `interpreter.invoke()` on one image (after warm-up), with 1 and
            2 interpreter threads; the Keras float32 net called on one image
            (a compiled tf.function) is the reference row.
  accuracy  lenet trained on the bundled digits (`--steps`, quickstart.sh's
            recipe): test accuracy of the float checkpoint (Keras) and of each
            variant, and the drop. int8 is post-training quantization (PTQ,
            calibrated on `--calibration_images` train images); a second
            run trains the same net, seed and data with `--quantize_delay`
            (quantization-aware training, QAT) and its int8 export, with the
            ranges it learned, is measured too.

mobilenet_v1's weights are random (latency and size do not depend on the
values); its int8 calibration uses random images in [-1, 1].

  python bench/tflite.py                    # about 5 minutes here
  python bench/tflite.py --repeats=200 --models=lenet
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import numpy as np
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import digits
from slimkit.datasets import input_pipeline
from slimkit import checkpoints
from slimkit.deployment import model_deploy
from slimkit.training import optimization
from slimkit.export import tflite
from slimkit.training import trainer
from slimkit.nets import layers
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory

MODELS = {'mobilenet_v1': (224, 3, 1001), 'lenet': (28, 1, 10)}


def _latency_ms(fn, repeats, warmup=5):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000.0 * statistics.median(times)


def _interpreter_latency(path, image, threads, repeats):
  classifier = tflite.TFLiteClassifier(path, num_threads=threads)
  # The raw invoke, without our (de)quantizing, is what a phone pays.
  interpreter = classifier._interpreter
  inp = interpreter.get_input_details()[0]
  x = image.astype(inp['dtype']) if inp['dtype'] != np.float32 else image
  interpreter.set_tensor(inp['index'], x)
  return _latency_ms(interpreter.invoke, repeats), classifier.runtime


def size_and_latency(model_name, work, args, net=None, calibration=None):
  size, channels, num_classes = MODELS[model_name]
  rng = np.random.default_rng(0)
  if net is None:
    net = nets_factory.get_network_fn(model_name, num_classes=num_classes,
                                      is_training=False)
    net(tf.zeros([1, size, size, channels]))
    # Keras 3 draws the same initial values from one unseeded initializer
    # for layers of one shape (MobileNet's Conv2d_7..11_pointwise), and the
    # converter stores identical buffers once: distinct random weights keep
    # the file size that of a trained net.
    for variable in net.weights:
      if variable.path.endswith('weights'):
        std = float(np.std(variable.numpy())) or 0.05
        variable.assign(rng.normal(0.0, std, variable.shape).astype(
            np.float32))
  if calibration is None:
    calibration = rng.uniform(-1, 1, [args.calibration_images, size, size,
                                      channels]).astype(np.float32)
  image = rng.uniform(-1, 1, [1, size, size, channels]).astype(np.float32)
  forward = tf.function(lambda x: net(x, training=False)[0])
  rows = [(model_name, 'Keras float32 (TF)', None,
           _latency_ms(lambda: forward(image).numpy(), args.repeats),
           None, 'tensorflow')]
  files = {}
  for quantize in tflite.QUANTIZE_MODES:
    path = os.path.join(work, f'{model_name}_{quantize}.tflite')
    start = time.time()
    tflite.export_tflite(net, path, image_size=size, channels=channels,
                         quantize=quantize, model_name=model_name,
                         calibration_images=(calibration if quantize == 'int8'
                                             else None))
    convert_sec = time.time() - start
    files[quantize] = path
    one, runtime = _interpreter_latency(path, image, 1, args.repeats)
    two, _ = _interpreter_latency(path, image, 2, args.repeats)
    rows.append((model_name, quantize, os.path.getsize(path), one, two,
                 runtime))
    print(f'  {model_name} {quantize}: {os.path.getsize(path)} bytes, '
          f'{one:.3f} ms (1 thread), {two:.3f} ms (2 threads), converted in '
          f'{convert_sec:.1f} s', flush=True)
  return rows, files


def _digits_images(data, split_name):
  split = dataset_factory.get_split('digits', split_name, data)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  batches = list(input_pipeline.make_dataset(
      split, preprocess, batch_size=500, is_training=False, image_size=28))
  return (np.concatenate([b[0].numpy() for b in batches]),
          np.concatenate([b[1].numpy() for b in batches]))


def train_lenet(data, train_dir, steps, seed, quantize_delay=None):
  tf.keras.utils.set_random_seed(seed)
  split = dataset_factory.get_split('digits', 'train', data)
  preprocess = preprocessing_factory.get_preprocessing('lenet', True)
  result = trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', 10, weight_decay=0.0, is_training=True),
      dataset_fn=lambda ctx: input_pipeline.make_dataset(
          split, preprocess, batch_size=32, is_training=True, image_size=28,
          input_context=ctx, seed=seed, num_readers=1),
      optimizer_fn=lambda lr: optimization.build_optimizer('momentum', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(
          train_dir=train_dir, batch_size=32, max_number_of_steps=steps,
          log_every_n_steps=100, save_summaries_secs=10 ** 6,
          save_interval_secs=10 ** 6, quantize_delay=quantize_delay))
  net = nets_factory.get_network_fn('lenet', 10, is_training=False)
  net(tf.zeros([1, 28, 28, 1]))
  if quantize_delay is not None:
    net.enable_fake_quant(layers.FakeQuantization(always=True))
  checkpoints.restore(net, result.checkpoint)
  return net


def accuracy(work, args):
  data = os.path.join(work, 'digits')
  digits.run(data)
  train_images, _ = _digits_images(data, 'train')
  test_images, test_labels = _digits_images(data, 'test')
  calibration = train_images[:args.calibration_images]
  rows = []
  net = train_lenet(data, os.path.join(work, 'train'), args.steps, args.seed)
  logits, _ = net(test_images, training=False)
  float_accuracy = float(np.mean(np.argmax(logits, -1) == test_labels))
  rows.append(('float checkpoint (Keras)', float_accuracy, 0.0))
  size_rows, files = size_and_latency('lenet', work, args, net=net,
                                      calibration=calibration)
  for quantize, path in files.items():
    probabilities = tflite.TFLiteClassifier(path).predict(test_images)
    acc = float(np.mean(probabilities.argmax(-1) == test_labels))
    label = 'int8 (PTQ)' if quantize == 'int8' else quantize
    rows.append((label, acc, float_accuracy - acc))
  if args.quantize_delay is not None:
    # The same run (seed, data, steps), quantization-aware from the delay.
    qat_net = train_lenet(data, os.path.join(work, 'qat'), args.steps,
                          args.seed, quantize_delay=args.quantize_delay)
    path = os.path.join(work, 'lenet_int8_qat.tflite')
    exported = tflite.export_tflite(qat_net, path, image_size=28, channels=1,
                                    quantize='int8', model_name='lenet')
    probabilities = tflite.TFLiteClassifier(path).predict(test_images)
    acc = float(np.mean(probabilities.argmax(-1) == test_labels))
    logits, _ = qat_net(test_images, training=False)
    simulated = float(np.mean(np.argmax(logits, -1) == test_labels))
    rows.append((f'int8 (QAT, --quantize_delay={args.quantize_delay}; '
                 f'fake-quantized checkpoint {simulated:.4f}, '
                 f'{exported.size_bytes / 1e6:.2f} MB)', acc,
                 float_accuracy - acc))
  return rows, size_rows, len(test_labels)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='mobilenet_v1,lenet')
  parser.add_argument('--repeats', type=int, default=100)
  parser.add_argument('--steps', type=int, default=800,
                      help='Training steps of the digits lenet.')
  parser.add_argument('--calibration_images', type=int, default=500)
  parser.add_argument('--quantize_delay', type=int, default=400,
                      help='QAT run: quantize from this step (-1: no QAT '
                      'run).')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--keep', default=None,
                      help='Keep the files in this directory.')
  args = parser.parse_args()
  if args.quantize_delay is not None and args.quantize_delay < 0:
    args.quantize_delay = None
  work = args.keep or tempfile.mkdtemp(prefix='bench_tflite_')
  os.makedirs(work, exist_ok=True)
  print(f'TensorFlow {tf.__version__}, runtime '
        f'{tflite.interpreter_class()[1]}, load '
        f'{os.getloadavg()[0]:.1f}', flush=True)
  size_rows, accuracy_rows, num_test = [], None, 0
  try:
    for model_name in args.models.split(','):
      if model_name == 'lenet':
        accuracy_rows, rows, num_test = accuracy(work, args)
      else:
        rows, _ = size_and_latency(model_name, work, args)
      size_rows.extend(rows)
  finally:
    if not args.keep:
      shutil.rmtree(work, ignore_errors=True)
  print('\n| model | variant | file size | latency, 1 thread | latency, 2 '
        'threads |\n|---|---|---|---|---|')
  floats = {m: s for m, v, s, *_ in size_rows if v == 'none'}
  for model, variant, size, one, two, _ in size_rows:
    size_text = (f'{size / 1e6:.2f} MB ({size / floats[model]:.2f}x)'
                 if size else '-')
    two_text = f'{two:.3f} ms' if two is not None else '-'
    print(f'| {model} | {variant} | {size_text} | {one:.3f} ms | '
          f'{two_text} |')
  if accuracy_rows:
    print(f'\nlenet on digits ({args.steps} steps, seed {args.seed}), test '
          f'accuracy on {num_test} images:\n\n| variant | accuracy | drop vs '
          'float |\n|---|---|---|')
    for label, acc, drop in accuracy_rows:
      print(f'| {label} | {acc:.4f} | {drop:+.4f} |')
  print(f'load at the end {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
