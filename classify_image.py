r"""Prints the top-5 classes of image files with an exported SavedModel.

Usage:

  python classify_image.py --saved_model_dir=/tmp/inception_v3_export \
      cat.jpg dog.png

prints, per image:

  cat.jpg
    tabby, tabby cat (282): 0.6214
    ...

The SavedModel is what `export_inference_graph.py` writes; images are JPEG or
PNG files of any size.
"""

from absl import app
from absl import flags

from slimkit.deployment import export

FLAGS = flags.FLAGS

flags.DEFINE_string('saved_model_dir', None, 'A SavedModel written by '
                    'export_inference_graph.py.')


def main(argv):
  paths = argv[1:]
  if not FLAGS.saved_model_dir or not paths:
    raise app.UsageError(
        'Usage: classify_image.py --saved_model_dir=DIR image.jpg [...]')
  for path, top in zip(paths, export.classify_files(FLAGS.saved_model_dir,
                                                    paths)):
    print(path)
    for name, class_id, probability in top:
      print(f'  {name} ({class_id}): {probability:.4f}')


if __name__ == '__main__':
  app.run(main)
