"""Converts ImageNet (ILSVRC2012) from its raw layout to TF-Slim's TFRecords.

Input, as the official archives extract:

  <imagenet_dir>/train/<synset>/*.JPEG   (train/n01440764/n01440764_10026.JPEG)
  <imagenet_dir>/validation/*.JPEG       (ILSVRC2012_val_00000001.JPEG)
    (or val/; if already sorted into validation/<synset>/*.JPEG folders, no
    ground truth file is needed)
  a validation ground truth, one line per validation image in sorted file
    order: either a synset (`imagenet_2012_validation_synset_labels.txt`) or
    the devkit's ILSVRC2012_ID (`ILSVRC2012_validation_ground_truth.txt`) with
    the devkit's synset map (`meta.mat`, or a text file of `<id> <synset>`
    lines or one synset per line in id order);
  optional: the synset list (`imagenet_lsvrc_2015_synsets.txt`, one a line;
    default: the folders of train/), the human-readable names
    (`imagenet_metadata.txt`, `n01440764<TAB>tench, Tinca tinca`), and
    bounding boxes: a directory of the devkit's XML files, or a CSV of
    `filename,xmin,ymin,xmax,ymax` in [0, 1] as TF-Slim's
    process_bounding_boxes.py writes (`imagenet_2012_bounding_boxes.csv`).

Files with the default names above are found in <imagenet_dir> without flags.

Output (TF-Slim's names and schema, read by `datasets/imagenet.py`):
`train-00000-of-01024` ... `validation-00000-of-00128` ..., `labels.txt`
(`0:background`, then `1:tench, Tinca tinca` ...), and the conversion report
(see `sharded_writer.write_report`). Each record holds the image as an RGB
JPEG (CMYK, grayscale and PNG data are re-encoded, undecodable files skipped
and reported), `image/class/label` = 1 + the synset's index in the sorted
synset list (0 is the background class), `image/class/synset`,
`image/class/text`, the boxes as normalised `image/object/bbox/{xmin,ymin,
xmax,ymax}` with `image/object/bbox/label`, `image/filename`,
`image/colorspace` b'RGB', `image/channels` 3 and `image/format` b'JPEG'.

Both splits are shuffled with a fixed seed (TF-Slim's 12345) so that every
shard mixes classes; the shuffle is deterministic, which a resumed run needs.

Also runs as TF-Slim's build_imagenet_data.py did:

  python -m slimkit.datasets.convert_imagenet --train_directory=... \\
      --validation_directory=... --output_directory=... --labels_file=...
"""

import csv
import dataclasses
import functools
import os
import random
import re
import sys
import xml.etree.ElementTree as ElementTree
from typing import Tuple

import tensorflow as tf

from slimkit.datasets import dataset_utils
from slimkit.datasets import image_coding
from slimkit.datasets import sharded_writer

TRAIN_SHARDS = 1024
VALIDATION_SHARDS = 128
SHUFFLE_SEED = 12345
LABELS_OFFSET = 1  # Label 0 is the background class.

# Default file names looked for in imagenet_dir, as TF-Slim and the devkit
# name them.
_DEFAULT_FILES = {
    'labels_file': ('imagenet_lsvrc_2015_synsets.txt',),
    'imagenet_metadata_file': ('imagenet_metadata.txt',),
    'validation_labels_file': ('imagenet_2012_validation_synset_labels.txt',
                               'ILSVRC2012_validation_ground_truth.txt'),
    'synset_map_file': ('meta.mat',),
    'bounding_box_file': ('imagenet_2012_bounding_boxes.csv', 'bounding_boxes'),
}

_SYNSET_RE = re.compile(r'^n\d{8}$')


@dataclasses.dataclass(frozen=True)
class ImageNetItem:
  """One image to convert.

  Attributes:
    path: The image file.
    label: 1-based class id.
    synset: WordNet id ('n01440764').
    text: Human-readable name ('tench, Tinca tinca').
    boxes: `(xmin, ymin, xmax, ymax)` tuples normalised to [0, 1].
  """
  path: str
  label: int
  synset: str
  text: str
  boxes: Tuple[Tuple[float, float, float, float], ...] = ()


