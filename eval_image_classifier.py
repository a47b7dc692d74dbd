r"""Evaluates a trained classifier: Accuracy and Recall_5, with TF-Slim's flags.

Usage:

  python3 eval_image_classifier.py --checkpoint_path=/tmp/train \
      --eval_dir=/tmp/eval --dataset_name=imagenet \
      --dataset_split_name=validation --dataset_dir=/data/imagenet \
      --model_name=inception_v3

`--checkpoint_path` is a checkpoint or a directory (its newest checkpoint).
A checkpoint of a run of train_image_classifier.py brings its settings
(`<train_dir>/flags.txt`): the net, its options, the dataset, labels offset,
image size, preprocessing, grayscale, moving-average decay and quantization
are the run's unless typed, so

  python3 eval_image_classifier.py --checkpoint_path=/tmp/train \
      --dataset_dir=/data/digits

evaluates a lenet/digits run. A typed flag wins; one that differs from the
run is reported in one warning line. `--moving_average_decay=0` evaluates
the weights of a run trained with averages. A checkpoint without flags.txt
(a published TF-Slim one) is evaluated as the flags say.
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
import types

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_eval_flags()
flags.adopt_module_key_flags(slim_flags)


def main(argv):
  # Imported once the flags are parsed and checked: --help and a bad flag
  # are answered before TensorFlow loads.
  import tensorflow as tf

  from slimkit import checkpoints
  from slimkit import evaluator
  from slimkit import runs
  from slimkit.datasets import input_pipeline
  from slimkit.nets import layers
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory

  if len(argv) > 1:
    slim_flags.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  for warning in slim_flags.obsolete_flag_warnings(FLAGS):
    logging.warning(warning)
  watching = FLAGS.eval_interval_secs is not None
  input_options = dict(
      batch_size=FLAGS.batch_size,
      num_preprocessing_threads=FLAGS.num_preprocessing_threads,
      labels_offset=FLAGS.labels_offset, use_grayscale=FLAGS.use_grayscale,
      skip_corrupt_records=FLAGS.skip_corrupt_records)
  if FLAGS.tflite_model:
    if not FLAGS.dataset_dir:
      slim_flags.fail('You must supply the dataset directory with '
                      '--dataset_dir.')
    split = _split_or_fail(FLAGS.dataset_name, FLAGS.dataset_split_name,
                           FLAGS.dataset_dir, FLAGS.labels_offset)
    _evaluate_tflite(
        split, FLAGS.tflite_model, input_options=input_options,
        eval_image_size=FLAGS.eval_image_size,
        preprocessing_name=FLAGS.preprocessing_name,
        model_name=FLAGS.model_name, eval_dir=FLAGS.eval_dir,
        max_num_batches=FLAGS.max_num_batches)
    return
  # What is not typed comes from the run's flags.txt (the net must be built
  # as it was trained); typed flags win, and differences are reported.
  try:
    resolved = runs.resolve(
        FLAGS.checkpoint_path,
        {s: FLAGS[f].value for s, f in runs.EVAL_FLAGS.items()},
        {s for s, f in runs.EVAL_FLAGS.items() if FLAGS[f].present},
        runs.EVAL_FLAGS)
  except ValueError as e:
    slim_flags.fail(f'--checkpoint_path={FLAGS.checkpoint_path}: {e}')
  if resolved.taken_line():
    logging.info(resolved.taken_line())
  if resolved.conflict_line():
    logging.warning(resolved.conflict_line())
  run = resolved.values
  if not run['dataset_dir']:
    slim_flags.fail('You must supply the dataset directory with '
                    '--dataset_dir.')
  split = _split_or_fail(run['dataset_name'], FLAGS.dataset_split_name,
                         run['dataset_dir'], run['labels_offset'])
  input_options.update(labels_offset=run['labels_offset'],
                       use_grayscale=run['use_grayscale'])
  if watching and not os.path.isdir(FLAGS.checkpoint_path):
    slim_flags.fail('--eval_interval_secs watches a directory: '
                    f'--checkpoint_path={FLAGS.checkpoint_path} is not one.')
  if not watching:
    try:
      checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    except FileNotFoundError as e:
      slim_flags.fail(f'--checkpoint_path: {e}')

  model_name = run['model_name']
  model_options = slim_flags.model_options(types.SimpleNamespace(
      model_name=model_name, model_options=run['model_options']))
  entry = nets_factory.get_entry(model_name)
  image_size = run['image_size'] or entry.default_image_size
  num_classes = split.num_classes - run['labels_offset']
  preprocess = preprocessing_factory.get_preprocessing(
      run['preprocessing_name'] or model_name, is_training=False,
      use_grayscale=run['use_grayscale'])

  channels = input_pipeline.output_channels(split, run['use_grayscale'])
  quantize = run['quantize']

  def network_fn():
    net = nets_factory.get_network_fn(model_name,
                                      num_classes=num_classes,
                                      is_training=False,
                                      **model_options)
    if quantize:
      # A checkpoint trained with --quantize_delay, as its int8 export runs:
      # the ranges come with the checkpoint (restored after this).
      net(tf.zeros([1, image_size, image_size, channels]), training=False)
      net.enable_fake_quant(layers.FakeQuantization(always=True))
    return net

  dataset_fn, skipped = _eval_input(split, preprocess, image_size,
                                    **input_options)

  options = evaluator.EvalOptions(
      eval_dir=FLAGS.eval_dir, max_num_batches=FLAGS.max_num_batches,
      # 0 declines the averages of a run trained with them.
      moving_average_decay=run['moving_average_decay'] or None,
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


def _split_or_fail(dataset_name, split_name, dataset_dir, labels_offset):
  split = slim_flags.split_or_fail(dataset_name, split_name, dataset_dir)
  if labels_offset >= split.num_classes:
    slim_flags.fail(f'--labels_offset={labels_offset} leaves no class '
                    f'of the {split.num_classes} of {split.dataset_name}.')
  return split


def _evaluate_tflite(split, tflite_model, *, input_options, eval_image_size,
                     preprocessing_name, model_name, eval_dir,
                     max_num_batches):
  """`--tflite_model`: the TFLite file in the interpreter, as a checkpoint.

  Args:
    split: The `DatasetSplit` to evaluate on.
    tflite_model: `--tflite_model`.
    input_options: `_eval_input`'s keyword arguments.
    eval_image_size: `--eval_image_size` (None: the file's).
    preprocessing_name: `--preprocessing_name` (None: the file's, else
      `model_name`'s).
    model_name: `--model_name`.
    eval_dir: `--eval_dir`.
    max_num_batches: `--max_num_batches`.
  """
  import tensorflow as tf

  from slimkit import evaluator
  from slimkit.datasets import input_pipeline
  from slimkit.export import tflite
  from slimkit.preprocessing import preprocessing_factory
  try:
    classifier = tflite.TFLiteClassifier(tflite_model)
  except (tflite.TFLiteModelError, tflite.MissingRuntimeError,
          FileNotFoundError) as e:
    slim_flags.fail(str(e), status=1)
  height, width = classifier.image_size
  if eval_image_size and (eval_image_size, eval_image_size) != (height,
                                                                width):
    slim_flags.fail(
        f'--eval_image_size={eval_image_size}: --tflite_model='
        f'{tflite_model} takes {height}x{width} images (leave the flag '
        'out).')
  stored = classifier.metadata or {}
  name = (preprocessing_name or stored.get('preprocessing_name') or
          model_name)
  use_grayscale = input_options['use_grayscale']
  channels = input_pipeline.output_channels(split, use_grayscale)
  if channels != classifier.channels:
    slim_flags.fail(
        f'--tflite_model={tflite_model} takes {classifier.channels}-'
        f'channel images; {split.dataset_name} has {channels}'
        + (' (pass --use_grayscale)' if classifier.channels == 1 else '')
        + '.')
  labels_offset = input_options['labels_offset']
  num_classes = split.num_classes - labels_offset
  if classifier.num_classes < num_classes:
    slim_flags.fail(
        f'--tflite_model={tflite_model} has {classifier.num_classes} '
        f'classes; {split.dataset_name} has {num_classes} (after '
        f'--labels_offset={labels_offset}).')
  preprocess = preprocessing_factory.get_preprocessing(
      name, is_training=False, use_grayscale=use_grayscale)
  dataset_fn, skipped = _eval_input(split, preprocess, classifier.image_size,
                                    **input_options)

  options = evaluator.EvalOptions(
      eval_dir=eval_dir, max_num_batches=max_num_batches,
      skipped_records=skipped)
  logging.info('Evaluating %s (%s runtime, %s) with %s preprocessing.',
               tflite_model, classifier.runtime,
               stored.get('quantize', 'no slimkit metadata'), name)
  try:
    metrics = evaluator.evaluate_predictions(
        predict_fn=lambda images: tflite.loss_logits(
            classifier.predict(images)),
        dataset_fn=dataset_fn, options=options,
        global_step=stored.get('global_step') or 0,
        source=tflite_model)
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    slim_flags.fail_on_input_error(split, e)
  except ValueError as e:
    slim_flags.fail(str(e), status=1)
  _print_metrics(
      f'{tflite_model} (global step {metrics["global_step"]})', metrics)
  print(f'Summaries in {eval_dir}: tensorboard --logdir {eval_dir}',
        flush=True)


def _eval_input(split, preprocess, image_size, *, batch_size,
                num_preprocessing_threads, labels_offset, use_grayscale,
                skip_corrupt_records):
  """The eval `dataset_fn` of `split`, and the counter of the records
  `--skip_corrupt_records` drops (None without it)."""
  import tensorflow as tf

  from slimkit.datasets import input_pipeline
  skipped = (tf.Variable(0, dtype=tf.int64, trainable=False)
             if skip_corrupt_records else None)
  skip_options = (dict(skip_corrupt=True, skip_counter=skipped)
                  if skipped is not None else {})

  def dataset_fn():
    return input_pipeline.make_dataset(
        split, preprocess, **skip_options,
        batch_size=batch_size, is_training=False,
        image_size=image_size,
        num_preprocessing_threads=num_preprocessing_threads,
        labels_offset=labels_offset, use_grayscale=use_grayscale)

  return dataset_fn, skipped


def _print_metrics(source, metrics):
  """Prints one evaluation's metrics after `source`."""
  from slimkit import evaluator
  skipped_text = (f', {metrics["skipped_records"]} corrupt records skipped'
                  if 'skipped_records' in metrics else '')
  print(f'{source}: {evaluator.format_metrics(metrics)} '
        f'({metrics["num_examples"]} examples{skipped_text})', flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
