r"""Exports a net and its checkpoint as a SavedModel that classifies images.

The SavedModel's `serving_default` signature takes encoded JPEG or PNG bytes
(a `[batch]` string tensor named `images`), runs the net's eval preprocessing
and returns `probabilities`, `top_5_ids` and `top_5_names`; `predict_images`
takes an already preprocessed float32 batch.

Usage, with a published TF-Slim checkpoint:

  python export_inference_graph.py \
      --model_name=inception_v3 \
      --checkpoint_path=/tmp/checkpoints/inception_v3.ckpt \
      --labels_file=/tmp/imagenet/labels.txt \
      --output_dir=/tmp/inception_v3_export

or with a fine-tuned run (a directory means its newest checkpoint; a net
trained with `--model_options` is exported with the same):

  python export_inference_graph.py --model_name=inception_v3 \
      --num_classes=5 --checkpoint_path=/tmp/flowers-models/inception_v3 \
      --labels_file=/tmp/flowers/labels.txt --moving_average_decay=0.9999 \
      --output_dir=/tmp/flowers_export

then `python classify_image.py --saved_model_dir=/tmp/flowers_export x.jpg`.

TensorFlow Lite (docs/tflite.md): `--output_format=tflite --output_file=F`
with `--quantize=none|float16|dynamic|int8`. int8 calibrates the activation
ranges on `--num_calibration_images` images of `--dataset_name/--dataset_dir/
--dataset_split_name` (default train) after the net's eval preprocessing:

  python export_inference_graph.py --model_name=lenet --num_classes=10 \
      --checkpoint_path=/tmp/train --labels_file=/tmp/digits/labels.txt \
      --output_format=tflite --output_file=/tmp/lenet_int8.tflite \
      --quantize=int8 --dataset_name=digits --dataset_dir=/tmp/digits

A checkpoint trained with `--quantize_delay` exports int8 with the ranges it
learned (no calibration data needed). The file takes the preprocessed
float32 batch (as `predict_images`) and
returns the probabilities; the labels are stored in it. Then
`python classify_image.py --tflite_model=/tmp/lenet_int8.tflite x.png` or
`python eval_image_classifier.py --tflite_model=... --dataset_name=...`.
"""

import os

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_export_flags()
flags.adopt_module_key_flags(slim_flags)


def _build(model_name, num_classes, image_size, channels, options):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from slimkit.nets import nets_factory  # pylint: disable=g-import-not-at-top
  net = nets_factory.get_network_fn(model_name, num_classes=num_classes,
                                    is_training=False, **options)
  net(tf.zeros([1, image_size, image_size, channels]))
  return net


def _calibration_split(quantization_aware, *, output_format, quantize,
                       dataset_name, dataset_split_name, dataset_dir):
  """The split int8 calibrates on, checked before anything is computed."""
  if output_format != 'tflite' or quantize != 'int8':
    return None
  if quantization_aware and not dataset_dir:
    return None  # Unless a net has tensors outside its layers (it says so).
  if not dataset_dir:
    slim_flags.fail('--quantize=int8 calibrates the activation ranges on '
                    'images: pass --dataset_name and --dataset_dir (and '
                    '--dataset_split_name, default train).')
  return slim_flags.split_or_fail(dataset_name, dataset_split_name,
                                  dataset_dir)


def _calibration_images(split, preprocess, image_size, channels, *,
                        num_images, num_preprocessing_threads):
  from slimkit.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  dataset = input_pipeline.make_dataset(
      split, preprocess, batch_size=1, is_training=False,
      image_size=image_size,
      num_preprocessing_threads=num_preprocessing_threads,
      use_grayscale=channels == 1 and
      input_pipeline.output_channels(split) != 1)
  for images, _ in dataset.take(num_images):
    yield images.numpy()


