"""Flag values turned into the library's arguments, with errors that name the
flag.

These run in a script's `main()`, after parsing; the ones that need the
datasets or the input pipeline import them (and TensorFlow) when called.
"""

import dataclasses

from slimkit.datasets import dataset_factory
from slimkit.flags import core
from slimkit.nets import nets_factory
from slimkit.preprocessing import randaugment_args
from slimkit.training import optimizer_specs


def model_options(values):
  """Parses `values.model_options` (e.g. FLAGS) for `values.model_name`.

  A bad value stops the script (exit status 2) with a message naming it and
  the valid options of the net, before anything is written.

  Args:
    values: An object with `model_name` and `model_options` attributes.

  Returns:
    A dict of keyword arguments for `nets_factory.get_network_fn`.
  """
  try:
    return nets_factory.parse_model_options(values.model_name,
                                            values.model_options)
  except ValueError as e:
    core.fail(f'--model_options={values.model_options}: {e}')


def optimizer_hparams(values):
  """Collects the optimizer flags of `values` (e.g. FLAGS) into hparams.

  Args:
    values: An object with an attribute per `OptimizerHParams` field.

  Returns:
    An `optimizer_specs.OptimizerHParams`; `opt_epsilon` None (not given)
    means the optimizer's own default (`optimizer_specs.epsilon`).
  """
  return optimizer_specs.OptimizerHParams(**{
      f.name: getattr(values, f.name)
      for f in dataclasses.fields(optimizer_specs.OptimizerHParams)})


def randaugment(values):
  """`(N, M)` of `values.randaugment` (e.g. FLAGS), or None when off."""
  if values.randaugment is None:
    return None
  return randaugment_args.parse(values.randaugment)


def split_or_fail(dataset_name, split_name, dataset_dir):
  """The split `dataset_name/split_name` in `dataset_dir`, with its files.

  Args:
    dataset_name: `--dataset_name`.
    split_name: `--dataset_split_name` (or another split's flag).
    dataset_dir: `--dataset_dir`.

  Returns:
    A `DatasetSplit` whose files exist; a bad name or a missing folder or
    file stops the script (status 2) naming the flag.
  """
  try:
    split = dataset_factory.get_split(dataset_name, split_name, dataset_dir)
    split.files()
  except FileNotFoundError as e:
    core.fail(f'--dataset_dir={dataset_dir}: {e}')
  except ValueError as e:
    core.fail(f'--dataset_name/--dataset_split_name: {e}')
  return split


def fail_on_input_error(split, error):
  """Stops a script with what a record-reading `error` of `split` means.

  Args:
    split: The `Split` being read.
    error: A `tf.errors.InvalidArgumentError` or `DataLossError`.

  Raises:
    The `error` itself when it is not about the records.
  """
  # Imported here: it imports TensorFlow, which parsing never needs.
  from slimkit.datasets import input_pipeline
  explained = input_pipeline.explain_input_error(split, error)
  if explained is error:
    raise error
  core.fail(str(explained), status=1)
