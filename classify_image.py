r"""Prints the top-5 classes of image files with an exported SavedModel.

Usage:

  python classify_image.py --saved_model_dir=/tmp/inception_v3_export \
      cat.jpg dog.png

prints, per image:

  cat.jpg
    tabby, tabby cat (282): 0.6214
    ...

The SavedModel is what `export_inference_graph.py` writes; images are JPEG or
PNG files of any size. With `--tflite_model=F.tflite` (written by
`export_inference_graph.py --output_format=tflite`) the images are decoded and
preprocessed as the file's metadata says, and classified by the TFLite
interpreter:

  python classify_image.py --tflite_model=/tmp/lenet_int8.tflite digit.png

With `--checkpoint_path` (a run of train_image_classifier.py, or one of its
checkpoints) the net is built and restored as the run's `flags.txt` says,
without an export; the class names come from its dataset's labels.txt.

A missing file or one that is not an image is named on stderr with the
reason; the other images are still classified, and the exit status is 1 at
the end when any file failed.
"""

import sys
import types

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_classify_flags()
flags.adopt_module_key_flags(slim_flags)

_USAGE = ('Usage: classify_image.py --saved_model_dir=DIR image.jpg [...]\n'
          '   or: classify_image.py --tflite_model=F.tflite image.jpg [...]\n'
          '   or: classify_image.py --checkpoint_path=TRAIN_DIR image.jpg '
          '[...]')


def main(argv):
  paths = argv[1:]
  sources = [name for name in ('saved_model_dir', 'tflite_model',
                               'checkpoint_path') if FLAGS[name].value]
  if len(sources) != 1 or not paths:
    raise app.UsageError(_USAGE)
  # Imported once the flags are parsed: --help, a bad flag and a usage
  # error are answered before TensorFlow loads.
  import tensorflow as tf
  from slimkit.export import saved_model
  from slimkit.export import tflite
  try:
    if FLAGS.tflite_model:
      classify = tflite.file_classifier(FLAGS.tflite_model)
    elif FLAGS.saved_model_dir:
      classify = saved_model.saved_model_classifier(FLAGS.saved_model_dir)
    else:
      classify = _checkpoint_classifier(FLAGS.checkpoint_path)
  except (tflite.TFLiteModelError, tflite.MissingRuntimeError, OSError,
          ValueError, tf.errors.OpError) as e:
    slim_flags.fail(str(e).strip().splitlines()[0], status=1)
  failed = 0
  # Each bad file is named with its reason and the others still classified.
  for item in saved_model.classify_each(classify, paths):
    if item.error:
      failed += 1
      sys.stderr.write(f'{sys.argv[0]}: error: {item.error}\n')
      continue
    print(item.path, flush=True)
    for name, class_id, probability in item.top:
      print(f'  {name} ({class_id}): {probability:.4f}', flush=True)
  if failed:
    sys.stderr.write(f'{sys.argv[0]}: {failed} of {len(paths)} files could '
                     'not be classified.\n')
    sys.exit(1)


def _checkpoint_classifier(checkpoint_path):
  """`fn(bytes) -> top 5` of a run's checkpoint, built from its flags.txt."""
  from slimkit import checkpoints
  from slimkit import runs
  from slimkit.export import saved_model
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory
  checkpoint = checkpoints.resolve_checkpoint(checkpoint_path)
  run = runs.read_settings(checkpoint)
  if run is None:
    raise ValueError(
        f'--checkpoint_path={checkpoint_path}: no {runs.FLAGS_FILE} beside '
        'it, so its net is unknown (not a train_image_classifier.py run); '
        'export it with export_inference_graph.py and pass '
        '--saved_model_dir.')
  options = slim_flags.model_options(types.SimpleNamespace(
      model_name=run.model_name, model_options=run.model_options))
  image_size = (run.image_size or
                nets_factory.get_entry(run.model_name).default_image_size)
  try:
    net, channels, _ = saved_model.restored_net(
        run.model_name, checkpoint, num_classes=run.num_classes,
        image_size=image_size, model_options=options,
        use_moving_average=bool(run.moving_average_decay))
  except checkpoints.CheckpointError as e:
    raise ValueError(f'{checkpoint} does not fit its run\'s '
                     f'{runs.FLAGS_FILE}: {e}') from None
  logging.info('Classifying with %s: %s (%dx%dx%d, %d classes) from %s',
               checkpoint, run.model_name, image_size, image_size, channels,
               run.num_classes, runs.FLAGS_FILE)
  module = saved_model.ClassifierModule(
      net, preprocessing_factory.get_preprocessing(
          run.preprocessing_name or run.model_name, is_training=False),
      image_size=image_size, channels=channels, num_classes=run.num_classes,
      labels_to_names=saved_model.run_labels(run.dataset_dir,
                                             run.labels_offset))
  return saved_model.module_classifier(module)


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
