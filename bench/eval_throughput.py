"""Evaluation images/s of our evaluator beside keras.applications model.predict.

In one run, each measurement in its own subprocess, on the same ImageNet-style
JPEG records (about 500x375, written to a temporary directory) with the net's
evaluation preprocessing, and on one synthetic batch repeated:

  ours    evaluator.evaluate_checkpoint (what eval_image_classifier.py runs:
          checkpoint restore, ordered pass, Accuracy / Recall_5 / loss)
  keras   keras.applications model (MobileNet, ResNet50).predict on the same
          preprocessed batches

A first short pass (tracing) is excluded from the timed one.

  python bench/eval_throughput.py                     # a few minutes here
  python bench/eval_throughput.py --models=mobilenet_v1 --records=1000
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common
from bench import train_throughput

MODELS = train_throughput.MODELS
NUM_CLASSES = train_throughput.NUM_CLASSES
WARMUP_BATCHES = 2


def _dataset_fn(args):
  """`() -> dataset` of (images, labels) as eval_image_classifier.py reads."""
  from slimkit.datasets import dataset_factory
  from slimkit.datasets import input_pipeline
  from slimkit.datasets import synthetic
  from slimkit.preprocessing import preprocessing_factory
  if args.input == 'synthetic':
    split = synthetic.get_split('validation', num_classes=NUM_CLASSES)
    num_batches = -(-args.records // args.batch_size)
    return lambda: split.make_dataset(
        batch_size=args.batch_size, image_size=args.image_size).take(
            num_batches)
  split = dataset_factory.get_split('imagenet', 'validation', args.records_dir)
  preprocess = preprocessing_factory.get_preprocessing(args.model,
                                                       is_training=False)
  return lambda: input_pipeline.make_dataset(
      split, preprocess, batch_size=args.batch_size, is_training=False,
      image_size=args.image_size)


def ours_child(args):
  import tensorflow as tf
  from slimkit import evaluator
  from slimkit.nets import nets_factory
  dataset_fn = _dataset_fn(args)
  network_fn = lambda: nets_factory.get_network_fn(
      args.model, num_classes=NUM_CLASSES, is_training=False)
  # A checkpoint of ours to restore, as after training.
  net = network_fn()
  net(tf.zeros([1, args.image_size, args.image_size, 3]), training=False)
  prefix = os.path.join(args.scratch, f'{args.model}_eval', 'model.ckpt-0')
  tf.train.Checkpoint(
      model_variables={v.path: v for v in net.weights}).write(prefix)
  evaluator.evaluate_checkpoint(
      network_fn=network_fn, dataset_fn=dataset_fn, checkpoint_path=prefix,
      options=evaluator.EvalOptions(max_num_batches=WARMUP_BATCHES), net=net)
  start = time.perf_counter()
  metrics = evaluator.evaluate_checkpoint(
      network_fn=network_fn, dataset_fn=dataset_fn, checkpoint_path=prefix,
      net=net)
  seconds = time.perf_counter() - start
  print(f'RESULT images_per_sec {metrics["num_examples"] / seconds:.3f}')
  print(f'RESULT examples {metrics["num_examples"]}')


def keras_child(args):
  import keras
  model = getattr(keras.applications, MODELS[args.model][0])(
      input_shape=(args.image_size, args.image_size, 3), weights=None,
      classes=NUM_CLASSES, classifier_activation=None)
  dataset_fn = _dataset_fn(args)
  images = lambda: dataset_fn().map(lambda x, y: x)
  model.predict(images().take(WARMUP_BATCHES), verbose=0)
  start = time.perf_counter()
  outputs = model.predict(images(), verbose=0)
  seconds = time.perf_counter() - start
  print(f'RESULT images_per_sec {len(outputs) / seconds:.3f}')
  print(f'RESULT examples {len(outputs)}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='mobilenet_v1,resnet_v1_50')
  parser.add_argument('--records', type=int, default=500,
                      help='Records evaluated per run.')
  parser.add_argument('--batch_size', type=int, default=50)
  parser.add_argument('--image_size', type=int, default=None,
                      help='Override every model\'s image size.')
  parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--model', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--input', default='records', help=argparse.SUPPRESS)
  parser.add_argument('--records_dir', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--scratch', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    {'ours': ours_child, 'keras': keras_child}[args.child](args)
    return

  models = [m.strip() for m in args.models.split(',') if m.strip()]
  for model in models:
    if model not in MODELS:
      parser.error(f'unknown model {model!r}; valid: {", ".join(MODELS)}')
  print(f'machine: {common.machine()}', flush=True)
  print(f'load average before: {common.load_average():.2f}; {args.records} '
        f'images per run, batch {args.batch_size}', flush=True)
  scratch = tempfile.mkdtemp(prefix='eval_throughput_')
  rows = []
  try:
    records_dir = os.path.join(scratch, 'records')
    os.makedirs(records_dir)
    train_throughput.write_records(records_dir, args.records, 'validation',
                                   num_files=4)
    for model in models:
      size = args.image_size or MODELS[model][1]
      rates = {}
      for kind in ('ours', 'keras'):
        for source in ('synthetic', 'records'):
          argv = [sys.executable, os.path.abspath(__file__),
                  f'--child={kind}', f'--model={model}',
                  f'--input={source}', f'--records={args.records}',
                  f'--batch_size={args.batch_size}', f'--image_size={size}',
                  f'--records_dir={records_dir}', f'--scratch={scratch}']
          result = common.run(f'{model} {kind} {source}', argv,
                              batch_size=args.batch_size, warmup=0)
          common.check(result)
          rate = result.values['images_per_sec']
          rates[(kind, source)] = rate
          print(f'{result.name:36s} {rate:7.1f} images/s  (peak RSS '
                f'{result.peak_rss_mb:.0f} MB; load '
                f'{common.load_average():.2f})', flush=True)
      rows.append((model, size, rates))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  print('\n| model | size | batch | Keras predict img/s (synthetic / records) '
        '| ours eval img/s (synthetic / records) | ours / Keras (synthetic / '
        'records) |')
  print('|---|---|---|---|---|---|')
  for model, size, r in rows:
    print(f'| {model} | {size} | {args.batch_size} | '
          f'{r["keras", "synthetic"]:.1f} / {r["keras", "records"]:.1f} | '
          f'{r["ours", "synthetic"]:.1f} / {r["ours", "records"]:.1f} | '
          f'{r["ours", "synthetic"] / r["keras", "synthetic"]:.2f} / '
          f'{r["ours", "records"] / r["keras", "records"]:.2f} |')
  print(f'\nload average after: {common.load_average():.2f}')


if __name__ == '__main__':
  main()
