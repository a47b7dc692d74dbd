"""The flags of the tools that use a trained net: evaluation, export (SavedModel
and TFLite) and classification."""

from absl import flags

from slimkit.flags import choices
from slimkit.flags import core
from slimkit.flags import data
from slimkit.flags import model
from slimkit.flags import training


def define_eval_flags():
  """Defines every flag of `eval_image_classifier.py`."""
  core.DEFINE_integer('batch_size', 100, 'Images per batch.', lower_bound=1)
  core.DEFINE_integer('max_num_batches', None,
                      'Evaluate at most this many batches; default: the '
                      'whole split.', lower_bound=1)
  core.DEFINE_string('checkpoint_path', '/tmp/tfmodel/',
                     'A checkpoint, or a directory whose newest checkpoint '
                     'is evaluated (or, with --eval_interval_secs, watched).')
  core.DEFINE_string('eval_dir', '/tmp/tfmodel/',
                     'Where the evaluation summaries are written.')
  data.define_dataset_flags(split_name='test')
  model.define_model_flags('eval_image_size')
  training.define_moving_average_flag()
  # 0 declines the averages a run was trained with (see slimkit/runs.py).
  core.register_validator('moving_average_decay', _valid_tool_decay,
                          'must be in [0, 1) (0: the weights themselves)')
  core.DEFINE_bool('quantize', False,
                   'Evaluate a checkpoint trained with --quantize_delay as '
                   'it runs quantized: weights and activations fake-'
                   'quantized to 8 bits with its learned ranges (the '
                   'simulation of its int8 TFLite export).')
  core.DEFINE_integer('eval_interval_secs', None,
                      'Watch mode: evaluate each new checkpoint in the '
                      '--checkpoint_path directory, at most once per this '
                      'many seconds; default: evaluate once.', lower_bound=0)
  core.DEFINE_integer('eval_timeout_secs', None,
                      'Watch mode: stop after this many seconds without a '
                      'new checkpoint; default: wait forever.', lower_bound=0)
  core.DEFINE_integer('max_number_of_evaluations', None,
                      'Watch mode: stop after this many evaluations.',
                      lower_bound=1)
  define_tflite_model_flag('evaluate')
  flags.register_multi_flags_validator(
      ['tflite_model', 'eval_interval_secs', 'moving_average_decay',
       'quantize', 'model_options'], _check_tflite_evaluation)


def _valid_tool_decay(value):
  """A decay for the tools that read a run: None, 0 (declined) or in (0, 1)."""
  return value is None or 0.0 <= value < 1.0


def _check_tflite_evaluation(values):
  """A --tflite_model runs as exported: the checkpoint flags are refused."""
  if not values['tflite_model']:
    return True
  if values['eval_interval_secs'] is not None:
    raise flags.ValidationError('--eval_interval_secs watches checkpoints; a '
                                '--tflite_model is evaluated once.')
  if values['moving_average_decay'] is not None or values['quantize']:
    raise flags.ValidationError(
        '--moving_average_decay and --quantize apply to checkpoints; a '
        '--tflite_model runs as it was exported.')
  if values['model_options']:
    raise flags.ValidationError(
        f'--model_options={values["model_options"]} builds a net from a '
        'checkpoint; a --tflite_model has its net built in.')
  return True