def main(argv):
  del argv
  # Imported once the flags are parsed and checked: --help and a bad flag
  # are answered before TensorFlow loads.
  # pylint: disable=g-import-not-at-top
  from slimkit import checkpoints
  from slimkit import evaluator
  from slimkit.datasets import dataset_utils
  from slimkit.export import saved_model
  from slimkit.export import tflite
  from slimkit.nets import layers
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory
  # pylint: enable=g-import-not-at-top
  if FLAGS.output_format == 'tflite':
    if not FLAGS.checkpoint_path or not FLAGS.output_file:
      raise app.UsageError('--checkpoint_path and --output_file are required '
                           'with --output_format=tflite.')
  elif not FLAGS.checkpoint_path or not FLAGS.output_dir:
    raise app.UsageError('--checkpoint_path and --output_dir are required.')
  try:
    entry = nets_factory.get_entry(FLAGS.model_name)
    checkpoint = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
  except (ValueError, FileNotFoundError) as e:
    slim_flags.fail(str(e))
  # The net must be built as it was trained.
  options = slim_flags.model_options(FLAGS)
  # A checkpoint trained with --quantize_delay brings its own ranges.
  quantization_aware = (FLAGS.output_format == 'tflite' and
                        FLAGS.quantize == 'int8' and
                        checkpoints.has_quant_ranges(checkpoint))
  split = _calibration_split(
      quantization_aware, output_format=FLAGS.output_format,
      quantize=FLAGS.quantize, dataset_name=FLAGS.dataset_name,
      dataset_split_name=FLAGS.dataset_split_name,
      dataset_dir=FLAGS.dataset_dir)
  image_size = FLAGS.image_size or entry.default_image_size
  channels = FLAGS.channels or 3
  net = _build(FLAGS.model_name, FLAGS.num_classes, image_size, channels,
               options)
  try:
    if FLAGS.channels is None:
      stored = checkpoints.input_channels(net, FLAGS.checkpoint_path)
      if stored is not None and stored != channels:
        # LeNet on MNIST takes grayscale images: follow the checkpoint.
        channels = stored
        net = _build(FLAGS.model_name, FLAGS.num_classes, image_size,
                     channels, options)
    if quantization_aware:
      net.enable_fake_quant(layers.FakeQuantization(always=True))
    report = checkpoints.restore(
        net, FLAGS.checkpoint_path,
        use_moving_average=FLAGS.moving_average_decay is not None)
  except checkpoints.CheckpointError as e:
    slim_flags.fail(f'{e}\nExport restores every variable: pass the '
                    'checkpoint\'s --model_name, --num_classes and '
                    '--model_options.')
  print(report.summary())

  labels = None
  if FLAGS.labels_file:
    labels = dataset_utils.read_label_file(
        os.path.dirname(FLAGS.labels_file) or '.',
        os.path.basename(FLAGS.labels_file))
  preprocessing_name = FLAGS.preprocessing_name or FLAGS.model_name
  preprocess = preprocessing_factory.get_preprocessing(preprocessing_name,
                                                       is_training=False)
  described = (f'{FLAGS.model_name} ({image_size}x{image_size}x{channels}, '
               f'{FLAGS.num_classes} classes)')
  if FLAGS.output_format == 'saved_model':
    saved_model.export_saved_model(net, preprocess, FLAGS.output_dir,
                              image_size=image_size, channels=channels,
                              num_classes=FLAGS.num_classes,
                              labels_to_names=labels)
    logging.info('Wrote the SavedModel to %s', FLAGS.output_dir)
    print(f'Exported {described} to {FLAGS.output_dir}')
    return
  calibration = None
  if split is not None:
    calibration = _calibration_images(
        split, preprocess, image_size, channels,
        num_images=FLAGS.num_calibration_images,
        num_preprocessing_threads=FLAGS.num_preprocessing_threads)
  try:
    exported = tflite.export_tflite(
        net, FLAGS.output_file, image_size=image_size, channels=channels,
        quantize=FLAGS.quantize, calibration_images=calibration,
        io_type=FLAGS.tflite_io, num_classes=FLAGS.num_classes,
        labels_to_names=labels, model_name=FLAGS.model_name,
        preprocessing_name=preprocessing_name,
        global_step=evaluator.checkpoint_step(checkpoint),
        calibration_count=split and min(FLAGS.num_calibration_images,
                                        split.num_samples))
  except (ValueError, OSError) as e:
    slim_flags.fail(str(e), status=1)
  print(f'Exported {described} as TFLite ({FLAGS.quantize}'
        f'{", quantization-aware ranges" if quantization_aware else ""}'
        f'{", uint8 I/O" if FLAGS.tflite_io == "uint8" else ""}) to '
        f'{exported.path}: {exported.size_bytes} bytes')


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