def encode_item(item, quality=100):
  """Returns the `sharded_writer.Encoded` record of one `ImageNetItem`.

  Args:
    item: An `ImageNetItem`.
    quality: JPEG quality of re-encoded (CMYK, grayscale, PNG) images.

  Raises:
    sharded_writer.SkipItem: when the file cannot be read or decoded.
  """
  try:
    image = image_coding.read_rgb_jpeg(item.path, quality=quality)
  except image_coding.UndecodableImageError as e:
    raise sharded_writer.SkipItem(item.path, str(e)) from None
  xmin, ymin, xmax, ymax = ([b[k] for b in item.boxes] for k in range(4))
  feature = {
      'image/height': dataset_utils.int64_feature(image.height),
      'image/width': dataset_utils.int64_feature(image.width),
      'image/colorspace': dataset_utils.bytes_feature(b'RGB'),
      'image/channels': dataset_utils.int64_feature(3),
      'image/class/label': dataset_utils.int64_feature(item.label),
      'image/class/synset': dataset_utils.bytes_feature(item.synset),
      'image/class/text': dataset_utils.bytes_feature(item.text),
      'image/object/bbox/xmin': dataset_utils.float_feature(xmin),
      'image/object/bbox/ymin': dataset_utils.float_feature(ymin),
      'image/object/bbox/xmax': dataset_utils.float_feature(xmax),
      'image/object/bbox/ymax': dataset_utils.float_feature(ymax),
      'image/object/bbox/label': dataset_utils.int64_feature(
          [item.label] * len(item.boxes)),
      'image/format': dataset_utils.bytes_feature(b'JPEG'),
      'image/filename': dataset_utils.bytes_feature(
          os.path.basename(item.path)),
      'image/encoded': dataset_utils.bytes_feature(image.data),
  }
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  # Deterministic: the same inputs give byte-identical shards in any process
  # (the feature map's order otherwise follows the process's hash seed).
  record = example.SerializeToString(deterministic=True)
  return sharded_writer.Encoded(record, item.path, image.converted_from)


# ---------------------------------------------------------------------------
# Reading the metadata files.


def _lines(path):
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


def read_synsets(path):
  """Reads a synset list (one WordNet id a line) and returns it sorted.

  Raises:
    ValueError: naming the file and line of an entry that is not a synset.
  """
  synsets = _lines(path)
  for number, synset in enumerate(synsets, start=1):
    if not _SYNSET_RE.match(synset):
      raise ValueError(f'{path}:{number}: expected a synset like n01440764, '
                       f'got {synset!r}.')
  if len(set(synsets)) != len(synsets):
    raise ValueError(f'{path} lists a synset twice.')
  return sorted(synsets)


def read_metadata(path):
  """Reads `synset<TAB>text` lines (imagenet_metadata.txt) into a dict."""
  texts = {}
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip('\r\n')
      if not line.strip():
        continue
      synset, sep, text = line.partition('\t')
      if not sep or not _SYNSET_RE.match(synset.strip()):
        raise ValueError(f'{path}:{number}: expected "synset<TAB>text", got '
                         f'{line!r}.')
      texts[synset.strip()] = text.strip()
  return texts


def read_synset_map(path):
  """Reads the devkit's ILSVRC2012_ID -> synset map.

  Args:
    path: The devkit's `meta.mat` (needs scipy), or a text file of
      `<id> <synset>` lines, or of one synset a line in id order (line 1 is
      id 1).

  Returns:
    `(ids_to_synsets, synsets_to_texts)`; the second is empty for text files.
  """
  if path.endswith('.mat'):
    try:
      import scipy.io
    except ImportError:
      raise ImportError(
          f'Reading {path} needs scipy (pip install scipy), or give the map '
          f'as a text file of "<id> <synset>" lines.') from None
    meta = scipy.io.loadmat(path, squeeze_me=True)['synsets']
    ids, texts = {}, {}
    for entry in meta:
      ids[int(entry['ILSVRC2012_ID'])] = str(entry['WNID'])
      texts[str(entry['WNID'])] = str(entry['words'])
    return ids, texts
  ids = {}
  for number, line in enumerate(_lines(path), start=1):
    fields = line.split()
    if len(fields) == 1 and _SYNSET_RE.match(fields[0]):
      ids[number] = fields[0]
    elif (len(fields) == 2 and fields[0].isdigit() and
          _SYNSET_RE.match(fields[1])):
      ids[int(fields[0])] = fields[1]
    else:
      raise ValueError(f'{path}:{number}: expected "<id> <synset>" or a '
                       f'synset, got {line!r}.')
  return ids, {}


