"""The ImageNet converter on a fabricated ILSVRC2012 tree (no network).

The tree has the official layout (train/<synset>/*.JPEG, validation/*.JPEG,
the validation ground truth, the synset list, imagenet_metadata.txt and the
devkit's bounding-box XML) and ImageNet's known bad apples: a CMYK JPEG, a
PNG named .JPEG, a grayscale JPEG and a corrupt file.
"""

import glob
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import dataset_utils
from slimkit.datasets import convert_imagenet
from tests import script_runner

Image = pytest.importorskip('PIL.Image')  # Only to fabricate the inputs.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNSETS = ('n02102040', 'n01440764', 'n01443537')  # Deliberately unsorted.
TEXTS = {'n01440764': 'tench, Tinca tinca',
         'n01443537': 'goldfish, Carassius auratus',
         'n02102040': 'English springer, English springer spaniel'}
# Label = 1 + position in the sorted synset list; 0 is the background.
LABELS = {'n01440764': 1, 'n01443537': 2, 'n02102040': 3}
WIDTH, HEIGHT = 64, 48
VALIDATION = ('n01443537', 'n02102040', 'n01440764', 'n01443537')


def _pixels(seed):
  """A two-colour image: smooth enough that JPEG keeps colours close."""
  rng = np.random.default_rng(seed)
  image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
  image[:, :WIDTH // 2] = rng.integers(30, 225, 3)
  image[:, WIDTH // 2:] = rng.integers(30, 225, 3)
  return image


def _save(image, path, fmt='JPEG', mode=None):
  pil = Image.fromarray(image)
  if mode:
    pil = pil.convert(mode)
  options = {'quality': 95} if fmt == 'JPEG' else {}
  pil.save(path, fmt, **options)


def _xml(path, width, height, objects):
  boxes = ''.join(
      f'<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>'
      f'<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>'
      for name, (x0, y0, x1, y1) in objects)
  with open(path, 'w') as f:
    f.write(f'<annotation><filename>{os.path.basename(path)[:-4]}</filename>'
            f'<size><width>{width}</width><height>{height}</height>'
            f'<depth>3</depth></size>{boxes}</annotation>')


def make_ilsvrc_tree(root):
  """Writes the fabricated tree; returns {file name: what to expect}."""
  expected = {}
  seed = 0
  for synset in SYNSETS:
    os.makedirs(os.path.join(root, 'train', synset))
    for i in range(3):
      name = f'{synset}_{i}.JPEG'
      seed += 1
      image = _pixels(seed)
      _save(image, os.path.join(root, 'train', synset, name))
      expected[name] = {'synset': synset, 'pixels': image, 'kind': 'rgb'}
  bad = os.path.join(root, 'train')
  # The known bad apples, under ImageNet's own kinds of names.
  _save(_pixels(100), f'{bad}/n01440764/n01440764_cmyk.JPEG', mode='CMYK')
  _save(_pixels(101), f'{bad}/n01443537/n01443537_png.JPEG', fmt='PNG')
  _save(_pixels(102), f'{bad}/n02102040/n02102040_gray.JPEG', mode='L')
  with open(f'{bad}/n01443537/n01443537_bad.JPEG', 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 this is not really a JPEG')
  for name, synset, seed, kind in (
      ('n01440764_cmyk.JPEG', 'n01440764', 100, 'cmyk jpeg'),
      ('n01443537_png.JPEG', 'n01443537', 101, 'png'),
      ('n02102040_gray.JPEG', 'n02102040', 102, 'grayscale jpeg')):
    expected[name] = {'synset': synset, 'pixels': _pixels(seed), 'kind': kind}

  os.makedirs(os.path.join(root, 'validation'))
  for i, synset in enumerate(VALIDATION, start=1):
    name = f'ILSVRC2012_val_{i:08d}.JPEG'
    image = _pixels(200 + i)
    _save(image, os.path.join(root, 'validation', name))
    expected[name] = {'synset': synset, 'pixels': image, 'kind': 'rgb'}
  with open(os.path.join(root, 'imagenet_2012_validation_synset_labels.txt'),
            'w') as f:
    f.write('\n'.join(VALIDATION) + '\n')
  with open(os.path.join(root, 'imagenet_lsvrc_2015_synsets.txt'), 'w') as f:
    f.write('\n'.join(SYNSETS) + '\n')
  with open(os.path.join(root, 'imagenet_metadata.txt'), 'w') as f:
    for synset, text in TEXTS.items():
      f.write(f'{synset}\t{text}\n')

  # Devkit XML: pixel boxes, normalised by <size>; a box of another synset is
  # another object and is dropped; coordinates beyond the image are clipped.
  boxes_dir = os.path.join(root, 'bounding_boxes')
  os.makedirs(os.path.join(boxes_dir, 'n01440764'))
  _xml(os.path.join(boxes_dir, 'n01440764', 'n01440764_0.xml'), 64, 48, [
      ('n01440764', (8, 6, 40, 30)),
      ('n01443537', (0, 0, 10, 10)),
      ('n01440764', (32, 12, 80, 47))])
  expected['n01440764_0.JPEG']['boxes'] = [(0.125, 0.125, 0.625, 0.625),
                                           (0.5, 0.25, 1.0, 47 / 48)]
  os.makedirs(os.path.join(boxes_dir, 'val'))
  _xml(os.path.join(boxes_dir, 'val', 'ILSVRC2012_val_00000002.xml'), 64, 48,
       [('n02102040', (16, 12, 48, 36))])
  expected['ILSVRC2012_val_00000002.JPEG']['boxes'] = [(0.25, 0.25, 0.75,
                                                        0.75)]
  return expected


def read_records(pattern):
  """Returns {filename: feature dict of plain values} of matching shards."""
  records = {}
  for path in sorted(glob.glob(pattern)):  # Skips the hidden manifests.
    for raw in tf.data.TFRecordDataset(path):
      feature = tf.train.Example.FromString(raw.numpy()).features.feature
      values = {}
      for key, f in feature.items():
        kind = f.WhichOneof('kind')
        values[key] = list(getattr(f, kind).value) if kind else []
      records[values['image/filename'][0].decode()] = values
  return records


def _decode(record):
  # channels=0 keeps what the JPEG holds: a grayscale one would give 1.
  return tf.io.decode_jpeg(record['image/encoded'][0], channels=0).numpy()


def _mean_error(image, reference):
  # JPEG rings at the edge between the two colours; compare the halves'
  # interiors.
  keep = np.r_[0:WIDTH // 2 - 8, WIDTH // 2 + 8:WIDTH]
  return np.abs(image.astype(int)[:, keep] - reference[:, keep]).mean()


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('ILSVRC2012'))
  expected = make_ilsvrc_tree(root)
  out = str(tmp_path_factory.mktemp('imagenet-tfrecord'))
  log = io.StringIO()
  convert_imagenet.convert(out, imagenet_dir=root, train_shards=3,
                           validation_shards=2, num_workers=1, log=log)
  return root, out, expected, log.getvalue()


def test_records_follow_tf_slims_imagenet_schema(converted):
  _, out, expected, _ = converted
  records = read_records(os.path.join(out, '*-of-*'))
  assert sorted(records) == sorted(expected)  # All but the corrupt file.
  for name, want in expected.items():
    record = records[name]
    synset = want['synset']
    assert record['image/class/label'] == [LABELS[synset]]
    assert record['image/class/synset'] == [synset.encode()]
    assert record['image/class/text'] == [TEXTS[synset].encode()]
    assert record['image/format'] == [b'JPEG']
    assert record['image/colorspace'] == [b'RGB']
    assert record['image/channels'] == [3]
    assert record['image/height'] == [HEIGHT]
    assert record['image/width'] == [WIDTH]
    boxes = want.get('boxes', [])
    got = list(zip(*(record[f'image/object/bbox/{k}']
                     for k in ('xmin', 'ymin', 'xmax', 'ymax'))))
    assert len(got) == len(boxes)
    for g, b in zip(got, boxes):
      assert g == pytest.approx(b, abs=1e-6)
    assert record['image/object/bbox/label'] == [LABELS[synset]] * len(boxes)


def test_bad_apples_are_reencoded_to_rgb_jpeg(converted):
  root, out, expected, _ = converted
  records = read_records(os.path.join(out, '*-of-*'))
  for name, want in expected.items():
    image = _decode(records[name])
    assert image.shape == (HEIGHT, WIDTH, 3), name  # Grayscale too.
    if want['kind'] == 'rgb':
      # Clean RGB JPEGs are kept byte for byte.
      path = os.path.join(root, 'validation', name)
      if not os.path.exists(path):
        path = os.path.join(root, 'train', want['synset'], name)
      with open(path, 'rb') as f:
        assert records[name]['image/encoded'][0] == f.read()
    elif want['kind'] == 'grayscale jpeg':
      gray = np.asarray(Image.fromarray(want['pixels']).convert('L'), int)
      assert _mean_error(image, gray[..., None]) < 3, name
    else:  # CMYK and PNG data decode to the original colours.
      assert _mean_error(image, want['pixels']) < 3, name
  report = json.load(open(os.path.join(out, 'conversion_report.json')))
  converted_kinds = {os.path.basename(c['source']): c['from']
                     for c in report['train']['converted']}
  assert converted_kinds == {'n01440764_cmyk.JPEG': 'cmyk jpeg',
                             'n01443537_png.JPEG': 'png',
                             'n02102040_gray.JPEG': 'grayscale jpeg'}


def test_undecodable_file_is_skipped_counted_and_reported(converted):
  _, out, _, log = converted
  report = json.load(open(os.path.join(out, 'conversion_report.json')))
  assert report['train']['num_records'] == 12
  assert report['validation']['num_records'] == len(VALIDATION)
  skipped = report['train']['skipped']
  assert [os.path.basename(s['source']) for s in skipped] == [
      'n01443537_bad.JPEG']
  assert 'does not decode' in skipped[0]['reason']
  assert report['validation']['skipped'] == []
  lines = open(os.path.join(out, 'skipped_files.txt')).read().splitlines()
  assert len(lines) == 1 and lines[0].startswith('train\t')
  assert 'n01443537_bad.JPEG' in lines[0]
  assert 'SKIPPED' in log and 'n01443537_bad.JPEG' in log
  assert '1 skipped' in log


def test_imagenet_reader_reads_the_output(converted):
  _, out, _, _ = converted
  assert dataset_utils.read_label_file(out) == {
      0: 'background', 1: TEXTS['n01440764'], 2: TEXTS['n01443537'],
      3: TEXTS['n02102040']}
  train = dataset_factory.get_split('imagenet', 'train', out)
  assert train.num_classes == 1001
  assert [os.path.basename(f) for f in train.files()] == [
      f'train-0000{i}-of-00003' for i in range(3)]
  validation = dataset_factory.get_split('imagenet', 'validation', out)
  decoded = [validation.decode(r) for r in tf.data.TFRecordDataset(
      validation.files())]
  assert len(decoded) == len(VALIDATION)
  boxes = [d['bbox'].numpy() for d in decoded if d['bbox'].shape[0]]
  # The reader's order is [ymin, xmin, ymax, xmax].
  assert len(boxes) == 1 and boxes[0] == pytest.approx(
      np.array([[0.25, 0.25, 0.75, 0.75]]))
  assert sorted(int(d['label']) for d in decoded) == sorted(
      LABELS[s] for s in VALIDATION)


_KILL_SCRIPT = r'''
import os, sys
from slimkit.datasets import convert_imagenet
real, count = convert_imagenet.encode_item, [0]
def dying(item, **kwargs):
  count[0] += 1
  if count[0] == int(sys.argv[3]):
    os._exit(9)  # Like kill -9: no cleanup runs.
  return real(item, **kwargs)
convert_imagenet.encode_item = dying
convert_imagenet.convert(sys.argv[2], imagenet_dir=sys.argv[1], train_shards=3,
                         validation_shards=2, num_workers=1)
'''


def test_killed_conversion_resumes_and_matches_an_uninterrupted_one(
    converted, tmp_path):
  root, reference, _, _ = converted
  out = str(tmp_path / 'out')
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  # 13 training files, 4 or 5 per shard: the 7th item is inside shard 1.
  killed = script_runner.run(
      [sys.executable, '-c', _KILL_SCRIPT, root, out, '7'], env=env,
      capture_output=True, text=True, timeout=300, check=False)
  assert killed.returncode == 9, killed.stderr[-2000:]
  names = sorted(os.listdir(out))
  assert 'train-00000-of-00003' in names
  assert 'train-00001-of-00003' not in names  # Never under its final name.
  assert any(n.startswith('.train-00001-of-00003.tmp-') for n in names)
  first = os.stat(os.path.join(out, 'train-00000-of-00003'))

  log = io.StringIO()
  convert_imagenet.convert(out, imagenet_dir=root, train_shards=3,
                           validation_shards=2, num_workers=1, log=log)
  assert '1 of 3 shards were finished by an earlier run' in log.getvalue()
  again = os.stat(os.path.join(out, 'train-00000-of-00003'))
  assert (again.st_ino, again.st_mtime_ns) == (first.st_ino,
                                               first.st_mtime_ns)
  assert not [n for n in os.listdir(out) if '.tmp-' in n]
  # Byte-identical to the uninterrupted single-worker conversion, and the
  # report still lists the file skipped before the kill.
  for name in os.listdir(reference):
    if name.startswith(('train-', 'validation-')):
      with open(os.path.join(out, name), 'rb') as a, open(
          os.path.join(reference, name), 'rb') as b:
        assert a.read() == b.read(), name
  report = json.load(open(os.path.join(out, 'conversion_report.json')))
  assert len(report['train']['skipped']) == 1
  assert report['train']['resumed_shards'] == 1


def test_devkit_ids_with_synset_map_and_csv_boxes(converted, tmp_path):
  root, reference, _, _ = converted
  # The devkit's ground truth: ILSVRC2012_IDs (here 3 = n01440764 ...) and a
  # map from id to synset; boxes from process_bounding_boxes.py's CSV.
  ids = {'n02102040': 7, 'n01440764': 3, 'n01443537': 5}
  (tmp_path / 'gt.txt').write_text(''.join(f'{ids[s]}\n' for s in VALIDATION))
  (tmp_path / 'map.txt').write_text(
      ''.join(f'{i} {s}\n' for s, i in ids.items()))
  (tmp_path / 'boxes.csv').write_text(
      'ILSVRC2012_val_00000003.JPEG,0.1,0.2,0.3,0.4\n'
      'ILSVRC2012_val_00000003.JPEG,0.5,-0.1,1.2,0.9\n')
  out = str(tmp_path / 'out')
  convert_imagenet.convert(
      out, validation_directory=os.path.join(root, 'validation'),
      labels_file=os.path.join(root, 'imagenet_lsvrc_2015_synsets.txt'),
      imagenet_metadata_file=os.path.join(root, 'imagenet_metadata.txt'),
      validation_labels_file=str(tmp_path / 'gt.txt'),
      synset_map_file=str(tmp_path / 'map.txt'),
      bounding_box_file=str(tmp_path / 'boxes.csv'),
      validation_shards=1, num_workers=1, log=io.StringIO())
  records = read_records(os.path.join(out, 'validation-*'))
  want = read_records(os.path.join(reference, 'validation-*'))
  for name, record in records.items():
    assert record['image/class/label'] == want[name]['image/class/label']
    assert record['image/class/synset'] == want[name]['image/class/synset']
  boxed = records['ILSVRC2012_val_00000003.JPEG']
  assert boxed['image/object/bbox/xmin'] == pytest.approx([0.1, 0.5])
  assert boxed['image/object/bbox/ymin'] == pytest.approx([0.2, 0.0])
  assert boxed['image/object/bbox/xmax'] == pytest.approx([0.3, 1.0])
  assert boxed['image/object/bbox/ymax'] == pytest.approx([0.4, 0.9])


def test_devkit_meta_mat_is_read(tmp_path):
  scipy_io = pytest.importorskip('scipy.io')
  synsets = np.array(
      [(1, 'n01440764', 'tench, Tinca tinca'),
       (2, 'n01443537', 'goldfish, Carassius auratus'),
       (1001, 'n00001740', 'entity')],
      dtype=[('ILSVRC2012_ID', 'O'), ('WNID', 'O'), ('words', 'O')])
  scipy_io.savemat(str(tmp_path / 'meta.mat'), {'synsets': synsets})
  (tmp_path / 'gt.txt').write_text('2\n1\n')
  labels, texts = convert_imagenet.read_validation_labels(
      str(tmp_path / 'gt.txt'), str(tmp_path / 'meta.mat'))
  assert labels == ['n01443537', 'n01440764']
  assert texts['n01440764'] == 'tench, Tinca tinca'


def test_inconsistent_inputs_are_refused_with_the_reason(converted, tmp_path):
  root, _, _, _ = converted
  (tmp_path / 'short.txt').write_text('n01440764\n')
  with pytest.raises(ValueError, match='holds 4 files but .* has 1'):
    convert_imagenet.convert(
        str(tmp_path / 'out'), imagenet_dir=root,
        validation_labels_file=str(tmp_path / 'short.txt'), num_workers=1)
  (tmp_path / 'ids.txt').write_text('1\n2\n3\n4\n')
  with pytest.raises(ValueError, match='synset_map_file'):
    convert_imagenet.read_validation_labels(str(tmp_path / 'ids.txt'))


def test_sorted_validation_folders_and_a_changed_shard_count(converted,
                                                             tmp_path):
  root, reference, _, _ = converted
  # validation/<synset>/*.JPEG, as preparation scripts often leave it: the
  # folders are the ground truth.
  for i, synset in enumerate(VALIDATION, start=1):
    name = f'ILSVRC2012_val_{i:08d}.JPEG'
    (tmp_path / 'val' / synset).mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(root, 'validation', name),
                tmp_path / 'val' / synset / name)
  out = str(tmp_path / 'out')
  options = dict(validation_directory=str(tmp_path / 'val'),
                 labels_file=os.path.join(root,
                                          'imagenet_lsvrc_2015_synsets.txt'),
                 num_workers=1, log=io.StringIO())
  convert_imagenet.convert(out, validation_shards=3, **options)
  assert len(glob.glob(os.path.join(out, 'validation-*'))) == 3
  records = read_records(os.path.join(out, 'validation-*'))
  want = read_records(os.path.join(reference, 'validation-*'))
  assert {n: r['image/class/label'] for n, r in records.items()} == {
      n: r['image/class/label'] for n, r in want.items()}
  # Fewer shards the second time: the old ones must not be read twice.
  convert_imagenet.convert(out, validation_shards=2, **options)
  assert sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(out, 'validation-*'))) == [
          'validation-00000-of-00002', 'validation-00001-of-00002']
  assert len(read_records(os.path.join(out, 'validation-*'))) == 4
