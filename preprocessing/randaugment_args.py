"""RandAugment's N,M arguments, checked without TensorFlow.

`randaugment.py` re-exports these; `--randaugment` is checked with them
before TensorFlow is imported.
"""

import operator

MAX_MAGNITUDE = 10.0


def check(num_layers, magnitude):
  """Returns `(num_layers, magnitude)` as (int, float) if valid.

  Raises:
    ValueError: naming the values, when N is not an int >= 1 or M is not a
      number in [0, 10].
  """
  try:
    valid = not isinstance(num_layers, bool) and (
        operator.index(num_layers) >= 1)  # ints and numpy ints
  except TypeError:
    valid = False
  if not valid:
    raise ValueError(f'RandAugment\'s N (ops per image) must be an int >= 1, '
                     f'got {num_layers!r}')
  num_layers = operator.index(num_layers)
  try:
    value = float(magnitude)
  except (TypeError, ValueError):
    value = float('nan')
  if not 0.0 <= value <= MAX_MAGNITUDE:
    raise ValueError(f'RandAugment\'s M (magnitude) must be a number in '
                     f'[0, {MAX_MAGNITUDE:g}], got {magnitude!r}')
  return num_layers, value


def parse(text):
  """Parses `'N,M'` (e.g. '2,9') into `(N, M)`.

  Raises:
    ValueError: naming `text`, for anything but two valid numbers.
  """
  parts = str(text).split(',')
  if len(parts) != 2:
    raise ValueError(f'expected N,M (ops per image, magnitude 0-10; e.g. '
                     f'2,9), got {text!r}')
  try:
    num_layers = int(parts[0])
  except ValueError:
    raise ValueError(f'N in N,M must be an int >= 1, got {parts[0]!r} in '
                     f'{text!r}') from None
  try:
    magnitude = float(parts[1])
  except ValueError:
    raise ValueError(f'M in N,M must be a number in [0, 10], got '
                     f'{parts[1]!r} in {text!r}') from None
  return check(num_layers, magnitude)