def read_validation_labels(path, synset_map_file=None):
  """Reads the validation ground truth: one synset per image, in file order.

  Args:
    path: One synset a line, or the devkit's ILSVRC2012_IDs (integers).
    synset_map_file: The id -> synset map, needed for integer ids.

  Returns:
    `(synsets, synsets_to_texts)`: the list of synsets, and the texts the map
    file carried (may be empty).

  Raises:
    ValueError: for ids without a map, an unknown id, or a line that is
      neither a synset nor an id.
  """
  entries = _lines(path)
  if all(_SYNSET_RE.match(e) for e in entries):
    return entries, {}
  if not all(e.isdigit() for e in entries):
    bad = next(e for e in entries if not (e.isdigit() or _SYNSET_RE.match(e)))
    raise ValueError(f'{path}: expected one synset or one ILSVRC2012_ID a '
                     f'line, got {bad!r}.')
  if synset_map_file is None:
    raise ValueError(
        f'{path} holds ILSVRC2012_IDs; give the devkit\'s synset map '
        f'(meta.mat or a "<id> <synset>" text file) as synset_map_file.')
  ids, texts = read_synset_map(synset_map_file)
  unknown = sorted({int(e) for e in entries} - set(ids))
  if unknown:
    raise ValueError(f'{path}: ids {unknown[:10]} are not in '
                     f'{synset_map_file}.')
  return [ids[int(e)] for e in entries], texts


def _normalised_box(xmin, ymin, xmax, ymax):
  clip = lambda v: min(max(float(v), 0.0), 1.0)
  xmin, ymin, xmax, ymax = clip(xmin), clip(ymin), clip(xmax), clip(ymax)
  return (min(xmin, xmax), min(ymin, ymax), max(xmin, xmax), max(ymin, ymax))


def _stem(filename):
  return os.path.splitext(os.path.basename(filename))[0]


def read_bounding_boxes(path):
  """Reads bounding boxes, keyed by image file name without extension.

  Args:
    path: A CSV file of `filename,xmin,ymin,xmax,ymax` (normalised), or a
      directory searched recursively for the devkit's XML files (pixel
      coordinates, normalised here by the `<size>` they state).

  Returns:
    A dict from file stem ('n01440764_10026') to a list of
    `(synset or None, (xmin, ymin, xmax, ymax))`, coordinates clipped to
    [0, 1].
  """
  boxes = {}
  if os.path.isdir(path):
    for directory, _, files in os.walk(path):
      for name in sorted(files):
        if name.lower().endswith('.xml'):
          xml_path = os.path.join(directory, name)
          boxes.setdefault(_stem(name), []).extend(_read_xml_boxes(xml_path))
    return boxes
  with open(path, newline='', encoding='utf-8') as f:
    for number, row in enumerate(csv.reader(f), start=1):
      if not row:
        continue
      try:
        coords = [float(v) for v in row[1:5]]
      except ValueError:
        if number == 1:
          continue  # A header line.
        coords = []
      if len(coords) != 4:
        raise ValueError(f'{path}:{number}: expected '
                         f'"filename,xmin,ymin,xmax,ymax", got {row!r}.')
      boxes.setdefault(_stem(row[0]), []).append(
          (None, _normalised_box(*coords)))
  return boxes


def _read_xml_boxes(path):
  root = ElementTree.parse(path).getroot()
  size = root.find('size')
  width = float(size.findtext('width'))
  height = float(size.findtext('height'))
  result = []
  for obj in root.iter('object'):
    box = obj.find('bndbox')
    if box is None:
      continue
    result.append((obj.findtext('name'), _normalised_box(
        float(box.findtext('xmin')) / width,
        float(box.findtext('ymin')) / height,
        float(box.findtext('xmax')) / width,
        float(box.findtext('ymax')) / height)))
  return result


def _boxes_for(boxes, path, synset):
  # A box labelled with another synset belongs to another object in the
  # photo; only the image's own class is kept (CSV boxes carry no synset).
  return tuple(box for name, box in boxes.get(_stem(path), ())
               if name is None or name == synset)


def _image_files(directory):
  # Every visible file: one that turns out not to be an image is reported.
  return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                if not name.startswith('.') and
                os.path.isfile(os.path.join(directory, name)))


# ---------------------------------------------------------------------------
# Listing the items of each split.


def _class_folders(directory):
  return sorted(name for name in os.listdir(directory)
                if not name.startswith('.') and
                os.path.isdir(os.path.join(directory, name)))


def find_train_items(train_directory, synsets, texts, boxes):
  """Lists images in `<synset>/` folders as `ImageNetItem`s, sorted by path.

  Used for train/, and for a validation folder already sorted into class
  folders (as many ImageNet preparation scripts leave it).

  Raises:
    ValueError: for a class folder whose synset is not in `synsets`.
  """
  folders = _class_folders(train_directory)
  unknown = sorted(set(folders) - set(synsets))
  if unknown:
    raise ValueError(
        f'{train_directory} has class folders {unknown[:10]} that are not in '
        f'the synset list ({len(synsets)} synsets).')
  labels = {s: i + LABELS_OFFSET for i, s in enumerate(synsets)}
  items = []
  for synset in folders:
    for path in _image_files(os.path.join(train_directory, synset)):
      items.append(ImageNetItem(path, labels[synset], synset,
                                texts.get(synset, synset),
                                _boxes_for(boxes, path, synset)))
  return items