def define_tflite_flags():
  """Defines the TFLite export flags of `export_inference_graph.py`."""
  core.DEFINE_enum('output_format', 'saved_model', ['saved_model', 'tflite'],
                   'saved_model: a SavedModel directory (--output_dir); '
                   'tflite: a TensorFlow Lite file (--output_file).')
  core.DEFINE_string('output_file', None, 'The .tflite file to write '
                     '(--output_format=tflite).')
  core.DEFINE_enum('quantize', 'none', list(choices.TFLITE_QUANTIZE_MODES),
                   'TFLite quantization: none (float32), float16 (weights), '
                   'dynamic (int8 weights, float activations) or int8 (full '
                   'integer, activation ranges calibrated on '
                   '--num_calibration_images of --dataset_name/--dataset_dir'
                   ', or learned by --quantize_delay training).')
  core.DEFINE_integer('num_calibration_images', 500,
                      'Images of --dataset_split_name run through the eval '
                      'preprocessing to calibrate --quantize=int8.',
                      lower_bound=1)
  core.DEFINE_enum('tflite_io', 'float32', list(choices.TFLITE_IO_TYPES),
                   'Input and output type of the --quantize=int8 model: '
                   'float32 (the same caller code as the float model) or '
                   'uint8 (integer I/O, quantized with the scale and zero '
                   'point stored in the file).')
  flags.register_multi_flags_validator(
      ['tflite_io', 'quantize'],
      lambda v: v['tflite_io'] == 'float32' or v['quantize'] == 'int8',
      message='--tflite_io=uint8 needs --quantize=int8: only a full-integer '
      'model has integer input and output.')
  flags.register_multi_flags_validator(
      ['output_format', 'quantize', 'tflite_io'],
      lambda v: v['output_format'] == 'tflite' or (
          v['quantize'] == 'none' and v['tflite_io'] == 'float32'),
      message='--quantize and --tflite_io apply to --output_format=tflite; a '
      'SavedModel stays float32.')


def define_tflite_model_flag(purpose):
  """Defines `--tflite_model` (evaluate or classify with a .tflite file)."""
  core.DEFINE_string('tflite_model', None, f'A .tflite file written by '
                     f'export_inference_graph.py to {purpose} instead of a '
                     'checkpoint; it runs in the TFLite interpreter (LiteRT '
                     'when installed, else TensorFlow\'s).')


def define_export_flags():
  """Defines every flag of `export_inference_graph.py`."""
  model.define_model_name_flag('The name of the net to export.')
  core.DEFINE_string('checkpoint_path', None, 'A checkpoint (TF-Slim\'s or '
                     'ours), or a directory whose newest checkpoint is used.')
  core.DEFINE_string('output_dir', None, 'Where to write the SavedModel '
                     '(--output_format=saved_model).')
  core.DEFINE_integer('image_size', None, 'Height and width of the net\'s '
                      'input; defaults to the net\'s default size.',
                      lower_bound=1)
  core.DEFINE_integer('num_classes', 1001, 'Number of classes of the '
                      'checkpoint\'s logits. Default: the run\'s (its '
                      'flags.txt), else --dataset_name\'s class count minus '
                      '--labels_offset, as TF-Slim\'s export (imagenet: '
                      '1001, with a background class).', lower_bound=1)
  core.DEFINE_string('labels_file', None, 'A labels.txt (`id:name` a line) '
                     'for top_5_names; without it the names are the ids.')
  core.DEFINE_float('moving_average_decay', None, 'If set, export the moving '
                    'averages of the weights (<name>/ExponentialMovingAverage)'
                    ' where the checkpoint has them. Default: the run\'s (its '
                    'flags.txt); 0: the weights themselves.')
  core.register_validator('moving_average_decay', _valid_tool_decay,
                          'must be in [0, 1) (0: the weights themselves)')
  model.define_preprocessing_name_flag()
  core.DEFINE_integer('channels', None, 'Channels of the input images; '
                      'defaults to what the checkpoint\'s first layer takes.',
                      lower_bound=1)
  model.define_model_options_flag()
  define_tflite_flags()
  # The calibration images of --quantize=int8.
  data.define_dataset_flags(split_name='train')


def define_classify_flags():
  """Defines every flag of `classify_image.py`."""
  core.DEFINE_string('saved_model_dir', None, 'A SavedModel written by '
                     'export_inference_graph.py.')
  define_tflite_model_flag('classify with')
  core.DEFINE_string('checkpoint_path', None,
                     'A checkpoint of a train_image_classifier.py run, or '
                     'its train dir (newest checkpoint), to classify with '
                     'directly: the net, class count, image size and '
                     'preprocessing come from the run\'s flags.txt, the '
                     'class names from its dataset\'s labels.txt.')
