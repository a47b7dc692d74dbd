"""The data's flags: the dataset read, its input pipeline and augmentation,
and the converters' (`download_and_convert_data.py` and TF-Slim's
`build_imagenet_data.py` names of `datasets/convert_imagenet.py`)."""

from absl import flags

from slimkit.flags import choices
from slimkit.flags import core
from slimkit.preprocessing import randaugment_args


def define_dataset_flags(split_name='train'):
  """Defines the dataset group.

  Args:
    split_name: The default of `--dataset_split_name` ('train' for training,
      'test' for evaluation, as in TF-Slim).
  """
  core.DEFINE_enum('dataset_name', 'imagenet', choices.dataset_names(),
                   'The name of the dataset to load.')
  core.DEFINE_string('dataset_split_name', split_name,
                     'The name of the split to read.')
  core.DEFINE_string('dataset_dir', None,
                     'The directory holding the dataset\'s TFRecord files.')
  core.DEFINE_integer('labels_offset', 0,
                      'Subtracted from every label; 1 drops ImageNet\'s '
                      'background class for nets trained without one.',
                      lower_bound=0)
  core.DEFINE_integer('num_preprocessing_threads', 4,
                      'Images preprocessed in parallel (batches of '
                      'them for images up to 64x64).', lower_bound=1)
  core.DEFINE_bool('skip_corrupt_records', False,
                   'Skip records that cannot be read or decoded, or whose '
                   'label is outside [0, num_classes), counting them in the '
                   'log and summaries; default: stop with an error naming '
                   'the file and record.')


def define_input_flags(batch_size):
  """Defines `--batch_size` (per clone) and `--num_readers`.

  Args:
    batch_size: The default batch size (32 for training, 100 for evaluation).
  """
  core.DEFINE_integer('batch_size', batch_size,
                      'Images per batch (per clone in training).',
                      lower_bound=1)
  core.DEFINE_integer('num_readers', 4, 'Files read in parallel.',
                      lower_bound=1)


def _check_randaugment(value):
  if value is None:
    return True
  try:
    randaugment_args.parse(value)
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


def define_augmentation_flags():
  """Defines MixUp, CutMix and RandAugment (training; off by default)."""
  core.DEFINE_float(
      'mixup_alpha', 0.0,
      'MixUp (Zhang et al.): every training batch is blended with itself '
      'reversed, images and one-hot labels alike, with one weight per batch '
      'drawn from Beta(alpha, alpha); the loss takes the soft labels (and '
      '--label_smoothing). 0.2 is usual on ImageNet. 0: off.',
      lower_bound=0.0)
  core.DEFINE_float(
      'cutmix_alpha', 0.0,
      'CutMix (Yun et al.): a box of the reversed batch is pasted into every '
      'training image, its share of the image drawn from Beta(alpha, alpha) '
      '(one box per batch), and the labels are mixed by the pasted area. '
      '1.0 is usual. With --mixup_alpha too, each batch gets one of the two '
      '(as timm). 0: off.', lower_bound=0.0)
  core.DEFINE_string(
      'randaugment', None,
      'N,M: RandAugment (Cubuk et al.) of every training image, N ops drawn '
      'from the paper\'s 14 at magnitude M (0-10), after the style\'s crop '
      '(and flip; the inception style flips after it) and before its colour '
      'distortion and normalisation; e.g. '
      '2,9 (the paper\'s ImageNet ResNet-50). Default: off. Evaluation '
      'never augments.')
  flags.register_validator('randaugment', _check_randaugment)


def _define_shard_flags(what):
  core.DEFINE_integer(
      'train_shards', None,
      f'{what}: files of the train split (imagenet default 1024).',
      lower_bound=1)
  core.DEFINE_integer(
      'validation_shards', None,
      f'{what}: files of the validation split (imagenet default 128).',
      lower_bound=1)


