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
"""

from absl import app
from absl import flags

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_classify_flags()
flags.adopt_module_key_flags(slim_flags)


def main(argv):
  # Imported once the flags are parsed: --help and a bad flag are answered
  # before TensorFlow loads.
  # pylint: disable=g-import-not-at-top
  from slimkit.export import saved_model
  from slimkit.export import tflite
  # pylint: enable=g-import-not-at-top
  paths = argv[1:]
  if bool(FLAGS.saved_model_dir) == bool(FLAGS.tflite_model) or not paths:
    raise app.UsageError(
        'Usage: classify_image.py --saved_model_dir=DIR image.jpg [...]\n'
        '   or: classify_image.py --tflite_model=F.tflite image.jpg [...]')
  if FLAGS.tflite_model:
    try:
      results = tflite.classify_files(FLAGS.tflite_model, paths)
    except (tflite.TFLiteModelError, tflite.MissingRuntimeError,
            FileNotFoundError) as e:
      slim_flags.fail(str(e), status=1)
  else:
    results = saved_model.classify_files(FLAGS.saved_model_dir, paths)
  for path, top in zip(paths, results):
    print(path)
    for name, class_id, probability in top:
      print(f'  {name} ({class_id}): {probability:.4f}')


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
