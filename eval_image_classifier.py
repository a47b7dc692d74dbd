r"""Evaluates an image classifier: Accuracy and Recall_5, with TF-Slim's flags.

Usage:

  python3 eval_image_classifier.py --checkpoint_path=/tmp/train \
      --eval_dir=/tmp/eval --dataset_name=imagenet \
      --dataset_split_name=validation --dataset_dir=/data/imagenet \
      --model_name=inception_v3

`--checkpoint_path` is a checkpoint or a directory (its newest checkpoint);
`--model_name` and `--model_options` must be those of training.
Metrics are printed and written as TensorBoard summaries to `--eval_dir`.
`--quantize` evaluates a checkpoint trained with `--quantize_delay` with its
weights and activations fake-quantized to 8 bits (its learned ranges), as
TF-Slim's quantized evaluation did. Watch mode, as TF-Slim's evaluation
loop: with `--eval_interval_secs=N` the script evaluates each new checkpoint
of the `--checkpoint_path` directory as training writes it, until
`--eval_timeout_secs` pass without a new one.

What you ship, evaluated the same way: `--tflite_model=F.tflite` (from
`export_inference_graph.py --output_format=tflite`) runs the TFLite file in
the interpreter on the same preprocessed split, with the same metrics and
summaries (at the global step of the exported checkpoint). Its input size
and channels are the file's; its preprocessing is `--preprocessing_name`, or
the one stored in the file, or that of `--model_name`.
"""

import os

from absl import app
from absl import logging
import tensorflow as tf

from slimkit import flags as slim_flags
from slimkit.datasets import input_pipeline
from slimkit import checkpoints
from slimkit import evaluator
from slimkit.export import tflite
from slimkit.nets import layers
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory

FLAGS = slim_flags.FLAGS
slim_flags.define_eval_flags()


def main(argv):
  if len(argv) > 1:
    slim_flags.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  for warning in slim_flags.obsolete_flag_warnings(FLAGS):
    logging.warning(warning)
  if not FLAGS.dataset_dir:
    slim_flags.fail('You must supply the dataset directory with '
                    '--dataset_dir.')
  split = slim_flags.split_or_fail(
      FLAGS.dataset_name, FLAGS.dataset_split_name, FLAGS.dataset_dir)
  if FLAGS.labels_offset >= split.num_classes:
    slim_flags.fail(f'--labels_offset={FLAGS.labels_offset} leaves no class '
                    f'of the {split.num_classes} of {split.dataset_name}.')
  watching = FLAGS.eval_interval_secs is not None
  if FLAGS.tflite_model:
    _evaluate_tflite(split)
    return
  if watching and not os.path.isdir(FLAGS.checkpoint_path):
    slim_flags.fail('--eval_interval_secs watches a directory: '
                    f'--checkpoint_path={FLAGS.checkpoint_path} is not one.')
  if not watching:
    try:
      checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    except FileNotFoundError as e:
      slim_flags.fail(f'--checkpoint_path: {e}')

  # The net must be built as it was trained.
  model_options = slim_flags.model_options(FLAGS)
  entry = nets_factory.get_entry(FLAGS.model_name)
  image_size = FLAGS.eval_image_size or entry.default_image_size
  num_classes = split.num_classes - FLAGS.labels_offset
  preprocess = preprocessing_factory.get_preprocessing(
      FLAGS.preprocessing_name or FLAGS.model_name, is_training=False,
      use_grayscale=FLAGS.use_grayscale)

  channels = input_pipeline.output_channels(split, FLAGS.use_grayscale)
  quantize = FLAGS.quantize

  def network_fn():
    net = nets_factory.get_network_fn(FLAGS.model_name,
                                      num_classes=num_classes,
                                      is_training=False,
                                      **model_options)
    if quantize:
      # A checkpoint trained with --quantize_delay, as its int8 export runs:
      # the ranges come with the checkpoint (restored after this).
      net(tf.zeros([1, image_size, image_size, channels]), training=False)
      net.enable_fake_quant(layers.FakeQuantization(always=True))
    return net

  dataset_fn, skipped = _eval_input(split, preprocess, image_size)

  options = evaluator.EvalOptions(
      eval_dir=FLAGS.eval_dir, max_num_batches=FLAGS.max_num_batches,
      moving_average_decay=FLAGS.moving_average_decay,
      skipped_records=skipped)
  try:
    if watching:
      results = evaluator.watch(
          network_fn=network_fn, dataset_fn=dataset_fn,
          checkpoint_dir=FLAGS.checkpoint_path, options=options,
          eval_interval_secs=FLAGS.eval_interval_secs,
          eval_timeout_secs=FLAGS.eval_timeout_secs,
          max_number_of_evaluations=FLAGS.max_number_of_evaluations)
    else:
      results = [evaluator.evaluate_checkpoint(
          network_fn=network_fn, dataset_fn=dataset_fn,
          checkpoint_path=FLAGS.checkpoint_path, options=options)]
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    slim_flags.fail_on_input_error(split, e)
  except (ValueError, evaluator.UnreadableCheckpointError) as e:
    slim_flags.fail(str(e), status=1)
  for metrics in results:
    _print_metrics(f'global step {metrics["global_step"]}', metrics)
  print(f'Summaries in {FLAGS.eval_dir}: tensorboard --logdir {FLAGS.eval_dir}',
        flush=True)