def _define_imagenet_metadata_flags():
  core.DEFINE_string(
      'labels_file', None,
      'imagenet: the synset list, one a line (default: '
      'imagenet_dir/imagenet_lsvrc_2015_synsets.txt, else the train folders).')
  core.DEFINE_string(
      'imagenet_metadata_file', None,
      'imagenet: "synset<TAB>human-readable name" lines (default: '
      'imagenet_dir/imagenet_metadata.txt).')
  core.DEFINE_string(
      'validation_labels_file', None,
      'imagenet: validation ground truth in sorted file order, one synset or '
      'one devkit ILSVRC2012_ID a line (default: imagenet_dir/'
      'imagenet_2012_validation_synset_labels.txt or '
      'ILSVRC2012_validation_ground_truth.txt).')
  core.DEFINE_string(
      'synset_map_file', None,
      'imagenet: the devkit\'s id -> synset map for integer ground truth '
      '(meta.mat, or "<id> <synset>" lines; default: imagenet_dir/meta.mat).')
  core.DEFINE_string(
      'bounding_box_file', None,
      'imagenet: bounding boxes, a CSV of "filename,xmin,ymin,xmax,ymax" '
      '(normalised) or a folder of the devkit\'s XML files (default: '
      'imagenet_dir/imagenet_2012_bounding_boxes.csv or imagenet_dir/'
      'bounding_boxes/).')


def define_download_flags(dataset_names):
  """Defines every flag of `download_and_convert_data.py`.

  Args:
    dataset_names: The datasets it converts (`--dataset_name`'s values).
  """
  core.DEFINE_enum(
      'dataset_name', None, dataset_names,
      f'The dataset to convert: {", ".join(dataset_names)}.')
  core.DEFINE_string(
      'dataset_dir', None,
      'The folder to write the TFRecord files and labels.txt to (created if '
      'needed); the official archive is looked for here first.')
  core.DEFINE_string(
      'archive_path', None,
      'A local copy of the official archive (cifar10: cifar-10-python.tar.gz; '
      'cifar100: cifar-100-python.tar.gz; mnist: a folder with the four .gz '
      'files; digits: an .npz like the shipped one). When set, the network is '
      'not used.')
  # Flags of the image-folder converters (flowers, imagenet, custom); see
  # docs/converters.md.
  core.DEFINE_integer(
      'num_workers', None,
      'flowers, imagenet, custom: worker processes converting images in '
      'parallel (default: the number of cores).', lower_bound=1)
  core.DEFINE_integer(
      'num_shards', None,
      'custom: files per split (default: one per ~1000 images).',
      lower_bound=1)
  _define_shard_flags('imagenet, custom')
  core.DEFINE_string(
      'images_dir', None,
      'custom: the folder of your photos, one subfolder per class '
      '(*.jpg, *.jpeg, *.png, *.bmp, *.gif).')
  core.DEFINE_float(
      'validation_fraction', 0.1,
      'custom: fraction of each class held out for the validation split.',
      lower_bound=0.0, upper_bound=0.99)
  core.DEFINE_integer(
      'split_seed', 0,
      'custom: seed of the deterministic train/validation split.')
  core.DEFINE_string(
      'imagenet_dir', None,
      'imagenet: the folder holding train/<synset>/*.JPEG and '
      'validation/*.JPEG (and the metadata files below under their usual '
      'names).')
  _define_imagenet_metadata_flags()


def define_build_imagenet_flags():
  """Defines the flags of `datasets/convert_imagenet.py` run as a script
  (TF-Slim's `build_imagenet_data.py` names)."""
  core.DEFINE_string('train_directory', None, 'train/<synset>/*.JPEG.')
  core.DEFINE_string('validation_directory', None, 'Validation images.')
  core.DEFINE_string('output_directory', None, 'Output directory.')
  _define_shard_flags('imagenet')
  core.DEFINE_integer('num_threads', None,
                      'Worker processes (default: the number of cores).',
                      lower_bound=1)
  _define_imagenet_metadata_flags()
  flags.mark_flag_as_required('output_directory')