def find_validation_items(validation_directory, validation_synsets, synsets,
                          texts, boxes):
  """Lists the validation images as `ImageNetItem`s, in sorted file order.

  Raises:
    ValueError: when the ground truth has a different number of entries than
      there are images, or names a synset that is not in `synsets`.
  """
  paths = _image_files(validation_directory)
  if len(paths) != len(validation_synsets):
    raise ValueError(
        f'{validation_directory} holds {len(paths)} files but the validation '
        f'ground truth has {len(validation_synsets)} entries.')
  labels = {s: i + LABELS_OFFSET for i, s in enumerate(synsets)}
  unknown = sorted(set(validation_synsets) - set(labels))
  if unknown:
    raise ValueError(f'The validation ground truth names synsets '
                     f'{unknown[:10]} that are not in the synset list.')
  return [ImageNetItem(path, labels[synset], synset, texts.get(synset, synset),
                       _boxes_for(boxes, path, synset))
          for path, synset in zip(paths, validation_synsets)]


def _default_file(imagenet_dir, key):
  if not imagenet_dir:
    return None
  for name in _DEFAULT_FILES[key]:
    path = os.path.join(imagenet_dir, name)
    if os.path.exists(path):
      return path
  return None


def convert(dataset_dir, imagenet_dir=None, train_directory=None,
            validation_directory=None, labels_file=None,
            imagenet_metadata_file=None, validation_labels_file=None,
            synset_map_file=None, bounding_box_file=None,
            train_shards=TRAIN_SHARDS, validation_shards=VALIDATION_SHARDS,
            num_workers=None, seed=SHUFFLE_SEED, quality=100,
            log=sys.stderr):
  """Converts ImageNet to sharded TFRecords in `dataset_dir`; resumes reruns.

  Args:
    dataset_dir: Output directory (created if missing).
    imagenet_dir: Directory holding `train/`, `validation/` and, under their
      default names, the metadata files; any of them can be given explicitly
      instead.
    train_directory: `train/<synset>/*.JPEG`; default `imagenet_dir/train`.
    validation_directory: `*.JPEG`, or `<synset>/*.JPEG` (then no ground
      truth file is needed); default `imagenet_dir/validation`, else
      `imagenet_dir/val`.
    labels_file: The synset list; default the class folders of train.
    imagenet_metadata_file: `synset<TAB>text` lines.
    validation_labels_file: The validation ground truth (synsets or ids).
    synset_map_file: The devkit's id -> synset map, for integer ids.
    bounding_box_file: A CSV file or a directory of XML files.
    train_shards: Number of training files.
    validation_shards: Number of validation files.
    num_workers: Worker processes; None means the number of cores.
    seed: Seed of the shuffle of each split.
    quality: JPEG quality of re-encoded images.
    log: Stream for progress and the summary.

  Returns:
    A dict from split name to its `sharded_writer.Report`.

  Raises:
    ValueError: when there is nothing to convert or the inputs disagree.
  """
  pick = lambda value, key: value or _default_file(imagenet_dir, key)
  if imagenet_dir:
    train_directory = train_directory or os.path.join(imagenet_dir, 'train')
    if not validation_directory:
      validation_directory = os.path.join(imagenet_dir, 'validation')
      if not os.path.isdir(validation_directory):  # Another usual name.
        validation_directory = os.path.join(imagenet_dir, 'val')
  labels_file = pick(labels_file, 'labels_file')
  imagenet_metadata_file = pick(imagenet_metadata_file,
                                'imagenet_metadata_file')
  validation_labels_file = pick(validation_labels_file,
                                'validation_labels_file')
  synset_map_file = pick(synset_map_file, 'synset_map_file')
  bounding_box_file = pick(bounding_box_file, 'bounding_box_file')

  has_train = bool(train_directory) and os.path.isdir(train_directory)
  has_validation = bool(validation_directory) and os.path.isdir(
      validation_directory)
  if not has_train and not has_validation:
    raise ValueError(
        f'Found neither a train directory ({train_directory!r}) nor a '
        f'validation directory ({validation_directory!r}); pass imagenet_dir '
        f'holding train/ and validation/.')
  # A validation folder sorted into <synset>/ folders carries its labels.
  validation_in_folders = has_validation and any(
      _SYNSET_RE.match(name) for name in _class_folders(validation_directory))
  if has_validation and not validation_in_folders and (
      not validation_labels_file):
    raise ValueError(
        f'{validation_directory} needs its ground truth: pass '
        f'validation_labels_file (one of '
        f'{", ".join(_DEFAULT_FILES["validation_labels_file"])}).')

  if labels_file:
    synsets = read_synsets(labels_file)
  elif has_train:
    synsets = _class_folders(train_directory)
  else:
    raise ValueError('Without a train directory the synset list is needed: '
                     'pass labels_file.')

  texts = {}
  validation_synsets = []
  if has_validation and not validation_in_folders:
    validation_synsets, texts = read_validation_labels(
        validation_labels_file, synset_map_file)
  if imagenet_metadata_file:
    texts.update(read_metadata(imagenet_metadata_file))
  missing_texts = [s for s in synsets if s not in texts]
  if missing_texts:
    print(f'No human-readable name for {len(missing_texts)} synsets (e.g. '
          f'{missing_texts[0]}); their synset is used as the name. Pass '
          f'imagenet_metadata_file to name them.', file=log)
  boxes = read_bounding_boxes(bounding_box_file) if bounding_box_file else {}

  os.makedirs(dataset_dir, exist_ok=True)
  labels_to_names = {0: 'background'}
  labels_to_names.update({i + LABELS_OFFSET: texts.get(s, s)
                          for i, s in enumerate(synsets)})
  dataset_utils.write_label_file(labels_to_names, dataset_dir)

  splits = []
  if has_train:
    splits.append(('train', train_shards,
                   find_train_items(train_directory, synsets, texts, boxes)))
  if validation_in_folders:
    splits.append(('validation', validation_shards,
                   find_train_items(validation_directory, synsets, texts,
                                    boxes)))
  elif has_validation:
    splits.append(('validation', validation_shards,
                   find_validation_items(validation_directory,
                                         validation_synsets, synsets, texts,
                                         boxes)))
  encode_fn = functools.partial(encode_item, quality=quality)
  reports = {}
  with sharded_writer.WorkerPool(num_workers) as pool:
    for name, num_shards, items in splits:
      random.Random(seed).shuffle(items)
      path_format = os.path.join(dataset_dir, name + '-%05d-of-%05d')
      shards = sharded_writer.plan_shards(items, num_shards, path_format)
      reports[name] = sharded_writer.write_shards(
          shards, encode_fn, description=name, log=log, pool=pool)
      sharded_writer.remove_stale_shards(shards, path_format, log=log)
  sharded_writer.write_report(dataset_dir, reports)
  return reports


