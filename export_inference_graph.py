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

or with a run of train_image_classifier.py (a directory means its newest
checkpoint), whose `flags.txt` gives what is not typed: the net and its
`--model_options`, the dataset (so the class count, the class names from
its labels.txt, `--labels_offset`), image size, preprocessing and
moving-average decay (`--moving_average_decay=0` declines the averages).
A typed flag wins; one that differs from the run is reported in one line:

  python export_inference_graph.py \
      --checkpoint_path=/tmp/flowers-models/inception_v3 \
      --output_dir=/tmp/flowers_export

Without `--num_classes` the class count is `--dataset_name`'s (default
imagenet, 1001) minus `--labels_offset`, as in TF-Slim's export.

then `python classify_image.py --saved_model_dir=/tmp/flowers_export x.jpg`.

TensorFlow Lite (docs/tflite.md): `--output_format=tflite --output_file=F`
with `--quantize=none|float16|dynamic|int8`. int8 calibrates the activation
ranges on `--num_calibration_images` images of `--dataset_name/--dataset_dir/
--dataset_split_name` (default train) after the net's eval preprocessing:

  python export_inference_graph.py --model_name=lenet \
      --checkpoint_path=/tmp/train --dataset_name=digits \
      --dataset_dir=/tmp/digits --output_format=tflite \
      --output_file=/tmp/lenet_int8.tflite --quantize=int8

A checkpoint trained with `--quantize_delay` exports int8 with the ranges it
learned (no calibration data needed). The file takes the preprocessed
float32 batch (as `predict_images`) and
returns the probabilities; the labels are stored in it. Then
`python classify_image.py --tflite_model=/tmp/lenet_int8.tflite x.png` or
`python eval_image_classifier.py --tflite_model=... --dataset_name=...`.
"""

import os
import types

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_export_flags()
flags.adopt_module_key_flags(slim_flags)


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
  from slimkit.datasets import input_pipeline
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
  from slimkit import checkpoints
  from slimkit import runs
  from slimkit.datasets import dataset_utils
  from slimkit.export import saved_model
  from slimkit.export import tflite
  from slimkit.nets import layers
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory
  if FLAGS.output_format == 'tflite':
    if not FLAGS.checkpoint_path or not FLAGS.output_file:
      raise app.UsageError('--checkpoint_path and --output_file are required '
                           'with --output_format=tflite.')
  elif not FLAGS.checkpoint_path or not FLAGS.output_dir:
    raise app.UsageError('--checkpoint_path and --output_dir are required.')
  # What is not typed comes from the run's flags.txt (the net must be built
  # as it was trained); typed flags win, and differences are reported.
  # Without --num_classes the class count is the dataset's minus
  # --labels_offset, as TF-Slim's export counted it.
  try:
    checkpoint = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    given = {s for s, f in runs.EXPORT_FLAGS.items() if FLAGS[f].present}
    resolved = runs.resolve(
        FLAGS.checkpoint_path,
        {s: FLAGS[f].value if s != 'num_classes' or s in given else None
         for s, f in runs.EXPORT_FLAGS.items()}, given, runs.EXPORT_FLAGS)
    run = resolved.values
    model_name = run['model_name']
    entry = nets_factory.get_entry(model_name)
    num_classes = resolved.num_classes()
  except (ValueError, FileNotFoundError) as e:
    slim_flags.fail(str(e))
  if resolved.taken_line():
    logging.info(resolved.taken_line())
  if resolved.conflict_line():
    logging.warning(resolved.conflict_line())
  if num_classes < 1:
    slim_flags.fail(f'--labels_offset={run["labels_offset"]} leaves no class '
                    f'of --dataset_name={run["dataset_name"]}.')
  options = slim_flags.model_options(types.SimpleNamespace(
      model_name=model_name, model_options=run['model_options']))
  # A checkpoint trained with --quantize_delay brings its own ranges.
  quantization_aware = (FLAGS.output_format == 'tflite' and
                        FLAGS.quantize == 'int8' and
                        checkpoints.has_quant_ranges(checkpoint))
  split = _calibration_split(
      quantization_aware, output_format=FLAGS.output_format,
      quantize=FLAGS.quantize, dataset_name=run['dataset_name'],
      dataset_split_name=FLAGS.dataset_split_name,
      dataset_dir=run['dataset_dir'])
  image_size = run['image_size'] or entry.default_image_size
  try:
    net, channels, report = saved_model.restored_net(
        model_name, FLAGS.checkpoint_path, num_classes=num_classes,
        image_size=image_size, model_options=options,
        channels=FLAGS.channels,
        # 0 declines the averages of a run trained with them.
        use_moving_average=bool(run['moving_average_decay']),
        fake_quant=(layers.FakeQuantization(always=True)
                    if quantization_aware else None))
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
  else:
    labels = saved_model.run_labels(run['dataset_dir'], run['labels_offset'])
    if labels:
      logging.info('Class names from %s/labels.txt', run['dataset_dir'])
  preprocessing_name = run['preprocessing_name'] or model_name
  preprocess = preprocessing_factory.get_preprocessing(preprocessing_name,
                                                       is_training=False)
  described = (f'{model_name} ({image_size}x{image_size}x{channels}, '
               f'{num_classes} classes)')
  if FLAGS.output_format == 'saved_model':
    saved_model.export_saved_model(net, preprocess, FLAGS.output_dir,
                              image_size=image_size, channels=channels,
                              num_classes=num_classes,
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
        io_type=FLAGS.tflite_io, num_classes=num_classes,
        labels_to_names=labels, model_name=model_name,
        preprocessing_name=preprocessing_name,
        global_step=runs.checkpoint_step(checkpoint),
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