def _evaluate_tflite(split):
  """`--tflite_model`: the TFLite file in the interpreter, as a checkpoint."""
  if FLAGS.eval_interval_secs is not None:
    slim_flags.fail('--eval_interval_secs watches checkpoints; a '
                    '--tflite_model is evaluated once.')
  if FLAGS.moving_average_decay is not None or FLAGS.quantize:
    slim_flags.fail('--moving_average_decay and --quantize apply to '
                    'checkpoints; a --tflite_model runs as it was exported.')
  try:
    classifier = tflite.TFLiteClassifier(FLAGS.tflite_model)
  except (tflite.TFLiteModelError, tflite.MissingRuntimeError,
          FileNotFoundError) as e:
    slim_flags.fail(str(e), status=1)
  if FLAGS.model_options:
    slim_flags.fail(f'--model_options={FLAGS.model_options} builds a net from '
                    'a checkpoint; a --tflite_model has its net built in.')
  height, width = classifier.image_size
  if FLAGS.eval_image_size and (FLAGS.eval_image_size, FLAGS.eval_image_size
                                ) != (height, width):
    slim_flags.fail(
        f'--eval_image_size={FLAGS.eval_image_size}: --tflite_model='
        f'{FLAGS.tflite_model} takes {height}x{width} images (leave the flag '
        'out).')
  stored = classifier.metadata or {}
  name = (FLAGS.preprocessing_name or stored.get('preprocessing_name') or
          FLAGS.model_name)
  channels = input_pipeline.output_channels(split, FLAGS.use_grayscale)
  if channels != classifier.channels:
    slim_flags.fail(
        f'--tflite_model={FLAGS.tflite_model} takes {classifier.channels}-'
        f'channel images; {split.dataset_name} has {channels}'
        + (' (pass --use_grayscale)' if classifier.channels == 1 else '')
        + '.')
  num_classes = split.num_classes - FLAGS.labels_offset
  if classifier.num_classes < num_classes:
    slim_flags.fail(
        f'--tflite_model={FLAGS.tflite_model} has {classifier.num_classes} '
        f'classes; {split.dataset_name} has {num_classes} (after '
        f'--labels_offset={FLAGS.labels_offset}).')
  preprocess = preprocessing_factory.get_preprocessing(
      name, is_training=False, use_grayscale=FLAGS.use_grayscale)
  dataset_fn, skipped = _eval_input(split, preprocess, classifier.image_size)

  options = evaluator.EvalOptions(
      eval_dir=FLAGS.eval_dir, max_num_batches=FLAGS.max_num_batches,
      skipped_records=skipped)
  logging.info('Evaluating %s (%s runtime, %s) with %s preprocessing.',
               FLAGS.tflite_model, classifier.runtime,
               stored.get('quantize', 'no slimkit metadata'), name)
  try:
    metrics = evaluator.evaluate_predictions(
        predict_fn=lambda images: tflite.loss_logits(
            classifier.predict(images)),
        dataset_fn=dataset_fn, options=options,
        global_step=stored.get('global_step') or 0,
        source=FLAGS.tflite_model)
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    slim_flags.fail_on_input_error(split, e)
  except ValueError as e:
    slim_flags.fail(str(e), status=1)
  _print_metrics(
      f'{FLAGS.tflite_model} (global step {metrics["global_step"]})', metrics)
  print(f'Summaries in {FLAGS.eval_dir}: tensorboard --logdir {FLAGS.eval_dir}',
        flush=True)


def _eval_input(split, preprocess, image_size):
  """The eval `dataset_fn` of `split`, and the counter of the records
  `--skip_corrupt_records` drops (None without it)."""
  skipped = (tf.Variable(0, dtype=tf.int64, trainable=False)
             if FLAGS.skip_corrupt_records else None)
  skip_options = (dict(skip_corrupt=True, skip_counter=skipped)
                  if skipped is not None else {})

  def dataset_fn():
    return input_pipeline.make_dataset(
        split, preprocess, **skip_options,
        batch_size=FLAGS.batch_size, is_training=False,
        image_size=image_size,
        num_preprocessing_threads=FLAGS.num_preprocessing_threads,
        labels_offset=FLAGS.labels_offset, use_grayscale=FLAGS.use_grayscale)

  return dataset_fn, skipped


def _print_metrics(source, metrics):
  """Prints one evaluation's metrics after `source`."""
  skipped_text = (f', {metrics["skipped_records"]} corrupt records skipped'
                  if 'skipped_records' in metrics else '')
  print(f'{source}: {evaluator.format_metrics(metrics)} '
        f'({metrics["num_examples"]} examples{skipped_text})', flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