def run(dataset_dir, imagenet_dir=None, labels_file=None,
        imagenet_metadata_file=None, validation_labels_file=None,
        synset_map_file=None, bounding_box_file=None, train_shards=None,
        validation_shards=None, num_workers=None):
  """`convert` for download_and_convert_data.py: None means the default.

  Returns:
    The list of shard paths written by this call (empty when all existed).
  """
  reports = convert(
      dataset_dir, imagenet_dir=imagenet_dir, labels_file=labels_file,
      imagenet_metadata_file=imagenet_metadata_file,
      validation_labels_file=validation_labels_file,
      synset_map_file=synset_map_file, bounding_box_file=bounding_box_file,
      train_shards=train_shards or TRAIN_SHARDS,
      validation_shards=validation_shards or VALIDATION_SHARDS,
      num_workers=num_workers)
  return [s.path for r in reports.values() for s in r.shards if not s.resumed]


def main(argv=None):
  """Runs with TF-Slim's build_imagenet_data.py flag names."""
  from absl import app

  from slimkit import flags as slim_flags
  slim_flags.define_build_imagenet_flags()

  def run(_):
    f = slim_flags.FLAGS
    convert(f.output_directory, train_directory=f.train_directory,
            validation_directory=f.validation_directory,
            labels_file=f.labels_file,
            imagenet_metadata_file=f.imagenet_metadata_file,
            validation_labels_file=f.validation_labels_file,
            synset_map_file=f.synset_map_file,
            bounding_box_file=f.bounding_box_file,
            train_shards=f.train_shards or TRAIN_SHARDS,
            validation_shards=f.validation_shards or VALIDATION_SHARDS,
            num_workers=f.num_threads)

  app.run(run, argv=argv, flags_parser=slim_flags.parse_flags)


if __name__ == '__main__':
  main()
